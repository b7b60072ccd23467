"""The round trip's mailboxes in a sandbox world: where its test message arrived at the
platform, the company's local copies, the bounces and replies in the candidates' mailboxes
(the :class:`~diagnostics.roundtrip.Mailboxes` the round trip reads, played by the world's
Maildirs)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from diagnostics.parse.dkim import DKIMKey
from diagnostics.roundtrip import TOKEN_HEADER, Arrival
from diagnostics.sandbox.maildir import Maildir


class World(Protocol):
    """What the mailboxes read of a :class:`~diagnostics.sandbox.world.Sandbox`."""

    probe_sender: str
    dkim_key: DKIMKey
    state_dir: Path

    @property
    def inbound(self) -> Mapping[str, Any]:
        """The platform's accounts, by name."""

    def company_mailbox(self, address: str) -> Maildir: ...

    def platform_mailbox(self, account: str, folder: str = "unassigned") -> Maildir: ...

    def candidate_mailbox(self, address: str) -> Maildir: ...


def _with_token(box: Maildir, token: str, folder: str) -> list[Arrival]:
    found = []
    needle = f"{TOKEN_HEADER}: {token}".encode()
    for key in box.keys():
        data = box.read(key)
        if needle in data or token.encode() in data:
            found.append(
                Arrival(
                    folder,
                    data,
                    (box.root / "new" / key).stat().st_mtime
                    if (box.root / "new" / key).exists()
                    else 0.0,
                )
            )
    return found


class SandboxMailboxes:
    """The round trip's mailboxes in a sandbox: the platform's, the company's, the sender's."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.sender = world.probe_sender
        self.dkim_key: DKIMKey | None = world.dkim_key

    def arrived(self, token: str) -> list[Arrival]:
        found = []
        for account in self.world.inbound:
            root = self.world.state_dir / "platform" / account
            if not root.exists():
                continue
            for new in sorted(root.rglob("new")):
                folder = new.parent.relative_to(root).as_posix()
                box = self.world.platform_mailbox(account, folder)
                found += _with_token(box, token, folder)
        return found

    def local_copies(self, address: str, token: str) -> list[Arrival]:
        return _with_token(self.world.company_mailbox(address), token, address.lower())

    def bounces(self, token: str) -> list[Arrival]:
        return _with_token(self.world.candidate_mailbox(self.sender), token, self.sender)

    def received_by(self, address: str) -> list[Arrival]:
        box = self.world.candidate_mailbox(address)
        return [Arrival(address.lower(), box.read(key), 0.0) for key in box.keys()]

    def arrived_since(self, since: float) -> list[Arrival]:
        found = []
        for account in self.world.inbound:
            root = self.world.state_dir / "platform" / account
            for new in sorted(root.rglob("new")) if root.exists() else []:
                for path in sorted(new.iterdir()):
                    stored = path.stat().st_mtime
                    if stored >= since:
                        found.append(
                            Arrival(str(new.parent.relative_to(root)), path.read_bytes(), stored)
                        )
        return found
