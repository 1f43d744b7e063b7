"""Benchmarks of the pipeline's speed and memory, run by `make bench` (benchmarks/run.py)."""
