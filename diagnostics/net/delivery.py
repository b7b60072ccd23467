"""Handing a message to the MX of an address, as a sending mail server does.

The round trips (sandbox and live) deliver their tagged message this way: the MX records of
the address's domain asked from DNS (a sending MTA knows no hosts file), each exchange's
addresses tried in turn on port 25, one SMTP transaction through
:class:`~diagnostics.smtpclient.SMTPConnection`. Above the client, so :mod:`diagnostics.net`
does not import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from diagnostics.errors import DialError, ProbeError, SandboxError
from diagnostics.net.dial import dial
from diagnostics.net.dns import mx_exchanges, query_dns
from diagnostics.smtpclient import SMTPConnection, accepted, envelope_path
from diagnostics.smtpreply import Reply

if TYPE_CHECKING:
    from diagnostics.context import Context


async def mx_session(
    context: Context, domain: str, *, helo: str | None = None
) -> tuple[SMTPConnection, str]:
    """An SMTP session with the first MX of ``domain`` that answers, after its greeting and
    EHLO (``helo``, else this end's address literal); and that exchange's name."""
    timeouts = context.timeouts
    lifetime = timeouts.dns
    for attempt in range(3):
        # Asked as in live mode: a REFUSED in the error tells a name the sandbox does not play.
        answer = await query_dns(context.resolver, domain, "MX", lifetime=lifetime)
        # A server that failed or did not answer in time: try again, as a sending MTA does.
        if not answer.failed or attempt == 2:
            break
    exchanges = mx_exchanges(answer)
    if not exchanges:
        raise DialError(
            "resolve", domain, 25, answer.detail, message=f"no MX for {domain}: {answer.detail}"
        )
    last: Exception | None = None
    for exchange in exchanges:
        # Straight from the MX's address records: a sending MTA knows no hosts file.
        addresses = await query_dns(context.resolver, exchange, "A", lifetime=lifetime)
        if addresses.kind != "answer":
            last = DialError("resolve", exchange, 25, addresses.detail)
            continue
        for record in addresses.records:
            try:
                sock = await dial(context, record, 25)
            except (ProbeError, SandboxError) as exc:
                last = exc
                continue
            connection = await SMTPConnection.start(
                sock, server_name=exchange, timeout=timeouts.connect
            )
            try:
                accepted("banner", await connection.read_reply("banner", timeouts.banner))
                name = helo or connection.helo_name
                accepted("ehlo", await connection.command("ehlo", f"EHLO {name}", timeouts.command))
            except BaseException:
                await connection.close()
                raise
            return connection, str(exchange)
    raise ProbeError("deliver", f"no MX of {domain} answered: {last}")


async def deliver_to_mx(
    context: Context, address: str, data: bytes, sender: str, *, helo: str | None = None
) -> str:
    """Hand ``data`` to the first MX of ``address``'s domain that answers; its name.
    SMTPRefused names the step a 4xx or 5xx answered."""
    connection, exchange = await mx_session(context, address.rsplit("@", 1)[-1], helo=helo)
    timeouts = context.timeouts
    try:
        await connection.send_message(
            sender, [address], data, timeout=timeouts.command, data_timeout=timeouts.data
        )
    finally:
        await connection.close()
    return exchange


async def ask_recipient(context: Context, address: str) -> tuple[str, Reply]:
    """Whether the MX of ``address``'s domain would take mail for it: ``MAIL FROM:<>``,
    ``RCPT TO``, ``RSET``, ``QUIT``; no message is sent. The exchange and its RCPT reply
    (SMTPRefused when it refuses the null sender already)."""
    connection, exchange = await mx_session(context, address.rsplit("@", 1)[-1])
    timeouts = context.timeouts
    try:
        accepted("mail", await connection.command("mail", "MAIL FROM:<>", timeouts.command))
        reply = await connection.command(
            "rcpt", f"RCPT TO:{envelope_path(address)}", timeouts.command
        )
        await connection.command("rset", "RSET", timeouts.command)
        await connection.quit(timeouts.command)
    finally:
        await connection.close()
    return exchange, reply
