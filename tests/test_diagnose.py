"""``maildiag diagnose``: the labelled bounce corpus, the DSN reader, rule precedence, who acts,
and the command line called as a function."""

from __future__ import annotations

import io
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

import diagnostics
from diagnostics.cli import main
from diagnostics.datafiles import load_data_file
from diagnostics.diagnose import (
    Failure,
    RuleTable,
    RuleTableError,
    Specificity,
    WhoActs,
    classify_failure,
    diagnose,
    extract_failure,
    load_rules,
    looks_like_message,
    parse_bounce_message,
    parse_rules,
)
from diagnostics.findings import Cause
from diagnostics.sandbox.relay import QueuedMessage, delivery_status_notification

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "bounces"
LABELS: dict[str, str] = yaml.safe_load((CORPUS / "labels.yaml").read_text("utf-8"))


# -- the corpus ---------------------------------------------------------------------------------


def accuracy_table(results: list[tuple[str, str, str]]) -> str:
    """Per expected cause: samples, correct, accuracy; then the misses."""
    total: Counter[str] = Counter()
    right: Counter[str] = Counter()
    for _, expected, got in results:
        total[expected] += 1
        right[expected] += expected == got
    lines = [f"{'cause':20} {'samples':>7} {'correct':>7} {'accuracy':>8}"]
    for cause in Cause:
        n = total[cause.value]
        share = f"{right[cause.value] / n:.0%}" if n else "-"
        lines.append(f"{cause.value:20} {n:7d} {right[cause.value]:7d} {share:>8}")
    correct = sum(right.values())
    lines.append(f"{'overall':20} {len(results):7d} {correct:7d} {correct / len(results):8.1%}")
    lines += [
        f"miss: {name}: expected {exp}, got {got}" for name, exp, got in results if exp != got
    ]
    return "\n".join(lines)


def test_the_corpus_is_labelled_completely() -> None:
    files = {p.name for p in CORPUS.iterdir() if p.suffix in (".txt", ".eml")}
    assert files == set(LABELS)
    assert len(files) >= 60
    assert {Cause(cause) for cause in LABELS.values()} == set(Cause)


def test_the_corpus_is_classified_with_at_least_95_percent_accuracy() -> None:
    results = [
        (name, expected, diagnose((CORPUS / name).read_bytes()).cause.value)
        for name, expected in sorted(LABELS.items())
    ]
    table = accuracy_table(results)
    print(table)
    correct = sum(expected == got for _, expected, got in results)
    assert correct / len(results) >= 0.95, table
    covered = {expected for _, expected, _ in results}
    assert covered == {c.value for c in Cause}, table


def test_every_rule_decides_at_least_one_sample() -> None:
    decided = {diagnose((CORPUS / name).read_bytes()).rule for name in LABELS}
    assert [rule.id for rule in load_rules().rules if rule.id not in decided] == []


@pytest.mark.parametrize("name", sorted(n for n in LABELS if n.endswith(".eml")))
def test_every_bounce_is_read_as_a_message(name: str) -> None:
    assert looks_like_message((CORPUS / name).read_bytes())


@pytest.mark.parametrize("name", sorted(n for n in LABELS if n.endswith(".txt")))
def test_no_text_sample_is_read_as_a_message(name: str) -> None:
    assert not looks_like_message((CORPUS / name).read_bytes())


# -- the DSN reader -----------------------------------------------------------------------------


def test_a_postfix_dsn_gives_its_fields_exactly() -> None:
    bounce = parse_bounce_message((CORPUS / "postfix-dsn-user-unknown.eml").read_bytes())
    assert bounce.reporting_mta == "mail.acme.example"
    assert bounce.subject == "Undelivered Mail Returned to Sender"
    assert len(bounce.recipients) == 1
    recipient = bounce.failed
    assert recipient is not None
    assert recipient.final_recipient == "max.mustermann@candidates.example"
    assert recipient.action == "failed"
    assert recipient.status == "5.1.1"
    assert recipient.remote_mta == "mx.candidates.example"
    assert recipient.diagnostic_code == (
        "550 5.1.1 <max.mustermann@candidates.example>: Recipient address rejected: "
        "User unknown in virtual mailbox table"
    )
    assert bounce.text.startswith("This is the mail system at host mail.acme.example.")
    # The returned original's headers are not part of the bounce's own words.
    assert "Authentication-Results" not in bounce.text


def test_the_diagnosis_of_a_dsn_carries_its_fields_as_evidence() -> None:
    diagnosis = diagnose((CORPUS / "m365-ndr-external-forwarding.eml").read_bytes())
    assert diagnosis.cause is Cause.FORWARDING_BLOCKED
    assert dict(diagnosis.evidence) == {
        "reply_code": "550",
        "enhanced_status": "5.7.520",
        "final_recipient": "max.mustermann@candidates.example",
        "action": "failed",
        "status": "5.7.520",
        "diagnostic_code": (
            "550 5.7.520 Access denied, Your organization does not allow external forwarding. "
            "Please contact your administrator for further assistance. AS(7555)"
        ),
        "reporting_mta": "AM9PR04MB1234.eurprd04.prod.outlook.com",
        "specificity": "enhanced",
    }


def test_an_encoded_subject_is_decoded() -> None:
    data = (
        b"From: MAILER-DAEMON@mail.acme.example\r\nTo: jobs@acme.example\r\n"
        b"Subject: =?utf-8?q?Unzustellbar=3A_Ihre_Bewerbung?=\r\n\r\n"
        b"550 5.1.1 User unknown\r\n"
    )
    bounce = parse_bounce_message(data)
    assert bounce.subject == "Unzustellbar: Ihre Bewerbung"
    assert diagnose(data).cause is Cause.RECIPIENT_UNKNOWN


def test_a_free_text_exim_bounce_stops_before_the_returned_message() -> None:
    bounce = parse_bounce_message((CORPUS / "exim-rcpt-user-unknown.eml").read_bytes())
    assert bounce.recipients == ()
    assert "SMTP error from remote mail server after RCPT TO" in bounce.text
    assert "Dear Max" not in bounce.text


def test_the_sandbox_bounce_is_diagnosed_from_its_dsn() -> None:
    entry = QueuedMessage(
        key="k1",
        mail_from="jobs@acme.example",
        rcpt_tos=("max.mustermann@candidates.example",),
        data=b"From: jobs@acme.example\r\nSubject: Hello\r\n\r\nHi\r\n",
    )
    reply = "550 5.7.520 Access denied, Your organization does not allow external forwarding."
    data = delivery_status_notification(
        "relay.acme.example", entry, ("max.mustermann@candidates.example",), reply
    )
    diagnosis = diagnose(data)
    assert diagnosis.cause is Cause.FORWARDING_BLOCKED
    assert diagnosis.evidence["reporting_mta"] == "relay.acme.example"
    assert diagnosis.evidence["final_recipient"] == "max.mustermann@candidates.example"
    assert diagnosis.evidence["diagnostic_code"] == reply


def test_a_generic_status_defers_to_the_enhanced_code_in_the_diagnostic() -> None:
    entry = QueuedMessage(
        "k2", "jobs@acme.example", ("a@candidates.example",), b"Subject: x\r\n\r\n"
    )
    data = delivery_status_notification(
        "relay.acme.example", entry, ("a@candidates.example",), "550 Mailbox full 5.2.2"
    )
    diagnosis = diagnose(data)
    assert diagnosis.evidence["status"] == "5.0.0"
    assert diagnosis.evidence["enhanced_status"] == "5.2.2"
    assert diagnosis.cause is Cause.MAILBOX_FULL


# -- extraction and rule precedence ---------------------------------------------------------------


def test_the_first_failing_reply_of_a_transcript_is_the_cause() -> None:
    failure = extract_failure(
        "S: 250 2.1.0 Ok\nS: 530 5.7.0 Must issue a STARTTLS command first\nS: 221 2.0.0 Bye\n"
    )
    assert (failure.code, failure.enhanced) == ("530", "5.7.0")
    assert failure.text.startswith("S: 530")


def test_a_python_exception_tuple_gives_code_and_enhanced_status() -> None:
    failure = extract_failure("SMTPAuthenticationError: (535, b'5.7.8 Username and Password')")
    assert (failure.code, failure.enhanced) == ("535", "5.7.8")


def test_an_ip_address_is_not_an_enhanced_status_code() -> None:
    assert extract_failure("connect to 192.0.2.1 failed: 198.51.100.7").enhanced is None


def test_an_enhanced_code_beats_wording() -> None:
    # 5.1.1 says "no such user" even where the wording talks of relaying.
    diagnosis = diagnose("550 5.1.1 Relay access denied")
    assert diagnosis.cause is Cause.RECIPIENT_UNKNOWN
    assert diagnosis.evidence["specificity"] == "enhanced"


def test_enhanced_code_and_wording_beat_the_enhanced_code_alone() -> None:
    diagnosis = diagnose("530 5.7.0 Must issue a STARTTLS command first")
    assert diagnosis.cause is Cause.STARTTLS_REQUIRED
    assert diagnosis.evidence["specificity"] == "enhanced_text"


def test_wording_beats_a_generic_enhanced_code_which_beats_the_reply_code() -> None:
    assert diagnose("554 5.7.1 Relay access denied").cause is Cause.RELAY_DENIED
    generic = diagnose("554 5.7.1 Rejected")
    assert generic.cause is Cause.POLICY_REJECTED
    assert generic.evidence["specificity"] == "generic_enhanced"


def test_wording_beats_the_reply_code_class() -> None:
    assert diagnose("552 Message size exceeds maximum permitted").cause is Cause.MESSAGE_TOO_LARGE
    by_code = diagnose("552 Requested action aborted")
    assert by_code.cause is Cause.MAILBOX_FULL
    assert by_code.evidence["specificity"] == "code"
    assert diagnose("450 Requested action not taken").cause is Cause.TEMPORARY_FAILURE


def test_nothing_recognised_is_unknown_with_no_confidence() -> None:
    diagnosis = diagnose("554 Transaction failed")
    assert diagnosis.cause is Cause.UNKNOWN
    assert diagnosis.confidence == 0.0
    assert diagnosis.rule is None
    assert diagnosis.evidence["reply_code"] == "554"


def test_the_first_rule_wins_a_tie() -> None:
    table = parse_rules(
        {
            "causes": {
                c.value: {"explanation": "e", "remediation": "r", "who_acts": "it"} for c in Cause
            },
            "rules": [
                {"id": "a", "text": "blocked", "cause": "policy_rejected", "confidence": 0.5},
                {"id": "b", "text": "blocked", "cause": "relay_denied", "confidence": 0.9},
            ],
        }
    )
    diagnosis = classify_failure(Failure(text="blocked"), table)
    assert diagnosis.rule == "a"
    assert diagnosis.evidence["matched"] == "blocked"


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        ("ConnectionRefusedError: [Errno 111] Connection refused", Cause.CONNECTION_REFUSED),
        ("TimeoutError: timed out", Cause.CONNECTION_TIMEOUT),
        ("socket.gaierror: [Errno -2] Name or service not known", Cause.DNS_FAILURE),
        ("socket.gaierror: [Errno 11001] getaddrinfo failed", Cause.DNS_FAILURE),
        (
            "SMTPAuthenticationError: (535, b'5.7.8 Error: authentication failed')",
            Cause.AUTH_FAILED,
        ),
        ("SMTPNotSupportedError: STARTTLS extension not supported by server.", Cause.TLS_MISMATCH),
        ("ssl.SSLError: [SSL: WRONG_VERSION_NUMBER] wrong version number", Cause.TLS_MISMATCH),
        ("ssl.SSLCertVerificationError: [SSL: CERTIFICATE_VERIFY_FAILED]", Cause.TLS_CERTIFICATE),
    ],
)
def test_python_exception_texts(text: str, cause: Cause) -> None:
    assert diagnose(text).cause is cause


# -- the rule table -----------------------------------------------------------------------------


def test_every_cause_has_advice_and_every_rule_a_valid_confidence() -> None:
    table = load_rules()
    assert set(table.advice) == set(Cause)
    assert all(0.0 < rule.confidence <= 1.0 for rule in table.rules)
    assert {rule.cause for rule in table.rules} == set(Cause) - {Cause.UNKNOWN}


def test_a_rule_without_patterns_is_refused() -> None:
    data: dict[str, Any] = {
        "causes": {
            c.value: {"explanation": "e", "remediation": "r", "who_acts": "it"} for c in Cause
        },
        "rules": [{"id": "empty", "cause": "unknown", "confidence": 0.1}],
    }
    with pytest.raises(RuleTableError, match="empty"):
        parse_rules(data)


def test_the_packaged_table_passes_the_checks_its_quick_load_leaves_out() -> None:
    # load_rules() does not compile each pattern whole; the table must pass the full check.
    table = parse_rules(load_data_file("diagnosis_rules.yaml"), checked=True)
    assert [r.id for r in table.rules] == [r.id for r in load_rules().rules]


def test_the_compiled_rule_table_is_current() -> None:
    from diagnostics.diagnose.rules import COMPILED_NAME, compile_rules

    shipped = json.loads(
        (Path(diagnostics.__file__).parent / "data" / COMPILED_NAME).read_text("utf-8")
    )
    assert shipped == compile_rules(), (
        "diagnosis_rules.yaml changed: run python -m diagnostics.diagnose.compile_rules"
    )


def test_the_compiled_table_gives_the_same_rules_and_a_stale_one_is_ignored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from diagnostics.diagnose import patterns
    from diagnostics.diagnose import rules as module

    def searched_by(table: RuleTable) -> list[Any]:
        return [
            (r.id, *(p and (p.source, p.parts, p.words) for p in (r._text, r._decisive)))
            for r in table.rules
        ]

    # From the compiled file: its data and analyses, nothing parsed for words.
    monkeypatch.setattr(patterns, "_ANALYSES", {})
    data = module._compiled_data()
    assert data == load_data_file("diagnosis_rules.yaml")
    compiled = parse_rules(data, checked=False)
    # From the YAML file, every pattern parsed for its words afresh.
    monkeypatch.setattr(patterns, "_ANALYSES", {})
    assert searched_by(compiled) == searched_by(parse_rules(data, checked=True))
    # A compiled file made from another version of the YAML file is not used.
    monkeypatch.setattr(module, "_source_text", lambda: "rules: []\n")
    assert module._compiled_data() is None


@pytest.mark.parametrize(
    ("pattern", "checked"),
    [
        ("unbalanced (group", False),  # refused by the parse for words alone
        ("(?P<n>full)|(?P<n>quota)", True),  # each alternative parses; the whole does not
    ],
)
def test_a_malformed_pattern_is_refused_naming_its_rule(pattern: str, checked: bool) -> None:
    data: dict[str, Any] = {
        "causes": {
            c.value: {"explanation": "e", "remediation": "r", "who_acts": "it"} for c in Cause
        },
        "rules": [{"id": "broken", "cause": "mailbox_full", "confidence": 0.5, "text": pattern}],
    }
    with pytest.raises(RuleTableError, match="diagnosis rule broken: "):
        parse_rules(data, checked=checked)
    if not checked:
        return
    # Unchecked, the alternatives each parse; the first wording holding both words compiles
    # only the alternative it needs.
    assert parse_rules(data, checked=False).rules[0].text == pattern


def test_a_specificity_order_matches_the_contract() -> None:
    assert (
        Specificity.ENHANCED_TEXT
        > Specificity.ENHANCED
        > Specificity.TEXT
        > Specificity.GENERIC_ENHANCED
        > Specificity.CODE
        > Specificity.NONE
    )


@pytest.mark.parametrize(
    ("text", "who"),
    [
        (
            "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled",
            WhoActs.IT,
        ),
        ("550 5.1.1 User unknown", WhoActs.CANDIDATE),
        ("552 5.2.2 Mailbox full", WhoActs.CANDIDATE),
        ("421 4.7.28 rate limited", WhoActs.PLATFORM),
        ("552 5.3.4 Message size exceeds fixed limit", WhoActs.PLATFORM),
        ("421 4.3.2 Service shutting down", WhoActs.PLATFORM),
    ],
)
def test_who_acts(text: str, who: WhoActs) -> None:
    assert diagnose(text).who_acts is who


# -- the command line -----------------------------------------------------------------------------


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["diagnose", *argv], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_cli_json_for_a_bounce_exits_0() -> None:
    code, out, err = run(str(CORPUS / "gmail-address-not-found.eml"), "--json")
    assert (code, err) == (0, "")
    result = json.loads(out)
    assert result["cause"] == "recipient_unknown"
    assert result["who_acts"] == "candidate"
    assert result["evidence"]["status"] == "5.1.1"
    assert set(result) == {
        "cause",
        "confidence",
        "explanation",
        "remediation",
        "who_acts",
        "rule",
        "evidence",
    }


def test_cli_json_for_an_exception_text_exits_0() -> None:
    code, out, _ = run(str(CORPUS / "python-connection-refused.txt"), "--json")
    assert code == 0
    assert json.loads(out)["cause"] == "connection_refused"


def test_cli_unknown_exits_1() -> None:
    code, out, _ = run(str(CORPUS / "unknown-transaction-failed.txt"), "--json")
    assert code == 1
    assert json.loads(out)["cause"] == "unknown"


def test_cli_unreadable_file_exits_2_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-bounce.eml"
    code, out, err = run(str(missing), "--json")
    assert code == 2
    assert out == ""
    assert str(missing) in err


def test_cli_reads_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(b"550 5.7.54 SMTP; Unable to relay recipient\n"))
    monkeypatch.setattr(sys, "stdin", stdin)
    code, out, _ = run("-", "--json")
    assert code == 0
    assert json.loads(out)["cause"] == "relay_denied"


def test_cli_text_output_strips_terminal_escapes(tmp_path: Path) -> None:
    hostile = tmp_path / "hostile.txt"
    hostile.write_bytes(b"550 5.1.1 \x1b]0;pwned\x07\x1b[2J\x1b[31mUser unknown\x1b[0m\r\n")
    code, out, _ = run(str(hostile))
    assert code == 0
    assert "cause: recipient_unknown" in out
    assert "who acts: candidate" in out
    assert "\x1b" not in out
    assert "\x07" not in out
    assert "User unknown" in out


def test_cli_evidence_quotes_the_server_not_the_clients_credentials(tmp_path: Path) -> None:
    transcript = tmp_path / "auth.txt"
    transcript.write_text(
        "S: 250-AUTH PLAIN LOGIN\nC: AUTH PLAIN AGpvYnNAYWNtZS5leGFtcGxlAGh1bnRlcjI=\n"
        "S: 535 5.7.8 Error: authentication failed: authentication failure\n"
    )
    code, out, _ = run(str(transcript), "--json")
    assert code == 0
    result = json.loads(out)
    assert result["cause"] == "auth_failed"
    assert result["evidence"]["reply"] == (
        "S: 535 5.7.8 Error: authentication failed: authentication failure"
    )
    assert "AGpvYnNAYWNtZS5leGFtcGxlAGh1bnRlcjI" not in out


# -- several inputs, and confirmation against the account ----------------------------------------


def test_a_folder_gives_one_diagnosis_per_file(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text(
        "535 5.7.8 Error: authentication failed: authentication failure\n"
    )
    (tmp_path / "b.txt").write_text("554 5.7.1 <x@example.org>: Relay access denied\n")
    code, out, _ = run(str(tmp_path), "--json")
    assert code == 0
    assert [(d["input"].rsplit("/", 1)[-1], d["cause"]) for d in json.loads(out)] == [
        ("a.txt", "auth_failed"),
        ("b.txt", "relay_denied"),
    ]


def test_an_mbox_gives_one_diagnosis_per_message(tmp_path: Path) -> None:
    box = tmp_path / "bounces.mbox"
    box.write_bytes(
        b"From MAILER-DAEMON Thu Nov 26 10:00:00 2026\n"
        b"From: MAILER-DAEMON@mx.example.org\nSubject: Undelivered\n\n"
        b"<a@example.org>: host mx.example.org said: 550 5.1.1 <a@example.org>: Recipient address rejected: User unknown\n\n"
        b"From MAILER-DAEMON Thu Nov 26 10:01:00 2026\n"
        b"From: MAILER-DAEMON@mx.example.org\nSubject: Undelivered\n\n"
        b"<b@example.org>: host mx.example.org said: 552 5.2.2 <b@example.org>: Mailbox full\n"
    )
    code, out, _ = run(str(box), "--json")
    assert code == 0
    assert [(d["input"].rsplit("#", 1)[-1], d["cause"]) for d in json.loads(out)] == [
        ("1", "recipient_unknown"),
        ("2", "mailbox_full"),
    ]


def test_config_names_the_check_that_confirms_and_confirm_runs_it(tmp_path: Path) -> None:
    reply = tmp_path / "reply.txt"
    reply.write_text("535 5.7.8 Error: authentication failed: authentication failure\n")
    config = Path(__file__).resolve().parents[1] / "fixtures" / "configs" / "acme.yaml"
    code, out, _ = run(str(reply), "--config", str(config))
    assert code == 0
    assert (
        f"confirm with: maildiag audit {config} --only config.account_matches_address,smtp.auth,smtp.provider"
        in out
    )
    code, out, _ = run(
        str(reply), "--config", str(config), "--confirm", "--sandbox", "bad-password",
        "--report-dir", str(tmp_path / "report"),
    )  # fmt: skip
    assert code == 1
    assert (
        "fail  smtp.auth                          Acme GmbH: Login of jobs@acme.example refused"
        in out
    )
