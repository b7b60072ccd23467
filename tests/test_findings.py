"""Tests for findings: status gravity, verdict, exit code, and the frozen Finding."""

from __future__ import annotations

import dataclasses
import json

import pytest

from diagnostics.findings import Cause, Finding, Status, exit_code, verdict

GRAVITY = [Status.SKIP, Status.PASS, Status.WARN, Status.FAIL, Status.ERROR]


def test_status_values_in_order_of_gravity() -> None:
    assert [s.value for s in Status] == ["skip", "pass", "warn", "fail", "error"]
    assert [s.rank for s in GRAVITY] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("lower", range(len(GRAVITY)))
@pytest.mark.parametrize("higher", range(len(GRAVITY)))
def test_status_comparisons_follow_gravity(lower: int, higher: int) -> None:
    a, b = GRAVITY[lower], GRAVITY[higher]
    assert (a < b) is (lower < higher)
    assert (a <= b) is (lower <= higher)
    assert (a > b) is (lower > higher)
    assert (a >= b) is (lower >= higher)
    assert (a == b) is (lower == higher)


def test_sorted_and_max_use_gravity() -> None:
    shuffled = [Status.ERROR, Status.PASS, Status.FAIL, Status.SKIP, Status.WARN]
    assert sorted(shuffled) == GRAVITY
    assert max(shuffled) is Status.ERROR
    assert max([Status.PASS, Status.SKIP, Status.WARN]) is Status.WARN
    assert min(shuffled) is Status.SKIP


def test_status_does_not_compare_with_other_types() -> None:
    with pytest.raises(TypeError):
        _ = Status.PASS < "warn"  # type: ignore[operator]
    with pytest.raises(TypeError):
        _ = Status.FAIL >= 3  # type: ignore[operator]


@pytest.mark.parametrize(
    ("statuses", "expected_verdict", "expected_code"),
    [
        ([], Status.PASS, 0),
        ([Status.SKIP], Status.SKIP, 0),
        ([Status.PASS, Status.SKIP], Status.PASS, 0),
        ([Status.PASS, Status.WARN, Status.SKIP], Status.WARN, 0),
        ([Status.PASS, Status.FAIL, Status.WARN], Status.FAIL, 1),
        ([Status.ERROR, Status.PASS], Status.ERROR, 1),
        ([Status.FAIL, Status.ERROR, Status.WARN], Status.ERROR, 1),
    ],
)
def test_verdict_and_exit_code(
    statuses: list[Status], expected_verdict: Status, expected_code: int
) -> None:
    assert verdict(statuses) is expected_verdict
    assert exit_code(statuses) == expected_code
    # Generators are what callers pass (f.status for f in findings).
    assert verdict(s for s in statuses) is expected_verdict
    assert exit_code(s for s in statuses) == expected_code


@pytest.mark.parametrize("status", [Status.FAIL, Status.ERROR])
def test_fail_and_error_need_a_cause(status: Status) -> None:
    with pytest.raises(ValueError, match=f"a {status.value} finding of smtp.auth needs a cause"):
        Finding(check="smtp.auth", status=status, subject="Acme GmbH", title="t")
    finding = Finding(
        check="smtp.auth", status=status, subject="Acme GmbH", title="t", cause=Cause.AUTH_FAILED
    )
    assert finding.cause is Cause.AUTH_FAILED


@pytest.mark.parametrize("status", [Status.SKIP, Status.PASS, Status.WARN])
def test_other_statuses_need_no_cause(status: Status) -> None:
    assert Finding(check="dns.mx", status=status, subject="Acme GmbH", title="t").cause is None


def make_finding() -> Finding:
    return Finding(
        check="smtp.tls",
        status=Status.FAIL,
        subject="Acme Retail GmbH",
        title="Certificate expired",
        detail="The certificate of smtp.acme.example expired 3 days ago.",
        evidence={
            "host": "smtp.acme.example",
            "port": 465,
            "chain": [{"subject": "CN=smtp.acme.example", "days_left": -3}],
            "versions": ("TLSv1.2", "TLSv1.3"),
            "cause_hint": Cause.TLS_CERTIFICATE,
            "verified": False,
            "rtt": 1.5,
            "none": None,
        },
        cause=Cause.TLS_CERTIFICATE,
        remediation="Renew the certificate.",
        duration_ms=12.34567,
    )


def test_finding_is_frozen() -> None:
    finding = make_finding()
    with pytest.raises(dataclasses.FrozenInstanceError):
        finding.status = Status.PASS  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        finding.evidence = {}  # type: ignore[misc]
    assert finding.status is Status.FAIL


def test_evidence_is_deeply_immutable() -> None:
    source = {"chain": [{"subject": "CN=a"}], "answers": {"mx": ["10 mx.acme.example."]}}
    finding = Finding(
        check="dns.mx", status=Status.PASS, subject="Acme GmbH", title="t", evidence=source
    )
    evidence = finding.evidence
    with pytest.raises(TypeError):
        evidence["new"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        evidence["answers"]["mx"] = []
    with pytest.raises(TypeError):
        evidence["chain"][0]["subject"] = "CN=b"
    with pytest.raises(AttributeError):
        evidence["chain"].append({})
    assert evidence["chain"] == ({"subject": "CN=a"},)
    # Mutating what the caller passed in does not reach the finding.
    source["chain"][0]["subject"] = "CN=changed"  # type: ignore[index]
    source["answers"]["mx"].append("20 mx2.acme.example.")  # type: ignore[attr-defined]
    assert evidence["chain"][0]["subject"] == "CN=a"
    assert evidence["answers"]["mx"] == ("10 mx.acme.example.",)


def test_to_dict_exact_shape_and_json() -> None:
    expected = {
        "check": "smtp.tls",
        "status": "fail",
        "subject": "Acme Retail GmbH",
        "title": "Certificate expired",
        "detail": "The certificate of smtp.acme.example expired 3 days ago.",
        "evidence": {
            "host": "smtp.acme.example",
            "port": 465,
            "chain": [{"subject": "CN=smtp.acme.example", "days_left": -3}],
            "versions": ["TLSv1.2", "TLSv1.3"],
            "cause_hint": "tls_certificate",
            "verified": False,
            "rtt": 1.5,
            "none": None,
        },
        "cause": "tls_certificate",
        "remediation": "Renew the certificate.",
        "duration_ms": 12.346,
    }
    data = make_finding().to_dict()
    assert data == expected
    assert list(data) == list(expected)
    assert json.loads(json.dumps(data)) == expected


def test_to_dict_defaults() -> None:
    finding = Finding(check="dns.mx", status=Status.SKIP, subject="Acme Labs GmbH", title="t")
    assert finding.to_dict() == {
        "check": "dns.mx",
        "status": "skip",
        "subject": "Acme Labs GmbH",
        "title": "t",
        "detail": "",
        "evidence": {},
        "cause": None,
        "remediation": "",
        "duration_ms": 0.0,
    }


def test_with_duration_returns_a_copy() -> None:
    finding = make_finding()
    timed = finding.with_duration(250.5)
    assert timed.duration_ms == 250.5
    assert finding.duration_ms == 12.34567
    assert timed is not finding
    assert timed == dataclasses.replace(finding, duration_ms=250.5)
    assert {k: v for k, v in timed.to_dict().items() if k != "duration_ms"} == {
        k: v for k, v in finding.to_dict().items() if k != "duration_ms"
    }


# Causes added since SPEC section 9 by the issues that asked for them.
ADDED_CAUSES = {
    # Issue 12: DNS does not work on the machine running the audit, not the account's DNS.
    "local_resolver": "dns_failure",
}


def test_causes_are_exactly_those_of_the_contract() -> None:
    # SPEC section 9, in its order; each added cause right after the one it refines.
    values = [c.value for c in Cause]
    for added, after in ADDED_CAUSES.items():
        assert values.index(added) == values.index(after) + 1
    assert [v for v in values if v not in ADDED_CAUSES] == [
        "dns_failure",
        "connection_refused",
        "connection_timeout",
        "tls_mismatch",
        "tls_certificate",
        "starttls_required",
        "auth_failed",
        "auth_disabled",
        "auth_mechanism",
        "sender_not_owned",
        "relay_denied",
        "client_ip_rejected",
        "recipient_unknown",
        "mailbox_full",
        "message_too_large",
        "rate_limited",
        "policy_rejected",
        "forwarding_blocked",
        "temporary_failure",
        "loop_detected",
        "unknown",
    ]
    assert all(c.name == c.value.upper() for c in Cause)
