"""Secrets never show themselves; redact() and RedactingFilter keep them out of text and logs."""

from __future__ import annotations

import base64
import copy
import io
import logging
import pickle
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest

from diagnostics.config import load_config
from diagnostics.redact import RedactingFilter, redact
from diagnostics.secrets import (
    MASK,
    Secret,
    env_reference_name,
    known_values,
    read_secret_file,
    resolve_env,
)

ACME = Path(__file__).resolve().parent.parent / "fixtures" / "configs" / "acme.yaml"
LOGIN = "jobs@acme.example"


def _value() -> str:
    return f"pw-{secrets.token_urlsafe(12)}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _plain(login: str, password: str) -> str:
    """The AUTH PLAIN argument (RFC 4616): base64 of NUL login NUL password."""
    return _b64(f"\0{login}\0{password}".encode())


@pytest.fixture
def value() -> str:
    return _value()


@pytest.fixture
def secret(value: str) -> Secret:
    return Secret(value, source="env:TEST_PW")


# -- the Secret type ---------------------------------------------------------------------------


def test_secret_is_masked_in_every_string_form(secret: Secret, value: str) -> None:
    renderings = {
        "str": str(secret),
        "format": format(secret),
        "format spec": format(secret, ">40"),
        "f-string": f"{secret}",
        "f-string spec": f"{secret:^30}",
        "str.format": "{}".format(secret),  # noqa: UP032 - str.format is what is tested
        "%s": "%s" % secret,  # noqa: UP031 - %-format is what is tested
    }
    assert renderings == dict.fromkeys(renderings, MASK)
    expected_repr = f"Secret({MASK}, source='env:TEST_PW')"
    assert repr(secret) == expected_repr
    assert f"{secret!r}" == expected_repr
    assert "%r" % secret == expected_repr  # noqa: UP031
    assert str([secret]) == f"[{expected_repr}]"
    assert str({"password": secret}) == f"{{'password': {expected_repr}}}"


def test_reveal_gives_the_value_and_source_is_safe(secret: Secret, value: str) -> None:
    assert secret.reveal() == value
    assert secret.source == "env:TEST_PW"
    assert value not in secret.source


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickling_is_refused(secret: Secret, protocol: int) -> None:
    with pytest.raises(TypeError, match="a Secret cannot be pickled"):
        pickle.dumps(secret, protocol=protocol)


def test_pickling_a_config_holding_a_secret_is_refused(value: str) -> None:
    config = load_config(
        ACME, environ={"ACME_SMTP_PASSWORD": value, "ACME_RETAIL_SMTP_PASSWORD": value}
    )
    with pytest.raises(TypeError, match="a Secret cannot be pickled"):
        pickle.dumps(config)


def test_copy_and_deepcopy_keep_the_same_object(secret: Secret) -> None:
    assert copy.copy(secret) is secret
    assert copy.deepcopy(secret) is secret
    holder = {"smtp": {"password": secret}}
    assert copy.deepcopy(holder)["smtp"]["password"] is secret


def test_equality_and_hash_follow_the_value(value: str) -> None:
    one, two = Secret(value, source="env:A"), Secret(value, source="file:/b")
    other = Secret(_value(), source="env:A")
    assert one == two
    assert hash(one) == hash(two)
    assert one != other
    assert one != value  # never equal to the bare string
    assert len({one, two, other}) == 2


def test_attributes_cannot_be_added(secret: Secret) -> None:
    with pytest.raises(AttributeError):
        secret.extra = 1  # type: ignore[attr-defined]


def test_known_values_hold_value_and_base64_longest_first(value: str) -> None:
    Secret(value, source="env:X")
    known = known_values()
    assert value in known
    assert _b64(value.encode()) in known
    assert [len(v) for v in known] == sorted((len(v) for v in known), reverse=True)


def test_very_short_values_are_not_registered() -> None:
    Secret("q9z", source="env:SHORT")
    assert "q9z" not in known_values()
    assert redact("q9z") == "q9z"


# -- references --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("${ACME_SMTP_PASSWORD}", "ACME_SMTP_PASSWORD"),
        ("  ${_X1}  ", "_X1"),
        ("$ACME_SMTP_PASSWORD", None),
        ("${1ABC}", None),
        ("${A-B}", None),
        ("pre${A}", None),
        ("${A}post", None),
        ("hunter2", None),
        ("", None),
    ],
)
def test_env_reference_name(text: str, name: str | None) -> None:
    assert env_reference_name(text) == name


def test_resolve_env(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    resolved = resolve_env("PW", {"PW": value})
    assert resolved is not None
    assert resolved.reveal() == value
    assert resolved.source == "env:PW"
    assert resolve_env("PW", {}) is None
    assert resolve_env("PW", {"PW": ""}) is None
    monkeypatch.setenv("MAILDIAG_TEST_PW", value)
    from_os = resolve_env("MAILDIAG_TEST_PW")
    assert from_os is not None
    assert from_os.reveal() == value


def test_read_secret_file_takes_the_first_line(tmp_path: Path, value: str) -> None:
    path = tmp_path / "pw.txt"
    path.write_text(f"{value}\r\nsecond\n", encoding="utf-8")
    secret = read_secret_file(path)
    assert secret.reveal() == value
    assert secret.source == f"file:{path}"
    path.write_text("", encoding="utf-8")
    assert read_secret_file(path).reveal() == ""
    with pytest.raises(FileNotFoundError):
        read_secret_file(tmp_path / "absent.txt")


# -- redact() ----------------------------------------------------------------------------------


def test_redact_masks_the_value_and_its_base64(secret: Secret, value: str) -> None:
    login_b64 = _b64(value.encode())
    text = f"password={value}; 334 VXNlcm5hbWU6 then {login_b64}; again {value}"
    assert redact(text) == f"password={MASK}; 334 VXNlcm5hbWU6 then {MASK}; again {MASK}"


@pytest.mark.parametrize(
    "render",
    [
        pytest.param(lambda blob: f"AUTH PLAIN {blob}", id="command"),
        pytest.param(lambda blob: f"AUTH PLAIN {blob.rstrip('=')}", id="unpadded"),
        pytest.param(lambda blob: repr(f"AUTH PLAIN {blob}\r\n".encode()), id="bytes-repr"),
        pytest.param(lambda blob: f'{{"sent": "{blob}"}}', id="json"),
        pytest.param(lambda blob: blob, id="alone"),
    ],
)
def test_redact_masks_the_auth_plain_blob(
    secret: Secret, value: str, render: Callable[[str], str]
) -> None:
    blob = _plain(LOGIN, value)
    assert _b64(value.encode()) not in blob  # why the password's own base64 is not enough
    text = render(blob)
    written = blob if blob in text else blob.rstrip("=")
    assert redact(text) == text.replace(written, MASK)


def test_redact_masks_plain_blob_with_authorization_identity(secret: Secret, value: str) -> None:
    blob = _b64(f"admin\0{LOGIN}\0{value}".encode())
    assert redact(f"AUTH PLAIN {blob}") == f"AUTH PLAIN {MASK}"


def test_redact_leaves_other_base64_and_text_alone(secret: Secret) -> None:
    other_plain = _plain(LOGIN, "x7Qz-unrelated-9vK")
    text = f"AUTH PLAIN {other_plain} /usr/local/bin/python3 SGVsbG8gd29ybGQ= 235 2.7.0 OK"
    assert redact(text) == text


def test_redact_with_several_secrets_masks_each(value: str) -> None:
    first, second = Secret(value, source="env:A"), Secret(_value(), source="env:B")
    text = f"{first.reveal()} and {second.reveal()} and {_plain(LOGIN, second.reveal())}"
    assert redact(text) == f"{MASK} and {MASK} and {MASK}"


def test_redact_masks_a_longer_secret_whole_before_a_shorter_one() -> None:
    short = f"k{secrets.token_hex(3)}"
    long = f"{short}-and-more"
    Secret(short, source="env:SHORT")
    Secret(long, source="env:LONG")
    assert redact(f"[{long}] [{short}]") == f"[{MASK}] [{MASK}]"


# -- RedactingFilter ---------------------------------------------------------------------------


def test_filter_masks_record_args(
    log: tuple[logging.Logger, io.StringIO], secret: Secret, value: str
) -> None:
    logger, stream = log
    blob = _plain(LOGIN, value)
    logger.info("sent %s, then AUTH PLAIN %s, as %s", value, blob, LOGIN)
    assert stream.getvalue() == f"INFO sent {MASK}, then AUTH PLAIN {MASK}, as {LOGIN}\n"


def test_filter_rewrites_the_record(secret: Secret, value: str) -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "pw=%s n=%d", (value, 3), None)
    assert RedactingFilter().filter(record) is True
    assert record.msg == f"pw={MASK} n=3"
    assert record.args is None
    assert record.getMessage() == f"pw={MASK} n=3"


def test_filter_masks_the_traceback(
    log: tuple[logging.Logger, io.StringIO], secret: Secret, value: str
) -> None:
    logger, stream = log
    blob = _plain(LOGIN, value)
    try:
        raise RuntimeError(f"server said no to {value} ({blob})")
    except RuntimeError:
        logger.exception("login failed for %s", LOGIN)
    output = stream.getvalue()
    assert output.startswith(f"ERROR login failed for {LOGIN}\nTraceback (most recent call last):")
    assert output.rstrip().endswith(f"RuntimeError: server said no to {MASK} ({MASK})")
    assert value not in output
    assert blob not in output


def test_filter_masks_the_stack(secret: Secret, value: str) -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "checking", (), None)
    record.stack_info = f'Stack (most recent call last):\n  login(password="{value}")'
    assert RedactingFilter().filter(record) is True
    assert record.stack_info == f'Stack (most recent call last):\n  login(password="{MASK}")'


def test_overlapping_secrets_are_masked_as_one_stretch() -> None:
    Secret("abcd-overlap-1", source="env:A")
    Secret("overlap-1-wxyz", source="env:B")
    assert redact("<<abcd-overlap-1-wxyz>>") == f"<<{MASK}>>"
    assert redact("abcd-overlap-1 and overlap-1-wxyz") == f"{MASK} and {MASK}"


def test_thousands_of_secrets_are_all_masked_and_matched_in_one_pass() -> None:
    # A batch of a thousand accounts knows thousands of passwords; each is still masked, and
    # the matcher is built once for them, not per text.
    from diagnostics import redact as module

    values = [f"batch-pw-{index:05d}-x" for index in range(3000)]
    for index, value in enumerate(values):
        Secret(value, source=f"env:P{index}")
    first = module._current()
    text = " | ".join(values[::7])
    assert redact(text) == " | ".join([MASK] * len(values[::7]))
    assert module._current() is first  # nothing new: the same matcher
    # One more value joins the automaton's values beside it, without a rebuild ...
    Secret("batch-pw-new-one", source="env:NEW")
    assert module._current() is first
    assert redact("x batch-pw-new-one y batch-pw-00007-x") == f"x {MASK} y {MASK}"
    # ... and many more make a new automaton holding them all.
    for index in range(500):
        Secret(f"batch-pw-more-{index:04d}", source=f"env:M{index}")
    rebuilt = module._current()
    assert rebuilt is not first and "batch-pw-more-0499" in rebuilt.values
    assert redact("batch-pw-more-0123|batch-pw-new-one") == f"{MASK}|{MASK}"
