"""`python -m bench [NAME ...]`: run the benchmarks, write BENCHMARKS.md.

Each module in this package that defines `run() -> str` is one benchmark; its
Markdown section replaces the one of the same name in BENCHMARKS.md, so one
benchmark can be re-run alone without losing the others' results.
"""

from __future__ import annotations

import compileall
import importlib
import pkgutil
import platform
import re
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
HEADER = ("# Benchmarks\n\nWritten by `make bench` (`python -m bench`). Every figure is a "
          "ratio against the plain alternative measured in the same run on the same machine.\n")


def _sections(text: str) -> dict[str, str]:
    parts = re.split(r"(?m)^<!-- bench:(\S+) -->\n", text)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def main(names: list[str]) -> int:
    available = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])
                       if not m.name.startswith("_"))
    wanted = names or available
    unknown = set(wanted) - set(available)
    if unknown:
        print(f"unknown benchmark(s): {', '.join(sorted(unknown))}; have {', '.join(available)}")
        return 2
    # The images ship the entrypoint compiled (pip compiles what it installs); compile the
    # checkout's modules too, or with PYTHONDONTWRITEBYTECODE set every process measured
    # here would compile them again (some 10 ms a process).
    compileall.compile_dir(str(OUT.parent / "entrypoint"), quiet=1)
    results: dict[str, str] = {}
    for name in wanted:
        module = importlib.import_module(f"bench.{name}")
        print(f"bench: {name} ...", flush=True)
        started = time.monotonic()
        body = module.run()
        stamp = (f"\n_Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, "
                 f"{platform.python_implementation()} {platform.python_version()}, "
                 f"in {time.monotonic() - started:.0f} s._\n\n")
        results[name] = body.rstrip() + "\n" + stamp
        print(body, flush=True)
    # Read just before writing: another benchmark may have finished meanwhile.
    sections = _sections(OUT.read_text()) if OUT.exists() else {}
    sections.update(results)
    text = HEADER + "".join(f"<!-- bench:{n} -->\n{sections[n]}" for n in sorted(sections))
    OUT.write_text(text)
    print(f"bench: wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
