"""Declarative providers: a points provider from one YAML file, no code (docs/definitions.md)."""
