"""Mutation testing of the decision modules (issue 19): `make mutate` runs `python -m mutation`."""
