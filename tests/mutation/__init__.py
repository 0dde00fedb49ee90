"""The mutation tester behind `make mutate` (issue 19)."""
