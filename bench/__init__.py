"""Benchmarks of the publisher: publish latency against the floor and a polling baseline,
pipeline scaling, bursts, idle cost, JSON libraries, the dashboard, and a profile.

`hedge-kpi bench` runs them all in one process tree and writes docs/benchmarks.json and
docs/benchmarks.png, which docs/BENCHMARKS.md cites; `--quick` is the CI smoke run.
"""
