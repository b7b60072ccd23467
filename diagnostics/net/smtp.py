"""SMTP sessions on a dialed socket, and AUTH with exactly one attempt.

A socket from :func:`diagnostics.net.dial.dial` is handed to aiosmtplib (``sock=``) so that
the TLS host name stays the server's name while the socket goes wherever
:class:`~diagnostics.context.Endpoints` says.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # aiosmtplib is imported where a session is opened: `maildiag smtp` speaks SMTP through
    # diagnostics.smtpclient and only needs address_literal from here.
    import aiosmtplib


def address_literal(sockname: Any) -> str:
    """The RFC 5321 address literal of a socket's address (``[192.0.2.5]``,
    ``[IPv6:2001:db8::5]``): what a client without a meaningful domain name says after EHLO
    (RFC 5321 4.1.4). A made-up name is refused by servers that look it up (Postfix
    reject_unknown_helo_hostname), and looking up our own name could ask a DNS server."""
    try:
        address = ipaddress.ip_address(str(sockname[0]).split("%", 1)[0])
    except (TypeError, IndexError, ValueError):
        return "[127.0.0.1]"
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        return f"[{mapped}]" if mapped else f"[IPv6:{address.compressed}]"
    return f"[{address}]"


@contextlib.asynccontextmanager
async def smtp_session(sock: socket.socket, **options: Any) -> AsyncIterator[aiosmtplib.SMTP]:
    """An aiosmtplib client on the connected ``sock``, greeted and, on exit, quit politely.

    The client's transport owns the socket once it exists: closing the socket ourselves
    while a TLS transport is still shutting down would free its descriptor under the event
    loop's feet (and the next socket would get the same number).
    """
    import aiosmtplib

    # Without a name of its own the client introduces itself by its address (aiosmtplib would
    # otherwise take socket.getfqdn(), a reverse DNS lookup of this machine).
    options.setdefault("local_hostname", address_literal(sock.getsockname()))
    client = aiosmtplib.SMTP(sock=sock, **options)
    try:
        await client.connect()
    except BaseException:
        client.close()
        # A TLS transport that is shutting down waits for its peer; cutting the connection
        # ends that wait, and the transport then closes the socket it owns. Closing the
        # socket here instead would leave that transport open for good.
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        raise
    try:
        yield client
        if client.is_connected:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await client.quit()
    finally:
        client.close()


# Preference among what a server advertises. PLAIN and LOGIN carry the same secret; CRAM-MD5
# is left out because Microsoft 365 and Gmail never offer it and Dovecot needs plain-text
# password storage for it.
AUTH_PREFERENCE = ("plain", "login")


def choose_mechanism(advertised: list[str]) -> str | None:
    """The one AUTH mechanism to use among those ``advertised`` (lower-case), or None."""
    offered = {m.lower() for m in advertised}
    return next((m for m in AUTH_PREFERENCE if m in offered), None)


async def authenticate_once(client: aiosmtplib.SMTP, account: str, password: str) -> str:
    """AUTH with exactly one mechanism; returns its name.

    aiosmtplib's ``login()`` tries every advertised mechanism in turn, so a wrong password
    counts two or three times against the mailbox's lockout; this makes one attempt.
    SMTPAuthenticationError passes up with the server's reply; SMTPException when the server
    offers no mechanism this client speaks.
    """
    import aiosmtplib

    if client.last_ehlo_response is None:
        # After STARTTLS the client must forget the old EHLO answer (RFC 3207 4.2) and ask again.
        await client.ehlo()
    mechanism = choose_mechanism(client.server_auth_methods)
    if mechanism is None:
        offered = " ".join(client.server_auth_methods) or "none"
        raise aiosmtplib.SMTPException(
            f"no supported AUTH mechanism offered (server offers: {offered})"
        )
    method = client.auth_plain if mechanism == "plain" else client.auth_login
    await method(account, password)
    return mechanism
