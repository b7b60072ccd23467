"""Account files written to hurt: bombs, self-references, deep nesting, huge files. Each is a
configuration error naming the file and the bound, within a second and a few megabytes."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
import yaml

from diagnostics.cli import main
from diagnostics.config import load_config
from diagnostics.errors import ConfigError
from diagnostics.safeyaml import MAX_VALUES, YAMLLimit, check_bounds

HEAD = "platform: {profile: personio, account: acme}\n"


def laughs(levels: int = 9) -> str:
    """The "billion laughs": each level nine aliases of the one before."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels + 1):
        refs = ",".join(f"*a{level - 1}" for _ in range(9))
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


def problem_of(path: Path) -> tuple[str, str, str, int | None]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    ((problem),) = caught.value.problems
    return problem.key, problem.expected, problem.found, problem.line


@pytest.mark.parametrize("where", ["name", "employees", "positions", "subcompanies", "unknown"])
def test_a_billion_laughs_is_refused_before_it_expands(tmp_path: Path, where: str) -> None:
    text = HEAD + laughs() + f"company: {{name: ACME}}\n{where}: *a9\n"
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    started = time.perf_counter()
    key, expected, found, line = problem_of(path)
    assert time.perf_counter() - started < 2
    assert (key, expected) == ("(file)", "YAML within maildiag's bounds")
    assert found == f"more than {MAX_VALUES:,} values once aliases are expanded"
    assert line is not None


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "self.yaml"
    path.write_text(HEAD + "company: &c\n  name: ACME\n  again: *c\n")
    assert problem_of(path) == (
        "(file)",
        "YAML within maildiag's bounds",
        "the alias *c is inside the &c it refers to",
        4,
    )


def test_deep_nesting_is_refused_without_recursion(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(HEAD + "company: " + "[" * 10_000 + "]" * 10_000 + "\n")
    key, expected, found, _ = problem_of(path)
    assert (key, expected, found) == (
        "(file)",
        "YAML within maildiag's bounds",
        "nesting deeper than 64 levels",
    )


def test_ordinary_anchors_and_aliases_still_load(tmp_path: Path) -> None:
    text = (
        HEAD + "smtp_defaults: &smtp {host: smtp.acme.example, port: 587, encryption: starttls}\n"
    )
    check_bounds(text)  # a few shared blocks are fine
    with pytest.raises(YAMLLimit):
        check_bounds(laughs(6), max_values=1000)


def test_a_huge_account_file_is_refused_by_its_size(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text(
        HEAD + "company: {name: ACME}\nemployees:\n" + "  - {name: x, email: x@y.z}\n" * 60_000
    )
    key, expected, found, _ = problem_of(path)
    assert (key, expected) == ("(file)", "a smaller file")
    assert found == (
        f"{path} is larger than 1,048,576 bytes, the limit for a config file "
        "(set MAILDIAG_MAX_CONFIG_BYTES to raise it)"
    )


def test_a_password_file_that_never_ends_is_read_no_further_than_its_limit(tmp_path: Path) -> None:
    path = tmp_path / "acme.yaml"
    path.write_text(
        HEAD + "company:\n  name: ACME\n  custom_address: jobs@acme.example\n  smtp:\n"
        "    host: smtp.acme.example\n    port: 587\n    encryption: starttls\n"
        "    account: jobs@acme.example\n    password_file: /dev/zero\n"
    )
    out, err = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    code = main(["audit", str(path), "--only", "config"], out=out, err=err)
    assert time.perf_counter() - started < 5
    assert code == 2
    assert (
        "the first line of /dev/zero is longer than 65,536 bytes, the limit for a password "
        "(set MAILDIAG_MAX_PASSWORD_BYTES to raise it)"
    ) in err.getvalue()
    assert "Traceback" not in err.getvalue() + out.getvalue()


def test_a_bug_is_one_line_and_a_log_file_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure inside maildiag cannot be produced by any input on purpose: it is simulated
    by making one command's function raise (a mock, for a failure loopback cannot produce)."""
    from diagnostics import cli
    from diagnostics.secrets import Secret

    secret = Secret("crash-secret-9931", source="test")

    def broken(*_: object) -> int:
        raise RuntimeError(f"unexpected state near {secret.reveal()}")

    monkeypatch.setattr(cli, "_headers", broken)
    (tmp_path / "m.eml").write_text("Subject: x\n\nbody\n")
    out, err = io.StringIO(), io.StringIO()
    assert main(["headers", str(tmp_path / "m.eml")], out=out, err=err) == 3
    (line,) = err.getvalue().splitlines()
    assert line.startswith(
        "maildiag: internal error (a bug in maildiag, not in your setup): RuntimeError; "
        "the details are in "
    )
    log = Path(line.rsplit(" ", 1)[1])
    try:
        text = log.read_text()
        assert "Traceback" in text and "RuntimeError: unexpected state near" in text
        assert "crash-secret-9931" not in text
        assert log.stat().st_mode & 0o077 == 0
    finally:
        log.unlink()
    assert "Traceback" not in err.getvalue() + out.getvalue()
    with pytest.raises(RuntimeError):
        main(["-v", "headers", str(tmp_path / "m.eml")], out=out, err=err)


def test_input_nested_too_deeply_is_a_usage_error_not_a_traceback(tmp_path: Path) -> None:
    parts = ['Content-Type: multipart/mixed; boundary="b0"\n\n']
    for level in range(1, 1200):
        parts.append(f'--b{level - 1}\nContent-Type: multipart/mixed; boundary="b{level}"\n\n')
    path = tmp_path / "deep.eml"
    path.write_text("Subject: deep\nMIME-Version: 1.0\n" + "".join(parts))
    out, err = io.StringIO(), io.StringIO()
    assert main(["headers", str(path)], out=out, err=err) == 2
    assert err.getvalue() == (
        "maildiag: the input is nested too deeply to read (MIME parts or structures inside "
        "each other, hundreds of levels)\n"
    )


def test_a_header_field_of_megabytes_is_cut_before_the_header_parser_sees_it(
    tmp_path: Path,
) -> None:
    """The stdlib's header parser is quadratic in a field's length: 5 MB of encoded words in
    a Subject took minutes and gigabytes. Each field is cut to 64 KiB first."""
    from diagnostics.parse.headers.message import MAX_FIELD, header_text, parse_message

    words = " ".join(["=?utf-8?q?abc=C3=A4?="] * 250_000)
    data = f"Subject: {words}\r\nFrom: a@example.org\r\n\r\nbody\r\n".encode()
    message = parse_message(data)
    subject = header_text(message, "Subject") or ""
    assert subject.startswith("abcäabcä") and 0 < len(subject.encode()) < MAX_FIELD
    assert str(message["From"]) == "a@example.org"
    assert message.get_payload() == "body\r\n"
    path = tmp_path / "big.eml"
    path.write_bytes(data)
    out, err = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    assert main(["headers", str(path), "--json"], out=out, err=err) in (0, 1)
    assert time.perf_counter() - started < 20  # a bound against hanging, not a benchmark
    assert err.getvalue() == ""


def test_a_message_larger_than_its_limit_is_refused_with_the_variable_to_raise_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "m.eml"
    path.write_text("Subject: x\n\n" + "body line\n" * 200)
    monkeypatch.setenv("MAILDIAG_MAX_MESSAGE_BYTES", "1000")
    out, err = io.StringIO(), io.StringIO()
    assert main(["headers", str(path)], out=out, err=err) == 2
    assert err.getvalue() == (
        f"maildiag: {path} is larger than 1,000 bytes, the limit for a message file "
        "(set MAILDIAG_MAX_MESSAGE_BYTES to raise it)\n"
    )


def test_the_sandbox_reads_a_hostile_account_file_within_the_same_bounds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sandbox looks for the file's password references before the audit loads it: that
    # read is bounded too, so a bomb reaches load_config, which names the bound.
    from diagnostics.sandbox import account

    path = tmp_path / "bomb.yaml"
    path.write_text(HEAD + laughs() + "company: {name: ACME, smtp: {password: *a9}}\n")
    expanded: list[str] = []
    monkeypatch.setattr(yaml, "safe_load", lambda text: expanded.append(text))
    assert account._password_references(path) == []
    assert expanded == []  # never handed to an unbounded loader
    world = account.load_account_world("healthy", path)
    assert world.name == "healthy"  # the scenario's own world; the audit reports the file
    assert problem_of(path)[1] == "YAML within maildiag's bounds"
