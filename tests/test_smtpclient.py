"""The SMTP client against small loopback servers: the steps it records, the message it sends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from diagnostics.smtpclient import SMTPConnection, SMTPRefused, Transcript


@asynccontextmanager
async def server(received: list[bytes], *, rcpt: bytes = b"250 2.1.5 OK") -> AsyncIterator[int]:
    """A loopback SMTP server that takes one message; every byte it reads goes to
    ``received``."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mx.example ESMTP\r\n")
        while line := await reader.readline():
            received.append(line)
            verb = line.split(b" ", 1)[0].split(b":", 1)[0].strip().upper()
            if verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                await writer.drain()
                while (body := await reader.readline()) != b".\r\n":
                    received.append(body)
                writer.write(b"250 2.0.0 queued\r\n")
            elif verb == b"RCPT":
                writer.write(rcpt + b"\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                break
            else:
                writer.write(b"250 mx.example\r\n")
            await writer.drain()
        writer.close()

    listening = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield listening.sockets[0].getsockname()[1]
    finally:
        listening.close()
        await listening.wait_closed()


async def test_a_message_goes_out_with_its_leading_dots_doubled_and_each_step_recorded() -> None:
    received: list[bytes] = []
    transcript = Transcript()
    async with server(received) as port:
        connection = await SMTPConnection.open(
            "127.0.0.1", port, server_name="mx.example", timeout=2, transcript=transcript
        )
        await connection.read_reply("banner", 2)
        await connection.command("ehlo", "EHLO [127.0.0.1]", 2)
        verdict = await connection.send_message(
            "a@example.org",
            ["b@example.org"],
            b"Subject: x\r\n\r\n.hidden line\r\nlast",
            timeout=2,
            data_timeout=2,
        )
        await connection.close()
    assert str(verdict) == "250 2.0.0 queued"
    assert received[received.index(b"DATA\r\n") + 1 :] == [
        b"Subject: x\r\n",
        b"\r\n",
        b"..hidden line\r\n",
        b"last\r\n",
        b"QUIT\r\n",
    ]
    assert [(s.name, s.ok) for s in transcript.steps] == [
        ("connect", True),
        ("banner", True),
        ("ehlo", True),
        ("mail", True),
        ("rcpt", True),
        ("data", True),
        ("data_end", True),
    ]
    assert transcript.steps[-1].reply == "250 2.0.0 queued"


async def test_a_refused_recipient_ends_the_transaction_naming_its_step() -> None:
    received: list[bytes] = []
    async with server(received, rcpt=b"550 5.1.1 no such user") as port:
        connection = await SMTPConnection.open(
            "127.0.0.1", port, server_name="mx.example", timeout=2
        )
        await connection.read_reply("banner", 2)
        with pytest.raises(SMTPRefused) as refused:
            await connection.send_message(
                "a@example.org", ["nobody@example.org"], b"x\r\n", timeout=2, data_timeout=2
            )
        await connection.close()
    assert (refused.value.step, str(refused.value.reply)) == ("rcpt", "550 5.1.1 no such user")
    assert b"DATA\r\n" not in received
    step = connection.transcript.steps[-1]
    assert (step.name, step.ok, step.reply) == ("rcpt", False, "550 5.1.1 no such user")


def test_the_envelope_carries_an_internationalised_domain_by_its_a_label() -> None:
    from diagnostics.smtpclient import envelope_path

    assert envelope_path("jobs@bücher.example") == "<jobs@xn--bcher-kva.example>"
    assert envelope_path("jobs@acme.example") == "<jobs@acme.example>"
    with pytest.raises(ValueError, match="an SMTP command cannot carry"):
        envelope_path("jobs@acme.example>\r\nRCPT TO:<x@evil.example")
