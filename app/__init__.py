"""points-gateway: one REST API for a user's loyalty and reward-point balances."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("points-gateway")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
