"""Tests for the sandbox Maildir: durable by default, lazy and non-durable when asked."""

from __future__ import annotations

import asyncio
import email.message
import os
import pathlib
import shutil
import stat
from typing import Any

import pytest

from diagnostics.sandbox.maildir import Maildir

SAMPLE = (
    b"From: recruiter@hr.sandbox.test\r\n"
    b"To: candidate@example.test\r\n"
    b"Subject: Interview on Tuesday\r\n"
    b"Message-ID: <1@hr.sandbox.test>\r\n"
    b"\r\n"
    b"Hello,\r\nsee you then.\r\n"
)


@pytest.fixture
def maildir(tmp_path: pathlib.Path) -> Maildir:
    return Maildir(tmp_path / "inbox")


def listing(path: pathlib.Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


def test_creates_private_layout(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "box"
    box = Maildir(root)
    assert box.root == root
    assert listing(root) == ["cur", "new", "tmp"]
    for sub in ("cur", "new", "tmp"):
        assert stat.S_IMODE((root / sub).stat().st_mode) == 0o700
    assert len(box) == 0
    assert box.keys() == []
    assert box.messages() == []


def test_create_false_requires_existing_maildir(tmp_path: pathlib.Path) -> None:
    with pytest.raises(FileNotFoundError, match="tmp/ is missing"):
        Maildir(tmp_path / "absent", create=False)
    assert not (tmp_path / "absent").exists()
    Maildir(tmp_path / "present")
    assert len(Maildir(tmp_path / "present", create=False)) == 0


@pytest.mark.parametrize(
    "data",
    [
        SAMPLE,
        SAMPLE.replace(b"\r\n", b"\n"),
        b"Subject: mixed\r\n\nline one\nline two\r\nno final newline",
        b"",
        bytes(range(256)) * 4,
    ],
    ids=["crlf", "lf", "mixed", "empty", "binary"],
)
def test_deliver_read_round_trip_is_byte_exact(maildir: Maildir, data: bytes) -> None:
    key = maildir.deliver(data)
    assert maildir.read(key) == data
    assert (maildir.root / "new" / key).read_bytes() == data
    assert maildir.keys() == [key]


def test_deliver_rejects_non_bytes(maildir: Maildir) -> None:
    with pytest.raises(TypeError, match="must be bytes, not str"):
        maildir.deliver(SAMPLE.decode())  # type: ignore[arg-type]
    assert listing(maildir.root / "tmp") == []
    assert len(maildir) == 0


def test_key_shape(maildir: Maildir) -> None:
    key = maildir.deliver(SAMPLE)
    seconds, rest = key.split(".", 1)
    assert seconds.isdigit()
    assert rest.startswith("M")
    assert f"P{os.getpid()}Q" in rest
    assert "/" not in key
    assert ":" not in key
    assert not key.startswith(".")


def test_file_is_in_new_and_tmp_is_empty_when_deliver_returns(maildir: Maildir) -> None:
    key = maildir.deliver(SAMPLE)
    path = maildir.root / "new" / key
    assert path.is_file()
    assert path.read_bytes() == SAMPLE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert listing(maildir.root / "tmp") == []
    assert listing(maildir.root / "cur") == []
    assert listing(maildir.root / "new") == [key]


@pytest.fixture
def disk_events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every fsync (of a file, by its folder, or of a folder) and rename, in order."""
    events: list[tuple[str, str]] = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd: int) -> None:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            target = "dir:" + os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        else:
            target = "file:" + os.path.basename(os.path.dirname(os.readlink(f"/proc/self/fd/{fd}")))
        events.append(("fsync", target))
        real_fsync(fd)

    def rename(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        events.append(
            ("rename", f"{pathlib.Path(src).parent.name}->{pathlib.Path(dst).parent.name}")
        )
        real_rename(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    return events


@pytest.mark.parametrize("options", [{}, {"lazy": True}], ids=["default", "lazy"])
def test_deliver_fsyncs_file_then_renames_then_fsyncs_new_dir(
    tmp_path: pathlib.Path, disk_events: list[tuple[str, str]], options: dict[str, bool]
) -> None:
    Maildir(tmp_path / "inbox", **options).deliver(SAMPLE)
    assert disk_events == [("fsync", "file:tmp"), ("rename", "tmp->new"), ("fsync", "dir:new")]


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
def test_non_durable_delivery_renames_into_new_without_fsync(
    tmp_path: pathlib.Path, disk_events: list[tuple[str, str]], lazy: bool
) -> None:
    box = Maildir(tmp_path / "inbox", lazy=lazy, durable=False)
    key = box.deliver(SAMPLE)
    assert disk_events == [("rename", "tmp->new")]
    assert listing(box.root / "tmp") == []
    assert listing(box.root / "new") == [key]
    assert (box.root / "new" / key).read_bytes() == SAMPLE
    assert stat.S_IMODE((box.root / "new" / key).stat().st_mode) == 0o600


def test_lazy_maildir_makes_nothing_and_reads_empty_until_its_first_delivery(
    tmp_path: pathlib.Path,
) -> None:
    root = tmp_path / "company" / "inbox"
    box = Maildir(root, lazy=True)
    assert box.keys() == []
    assert len(box) == 0
    assert box.messages() == []
    assert "1700000000.M000001P1Q1Rdeadbeefdeadbeef.host" not in box
    with pytest.raises(KeyError):
        box.read("1700000000.M000001P1Q1Rdeadbeefdeadbeef.host")
    with pytest.raises(KeyError):
        box.remove("1700000000.M000001P1Q1Rdeadbeefdeadbeef.host")
    assert not (tmp_path / "company").exists()
    key = box.deliver(SAMPLE)
    assert listing(root) == ["cur", "new", "tmp"]
    for sub in ("cur", "new", "tmp"):
        assert stat.S_IMODE((root / sub).stat().st_mode) == 0o700
    assert listing(root / "tmp") == []
    assert box.keys() == [key]
    assert box.read(key) == SAMPLE
    assert [m["Message-ID"] for m in box.messages()] == ["<1@hr.sandbox.test>"]
    assert Maildir(root, create=False).keys() == [key]


def test_lazy_maildir_reads_a_removed_folder_as_empty_and_makes_it_again(
    tmp_path: pathlib.Path,
) -> None:
    box = Maildir(tmp_path / "inbox", lazy=True)
    box.deliver(b"Subject: before\r\n\r\n")
    shutil.rmtree(box.root)
    assert box.keys() == []
    assert len(box) == 0
    key = box.deliver(b"Subject: after\r\n\r\n")
    assert box.keys() == [key]
    assert box.read(key) == b"Subject: after\r\n\r\n"


def test_a_delivery_arriving_while_a_lazy_maildir_is_made_lands(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A delivery that finds tmp/ renames into new/ at once: new/ must already be there."""
    box = Maildir(tmp_path / "inbox", lazy=True, durable=False)
    real_mkdir = pathlib.Path.mkdir
    racing: list[str] = []

    def mkdir(path: pathlib.Path, *args: Any, **kwargs: Any) -> None:
        real_mkdir(path, *args, **kwargs)
        if path.name == "tmp" and not racing:
            racing.append("started")
            racing.append(box.deliver(b"Subject: racing\r\n\r\n"))

    monkeypatch.setattr(pathlib.Path, "mkdir", mkdir)
    first = box.deliver(b"Subject: first\r\n\r\n")
    assert box.keys() == [first, racing[1]]
    assert listing(box.root / "tmp") == []


def test_eager_maildir_still_reports_a_removed_folder(maildir: Maildir) -> None:
    shutil.rmtree(maildir.root)
    with pytest.raises(FileNotFoundError):
        maildir.keys()
    with pytest.raises(FileNotFoundError):
        maildir.deliver(SAMPLE)
    assert not maildir.root.exists()


def test_lazy_maildir_cannot_be_asked_not_to_create(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="creates its folders with its first message"):
        Maildir(tmp_path / "inbox", lazy=True, create=False)


def test_failed_delivery_leaves_nothing_behind(
    maildir: Maildir, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="Input/output error"):
        maildir.deliver(SAMPLE)
    monkeypatch.undo()
    assert listing(maildir.root / "tmp") == []
    assert listing(maildir.root / "new") == []
    assert len(maildir) == 0


def test_keys_follow_delivery_order_for_rapid_deliveries(maildir: Maildir) -> None:
    delivered = [maildir.deliver(b"Subject: %d\r\n\r\nbody\r\n" % i) for i in range(50)]
    assert len(set(delivered)) == 50
    assert maildir.keys() == delivered
    assert [m["Subject"] for m in maildir.messages()] == [str(i) for i in range(50)]


async def test_concurrent_adeliver_keeps_every_message_once(maildir: Maildir) -> None:
    payloads = [b"Subject: concurrent %03d\r\n\r\nbody %d\r\n" % (i, i) for i in range(200)]
    keys = await asyncio.gather(*(maildir.adeliver(p) for p in payloads))
    assert len(set(keys)) == 200
    assert len(listing(maildir.root / "new")) == 200
    assert listing(maildir.root / "tmp") == []
    assert sorted(maildir.keys()) == sorted(keys)
    assert len(maildir) == 200
    listed = maildir.keys()
    stored = sorted(maildir.read(key) for key in listed)
    assert stored == sorted(payloads)
    for key, payload in zip(keys, payloads, strict=True):
        assert maildir.read(key) == payload


def test_restart_sees_every_message(tmp_path: pathlib.Path) -> None:
    first = Maildir(tmp_path / "inbox")
    delivered = [first.deliver(b"Subject: %d\r\n\r\n" % i) for i in range(5)]
    reopened = Maildir(tmp_path / "inbox", create=False)
    assert reopened.keys() == delivered
    assert [reopened.read(k) for k in delivered] == [b"Subject: %d\r\n\r\n" % i for i in range(5)]
    later = reopened.deliver(b"Subject: after restart\r\n\r\n")
    assert first.keys() == [*delivered, later]


def test_leftover_tmp_file_is_not_a_message(maildir: Maildir) -> None:
    key = maildir.deliver(SAMPLE)
    stray = "1700000000.M000001P1Q1Rdeadbeefdeadbeef.crashed"
    (maildir.root / "tmp" / stray).write_bytes(b"Subject: half writt")
    assert maildir.keys() == [key]
    assert len(maildir) == 1
    assert stray not in maildir
    with pytest.raises(KeyError):
        maildir.read(stray)
    with pytest.raises(KeyError):
        maildir.remove(stray)
    assert (maildir.root / "tmp" / stray).exists()


def test_cur_messages_are_listed_and_hidden_files_are_not(maildir: Maildir) -> None:
    first = maildir.deliver(b"Subject: first\r\n\r\n")
    second = maildir.deliver(b"Subject: second\r\n\r\n")
    seen = f"{first}:2,S"
    (maildir.root / "new" / first).rename(maildir.root / "cur" / seen)
    (maildir.root / "new" / ".hidden").write_bytes(b"x")
    (maildir.root / "cur" / "subdir").mkdir()
    assert maildir.keys() == [seen, second]
    assert seen in maildir
    assert first not in maildir
    assert maildir.read(seen) == b"Subject: first\r\n\r\n"


def test_message_parses_with_default_policy(maildir: Maildir) -> None:
    key = maildir.deliver(SAMPLE)
    message = maildir.message(key)
    assert message["From"] == "recruiter@hr.sandbox.test"
    assert message["Subject"] == "Interview on Tuesday"
    assert message["Message-ID"] == "<1@hr.sandbox.test>"
    assert isinstance(message, email.message.EmailMessage)
    # The stdlib parser keeps the stored CRLF line endings in the body.
    assert message.get_content() == "Hello,\r\nsee you then.\r\n"
    assert [m["Message-ID"] for m in maildir.messages()] == ["<1@hr.sandbox.test>"]


@pytest.mark.parametrize("key", ["a/b", "../new/x", "/etc/passwd", ".hidden", "..", ".", ""])
def test_unsafe_keys_are_rejected(maildir: Maildir, key: str) -> None:
    maildir.deliver(SAMPLE)
    with pytest.raises(ValueError, match="invalid Maildir key"):
        maildir.read(key)
    with pytest.raises(ValueError, match="invalid Maildir key"):
        maildir.remove(key)
    assert key not in maildir
    with pytest.raises(ValueError, match="invalid Maildir key"):
        maildir.message(key)


def test_contains_handles_non_strings(maildir: Maildir) -> None:
    key = maildir.deliver(SAMPLE)
    assert key in maildir
    assert key.encode() not in maildir
    assert None not in maildir
    assert "missing" not in maildir


def test_remove(maildir: Maildir) -> None:
    first = maildir.deliver(b"Subject: 1\r\n\r\n")
    second = maildir.deliver(b"Subject: 2\r\n\r\n")
    maildir.remove(first)
    assert maildir.keys() == [second]
    assert first not in maildir
    assert len(maildir) == 1
    assert listing(maildir.root / "new") == [second]
    with pytest.raises(KeyError):
        maildir.remove(first)
    with pytest.raises(KeyError):
        maildir.read(first)
    with pytest.raises(KeyError):
        maildir.message(first)


def test_remove_from_cur(maildir: Maildir) -> None:
    key = maildir.deliver(SAMPLE)
    (maildir.root / "new" / key).rename(maildir.root / "cur" / key)
    maildir.remove(key)
    assert len(maildir) == 0
    assert listing(maildir.root / "cur") == []
