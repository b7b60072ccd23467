"""Check families, one module each; importing this package registers every check."""

from diagnostics.checks import config

__all__ = ["config"]
