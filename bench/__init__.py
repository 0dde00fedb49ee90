"""Load benchmark harness (issue 8): `make bench` runs `python -m bench.run`."""
