"""netk8s benchmarks: `python -m scripts.bench [--quick] [--only NAME,...]` writes BENCHMARKS.md and plots."""
