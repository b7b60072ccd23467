"""Pure readers of what mail and DNS say: no socket, no resolver, no clock of their own.

- :mod:`~diagnostics.parse.spf`: SPF records and ``check_host()`` over a lookup function.
- :mod:`~diagnostics.parse.spfmacro`: SPF macro expansion (RFC 7208 section 7) and the
  domain-spec grammar.
- :mod:`~diagnostics.parse.dmarc`: DMARC records and policy discovery over a lookup function.
- :mod:`~diagnostics.parse.dkim`: DKIM signing and verification over keys fetched first.
- :mod:`~diagnostics.parse.headers`: what the headers of a redirected message tell.

Where DNS is needed it comes in as an argument (SPF's and DMARC's ``lookup``, DKIM's
resolver); the checks in :mod:`diagnostics.checks` decide what a result means for a finding.
"""
