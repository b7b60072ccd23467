"""Check families, one module each; importing this package registers every check."""

from diagnostics.checks import allowlist, config, dns, headers, redirect, sender, smtp

__all__ = ["allowlist", "config", "dns", "headers", "redirect", "sender", "smtp"]
