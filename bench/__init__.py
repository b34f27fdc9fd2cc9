"""Benchmarks: each writes its figures to bench/results/*.json, as ratios against a reference measured in the same
run."""
