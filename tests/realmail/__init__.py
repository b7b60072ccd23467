"""A real Postfix and a real Dovecot on loopback, started from a temporary folder.

For live inbound tests: mail for ``jobs@company.test`` arrives at a real MX (Postfix on
127.0.25.1:25), a copy is delivered over LMTP into a real Dovecot maildir, and the redirect
goes to a platform sink on 127.0.26.1:25; a small DNS server on loopback publishes the MX
records. See ``servers.py`` for the start and stop logic and ``conftest.py`` for the fixtures.
"""
