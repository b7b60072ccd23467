"""The generated passwords' file: sourced by a shell it gives back every value exactly, and
it is never readable by anyone but its owner, not even while it is written."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from diagnostics.sandbox import credentials
from diagnostics.sandbox.credentials import CREDENTIALS_FILE, write_credentials

BASH = shutil.which("bash") or "/bin/bash"

AWKWARD = [
    "plain-Token_123",
    "it's",
    "'",
    "''",
    '$HOME `id` $(id) \\ " ! *',
    "two\nlines",
    "tab\there; and & | < > #",
    "ümlaut ß €",
    "-n",
]


@pytest.mark.parametrize("value", AWKWARD)
def test_a_shell_reads_back_exactly_the_value(tmp_path: Path, value: str) -> None:
    path = write_credentials(tmp_path, {"SANDBOX_TEST_PASSWORD": value, "OTHER_PW": "x"})
    assert path == tmp_path / CREDENTIALS_FILE
    done = subprocess.run(
        [BASH, "-c", '. "$1" && printf %s "$SANDBOX_TEST_PASSWORD"', "bash", str(path)],
        capture_output=True,
        check=True,
        timeout=30,
        env={"PATH": os.environ["PATH"], "HOME": "/nonexistent"},
    )
    assert done.stdout.decode() == value
    assert done.stderr == b""


def test_every_line_is_an_export_of_a_single_quoted_value(tmp_path: Path) -> None:
    path = write_credentials(tmp_path, {"B_PW": "b'b", "A_PW": "a"})
    assert path is not None
    lines = path.read_text().splitlines()
    assert lines[0].startswith("#")
    assert lines[1:] == ["export A_PW='a'", "export B_PW='b'\"'\"'b'"]


def test_the_file_is_0600_from_its_creation_whatever_the_umask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    modes_before_rename: list[int] = []
    replace = os.replace

    def watching_replace(source: str, target: Path) -> None:
        modes_before_rename.append(stat.S_IMODE(os.stat(source).st_mode))
        replace(source, target)

    monkeypatch.setattr(credentials.os, "replace", watching_replace)
    previous = os.umask(0)
    try:
        path = write_credentials(tmp_path, {"SANDBOX_TEST_PASSWORD": "secret-value"})
    finally:
        os.umask(previous)
    assert path is not None
    assert modes_before_rename == [0o600]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [CREDENTIALS_FILE]  # no temp file left


def test_a_file_of_an_earlier_run_is_replaced_or_removed(tmp_path: Path) -> None:
    old = tmp_path / CREDENTIALS_FILE
    old.write_text("export SANDBOX_TEST_PASSWORD='old'\n")
    old.chmod(0o644)
    path = write_credentials(tmp_path, {"SANDBOX_TEST_PASSWORD": "new"})
    assert path == old
    assert stat.S_IMODE(old.stat().st_mode) == 0o600
    assert "'new'" in old.read_text() and "'old'" not in old.read_text()
    # Every password came from the environment this time: no file offers stale ones.
    assert write_credentials(tmp_path, {}) is None
    assert not old.exists()


@pytest.mark.parametrize("name", ["1ABC", "A-B", "A B", "A;rm", ""])
def test_a_name_no_shell_can_export_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="not an environment variable name"):
        write_credentials(tmp_path, {name: "value"})
    assert list(tmp_path.iterdir()) == []
