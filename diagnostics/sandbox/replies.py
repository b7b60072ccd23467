"""The sandbox servers' SMTP replies, as data.

Worded as Postfix (with Dovecot SASL) words them, the most common server in front of such
setups; Exim's words where Postfix has none in the SMTP dialogue (the hop limit). Each name
carries its reply code, and a test holds every constant to that. Placeholders are filled
with :meth:`str.format`.
"""

from __future__ import annotations

from typing import Final

R250_SENDER_OK: Final = "250 2.1.0 Ok"
R250_RECIPIENT_OK: Final = "250 2.1.5 Ok"
R250_QUEUED: Final = "250 2.0.0 Ok: queued as {ident}"
R451_TEMPORARY: Final = "451 4.4.1 {reason}"
R535_AUTH_FAILED: Final = "535 5.7.8 Error: authentication failed: authentication failure"
R550_USER_UNKNOWN: Final = (
    "550 5.1.1 <{address}>: Recipient address rejected: User unknown in virtual mailbox table"
)
R553_SENDER_NOT_OWNED: Final = (
    "553 5.7.1 <{address}>: Sender address rejected: not owned by user {login}"
)
R554_RELAY_DENIED: Final = "554 5.7.1 <{address}>: Relay access denied"
R554_CLIENT_REJECTED: Final = "554 5.7.1 <unknown[{peer}]>: Client host rejected: Access denied"
R554_TOO_MANY_HOPS: Final = '554 5.4.6 Too many "Received" headers - suspected mail loop'


def all_replies() -> dict[str, str]:
    """Every reply constant by name."""
    return {
        name: value
        for name, value in globals().items()
        if name.startswith("R") and name[1:4].isdigit()
    }
