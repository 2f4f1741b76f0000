"""Benchmarks of the publisher: publish latency against the floor and a polling baseline,
pipeline scaling, bursts, idle cost, JSON libraries, the dashboard, and a profile.

`hedge-kpi bench` runs them all in one process tree and writes docs/BENCHMARKS.md,
docs/benchmarks.png and docs/benchmarks.json; `--quick` is the CI smoke run.
"""
