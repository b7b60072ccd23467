"""The company's submission server: AUTH PLAIN and LOGIN against the scenario's users, and
``MAIL FROM`` only for the authenticated account's own address (or its Send-As addresses).

Accepted mail is queued durably and relayed to the recipient's MX by the company relay.
Replies use Postfix's wording, the most common submission server in front of such setups.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import AuthResult, LoginPassword

from diagnostics.fields import envelope_address
from diagnostics.sandbox import replies
from diagnostics.sandbox.relay import Queue
from diagnostics.sandbox.smtpserver import Handler, SandboxSMTP, queue_id
from diagnostics.secrets import Secret

log = logging.getLogger("diagnostics.sandbox")


@dataclass(frozen=True)
class Account:
    """A mailbox the submission server authenticates, and what it may send as."""

    login: str
    password: Secret
    send_as: frozenset[str]


class SubmissionHandler(Handler):
    """aiosmtpd handler and authenticator of the submission server."""

    def __init__(self, *, hostname: str, accounts: Mapping[str, Account], queue: Queue) -> None:
        self.hostname = hostname
        self.accounts = {login.casefold(): account for login, account in accounts.items()}
        self.queue = queue
        self.authentications: list[tuple[str, str, bool]] = []

    def authenticator(
        self, server: SandboxSMTP, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        account = self.accounts.get(login.casefold())
        given = auth_data.password
        ok = account is not None and hmac.compare_digest(given, account.password.reveal().encode())
        self.authentications.append((login, mechanism, ok))
        log.info(
            "submission: AUTH %s for %s from %s: %s",
            mechanism,
            login,
            server.world_peer,
            "ok" if ok else "failed",
        )
        if ok:
            return AuthResult(success=True, auth_data=auth_data)
        # Dovecot SASL behind Postfix answers a wrong user and a wrong password alike.
        return AuthResult(
            success=False,
            handled=False,
            message=replies.R535_AUTH_FAILED,
        )

    async def handle_MAIL(
        self,
        server: SandboxSMTP,
        session: Any,
        envelope: Any,
        address: str,
        mail_options: list[str],
    ) -> str:
        login = session.auth_data.login.decode("utf-8", "replace")
        account = self.accounts[login.casefold()]
        # Owned addresses compare in the form the envelope carries (an A-label domain).
        if envelope_address(address).casefold() not in account.send_as:
            return replies.R553_SENDER_NOT_OWNED.format(address=address, login=login)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return replies.R250_SENDER_OK

    async def handle_DATA(self, server: SandboxSMTP, session: Any, envelope: Any) -> str:
        ident = queue_id()
        only = envelope.rcpt_tos[0] if len(envelope.rcpt_tos) == 1 else None
        received = self.received(server, session, recipient=only, ident=ident, authenticated=True)
        await self.queue.put(
            envelope.mail_from, tuple(envelope.rcpt_tos), received + envelope.original_content
        )
        return replies.R250_QUEUED.format(ident=ident)
