"""Benchmarks against named peers (`python -m bench NAME`) and the re-runnable findings of
docs/results.md (`bench.findings`). May import `recsys`, `agents`, `serving` and `bundleformat`;
nothing imports `bench`."""
