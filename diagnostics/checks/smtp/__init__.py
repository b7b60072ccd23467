"""The "Test connection" done right: ``smtp.connect``, ``smtp.tls``, ``smtp.auth``,
``smtp.sender``, ``smtp.provider`` and ``smtp.settings_probe``.

Every check reads the run's one session per distinct SMTP setting
(:mod:`diagnostics.net.session`, which does the I/O) and classifies it: a finding with a cause
and a remediation naming the setting and the value to try. A failure the check expects never
raises.

- :mod:`~diagnostics.checks.smtp.connection`: ``smtp.connect`` and ``smtp.tls``.
- :mod:`~diagnostics.checks.smtp.sending`: ``smtp.auth``, ``smtp.sender`` and ``smtp.provider``.
- :mod:`~diagnostics.checks.smtp.settings_probe`: ``smtp.settings_probe``.
- :mod:`~diagnostics.checks.smtp.common`: the wording and the per-(sub)company loop they share.

Importing this package registers the checks, in that order.
"""

from diagnostics.checks.smtp import connection, sending, settings_probe

__all__ = ["connection", "sending", "settings_probe"]
