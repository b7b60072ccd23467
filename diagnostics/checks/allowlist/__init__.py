"""The allowlist checks: the platform's egress IPs against the company's SMTP server.

- :mod:`~diagnostics.checks.allowlist.coverage` (``allowlist.coverage``): does the allowlist
  documented in the account file cover the egress IPs (CIDR arithmetic in
  :mod:`diagnostics.netblocks`)?
- :mod:`~diagnostics.checks.allowlist.reachability` (``allowlist.reachability``): does the
  server greet a connection from each egress IP (the probe in :mod:`diagnostics.smtpgreeting`)?

Both put ready-to-paste lines in their evidence (:mod:`diagnostics.report.snippets`).
Importing this package registers both checks, coverage first: the order of registration is
the order of the reports.
"""

from diagnostics.checks.allowlist import coverage, reachability

__all__ = ["coverage", "reachability"]
