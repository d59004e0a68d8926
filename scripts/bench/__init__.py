"""Benchmarks: one runnable module per figure in BENCHMARKS.md (`python -m scripts.bench.<name>`)."""
