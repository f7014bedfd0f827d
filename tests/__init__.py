"""The test suite. Its shared helpers are in `tests.support`, imported by that name from
the repository root by the tests and by the benchmarks alike."""
