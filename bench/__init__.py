"""Benchmarks: each module's `run()` measures ours against the plain alternative in one run
and returns a Markdown section for BENCHMARKS.md."""
