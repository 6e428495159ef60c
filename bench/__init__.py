"""Benchmarks (not tests): `make bench` / `python -m bench`. See bench/README.md."""
