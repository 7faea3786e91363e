"""Benchmarks of gqlsync against stock Strawberry + Channels and a raw broadcast floor.

Run ``python -m bench`` (see ``bench/README.md``).
"""
