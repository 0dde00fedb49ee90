"""Logs, metrics, traces and graceful shutdown: how an operator sees the gateway work."""
