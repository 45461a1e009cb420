"""Benchmark scripts; results go to BENCHMARKS.md with command, machine and date."""
