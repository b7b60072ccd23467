"""The one network layer: every check and sandbox client reaches the network through it.

- :mod:`~diagnostics.net.dial` turns a host name or address and a port into a connected
  socket: ``--resolve`` overrides, the hosts file, DNS, the sandbox's endpoints, a source
  address and the connect timeout, with one error (:class:`DialError`).
- :mod:`~diagnostics.net.dns` is the only caller of a resolver: :func:`query_dns` answers
  every record lookup with one outcome model, and :func:`resolver_health` establishes once per
  run whether the resolver itself works before any finding blames a name.
- :mod:`~diagnostics.net.smtp` opens aiosmtplib sessions on a dialed socket and
  authenticates exactly once.
- :mod:`~diagnostics.net.session` runs the smtp checks' one SMTP session per setting through
  the SMTP client (:mod:`diagnostics.smtpclient`). It sits above the client, which dials
  through this package, so it is not imported here.
"""

from diagnostics.net.dial import Dialer, DialError, connect_socket, dial, system_hosts
from diagnostics.net.dns import (
    DNSAnswer,
    DNSQueries,
    ResolverHealth,
    describe_resolver,
    exchanges_of,
    mx_exchanges,
    query_dns,
    resolver_health,
)
from diagnostics.net.smtp import (
    AUTH_PREFERENCE,
    address_literal,
    authenticate_once,
    choose_mechanism,
    smtp_session,
)

__all__ = [
    "AUTH_PREFERENCE",
    "DNSAnswer",
    "DNSQueries",
    "DialError",
    "Dialer",
    "ResolverHealth",
    "address_literal",
    "authenticate_once",
    "choose_mechanism",
    "connect_socket",
    "describe_resolver",
    "dial",
    "exchanges_of",
    "mx_exchanges",
    "query_dns",
    "resolver_health",
    "smtp_session",
    "system_hosts",
]
