"""Benchmarks of the running system, driven from outside through the public contract only."""
