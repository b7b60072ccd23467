"""The diagnosis engine: what failed, read from a reply, an exception text, a transcript or a
bounce, and matched against the rule table.

:func:`extract_failure` finds the failing reply (its code, enhanced status code and text);
:func:`classify_failure` applies the rules, most specific match first (enhanced code and
wording, enhanced code, wording, a generic enhanced code such as 5.7.1, reply code), except that
wording a rule calls decisive overrules any code;
:func:`diagnose` does both for raw input.

The most specific statement about the recipient decides. In a bounce, the remote server's
reply (Diagnostic-Code, else the reply quoted in the human-readable report) gives the codes;
the DSN Status, which the reporting MTA may have derived, stands in only when no reply carries
an enhanced code, and then counts as generic: the reply's wording beats it. An enhanced code
that a login cause is known by (5.7.8, 5.7.9 ...) means that only in the answer to AUTH: in a
reply refusing a recipient or a message it counts as generic too. A rule matching the reply
code alone does not decide when the enhanced code next to it speaks of another subject (552
means "mailbox full" only when no 5.7.0 says "refused by policy").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from diagnostics.diagnose.dsn import Bounce, looks_like_message, parse_bounce_message
from diagnostics.diagnose.patterns import fold_case
from diagnostics.diagnose.rawtext import without_header_blocks
from diagnostics.diagnose.rules import (
    Rule,
    RuleTable,
    Specificity,
    WhoActs,
    load_rules,
)
from diagnostics.findings import Cause

_ENHANCED = re.compile(r"(?<![\d.])([245]\.\d{1,3}\.\d{1,3})(?!\.?\d)")
# A failing reply: at the start of a transcript line (optionally marked as the server's), after
# the words servers and clients quote it with, or as the first item of a Python exception tuple.
# Each is searched case-sensitively in :func:`fold_case` of the text, so it is written in lower
# case: ignoring case makes a search several times slower (fold_case keeps every character at
# its place, so positions are the text's).
_REPLY_PATTERNS = (
    re.compile(
        r"^[ \t]*(?:(?:s:|<<<|<-|\[s\]|server:|<)[ \t]*)?([45]\d\d)(?:[ -]|$)", re.MULTILINE
    ),
    re.compile(
        r"(?:said:|reason:|returned|replied:?|reply:|response:|error:|smtp;)[ \t]*['\"]?#?([45]\d\d)[ -]"
    ),
    re.compile(r"\(([45]\d\d),[ \t]*b?['\"]"),
    re.compile(r"(?<![\d.])([45]\d\d)[ -](?=[45]\.\d{1,3}\.\d{1,3})"),
    # Exim: "SMTP error from remote mail server after RCPT TO:<a@b.example>:" and the reply,
    # on the next line or after "host mx.b.example [192.0.2.1]:" on the same one.
    re.compile(
        r"smtp error from remote (?:mail server|mailer) after [^\n]*?:[ \t]*(?:\r?\n[ \t]*)?"
        r"(?:host [^\n]*?\]:[ \t]*)?([45]\d\d)(?:[ -]|$)",
        re.MULTILINE,
    ),
)
# The SMTP stage a reply answered, where an MTA names it (Exim "after RCPT TO:", Postfix "in
# reply to end of DATA command"), and the reply codes RFC 4954 gives the answer to AUTH; in
# lower case, for the folded text.
_AUTH_STAGE = re.compile(r"after auth\b|in reply to auth command|sasl authentication failed")
_OTHER_STAGE = re.compile(
    r"after (?:rcpt to|mail from|end of data|data|initial connection|ehlo|helo)\b"
    r"|in reply to (?:rcpt to|mail from|end of data|data|ehlo|helo) command"
)
_AUTH_REPLY_CODES = frozenset(
    {"432", "454", "500", "501", "502", "503", "504", "530", "534", "535", "538"}
)
# Causes that only an answer to AUTH can report.
_LOGIN_CAUSES = frozenset({Cause.AUTH_FAILED, Cause.AUTH_MECHANISM, Cause.AUTH_DISABLED})
# Match levels at which the enhanced code itself says the cause.
_BY_CODE = frozenset(
    {Specificity.GENERIC_ENHANCED, Specificity.ENHANCED, Specificity.ENHANCED_TEXT}
)
_GENERIC_STATUS = re.compile(r"^[245]\.0\.0$")
# Bounces wrap long replies over indented lines ("Client host\n    rejected"): wording is
# matched with every run of white space read as one space.
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Failure:
    """The failing reply found in an input: what the rules are matched against."""

    text: str
    code: str | None = None
    enhanced: str | None = None
    bounce: Bounce | None = None
    # The enhanced code is a bounce's Status field, which the remote reply in its Diagnostic-Code
    # does not carry (the reporting MTA derived it).
    status_only: bool = False
    # Whether the reply answered AUTH: True, False, or None when the input does not say.
    answers_auth: bool | None = None


@dataclass(frozen=True)
class Diagnosis:
    """The cause of a failure, how sure the rules are, and what to do about it."""

    cause: Cause
    confidence: float
    explanation: str
    remediation: str
    who_acts: WhoActs
    rule: str | None = None
    evidence: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "evidence", MappingProxyType(dict(self.evidence)))

    def to_dict(self) -> dict[str, Any]:
        """The diagnosis as JSON-ready data."""
        return {
            "cause": self.cause.value,
            "confidence": self.confidence,
            "explanation": self.explanation,
            "remediation": self.remediation,
            "who_acts": self.who_acts.value,
            "rule": self.rule,
            "evidence": dict(self.evidence),
        }


def _first_reply(text: str, folded: str) -> tuple[int, str, str | None] | None:
    """(position, reply code, enhanced code next to it) of the earliest failing reply;
    ``folded`` is :func:`fold_case` of ``text``."""
    found = [m for pattern in _REPLY_PATTERNS if (m := pattern.search(folded)) is not None]
    if not found:
        return None
    first = min(found, key=lambda m: m.start(1))
    after = text[first.end(1) : first.end(1) + 12].lstrip(" -'\"")
    enhanced = _ENHANCED.match(after)
    return first.start(1), first.group(1), enhanced.group(1) if enhanced else None


def extract_failure(text: str, *, without_headers: bool = False) -> Failure:
    """The failing reply in an SMTP reply, exception text or transcript.

    In a transcript the first failing reply is the cause: what follows (QUIT, the client's
    own summary) is consequence. Its wording runs from there to the end of the input. Header
    blocks in the text (a bounce pasted with its headers, a returned message) are not read;
    ``without_headers`` says the caller has taken them out already.
    """
    if not without_headers:
        text = without_header_blocks(text)
    folded = fold_case(text)
    reply = _first_reply(text, folded)
    if reply is None:
        enhanced = next(
            (e for e in _ENHANCED.findall(text) if e[0] in "45"),
            None,
        )
        return Failure(text=text, enhanced=enhanced, answers_auth=_answers_auth(folded, None))
    position, code, enhanced = reply
    line_start = text.rfind("\n", 0, position) + 1
    wording = text[line_start:]
    if enhanced is None:
        enhanced = next((e for e in _ENHANCED.findall(wording) if e[0] in "45"), None)
    return Failure(
        text=wording, code=code, enhanced=enhanced, answers_auth=_answers_auth(folded, code)
    )


def _answers_auth(folded: str, code: str | None, *, bounce: bool = False) -> bool | None:
    """Whether the failing reply answered AUTH, where the input (``folded``, through
    :func:`fold_case`) or the reply code says."""
    if _AUTH_STAGE.search(folded):
        return True
    if bounce or _OTHER_STAGE.search(folded):
        return False
    if code is not None:
        return code in _AUTH_REPLY_CODES
    return None


def extract_bounce_failure(bounce: Bounce) -> Failure:
    """The failure a bounce reports: the remote reply for the failed recipient (its DSN
    Diagnostic-Code, else the reply in the human-readable report), then its DSN Status.

    The words matched are the Diagnostic-Code and the human-readable report, never a header
    (the bounce's subject often repeats the returned message's).
    """
    recipient = bounce.failed
    from_text = extract_failure(bounce.text, without_headers=True)  # parse_bounce_message did
    answers_auth = _answers_auth(fold_case(bounce.text), None, bounce=True)
    if recipient is None:
        return Failure(
            text=f"{from_text.text}\n{bounce.text}",
            code=from_text.code,
            enhanced=from_text.enhanced,
            bounce=bounce,
            answers_auth=answers_auth,
        )
    diagnostic = extract_failure(recipient.diagnostic_code or "")
    status = recipient.status
    replied = diagnostic.enhanced or (from_text.enhanced if from_text.code else None)
    # Status 5.0.0 is what an MTA writes when it knows no better; any code in the text may.
    enhanced = replied or status
    if enhanced is None or _GENERIC_STATUS.match(enhanced):
        enhanced = from_text.enhanced or enhanced
    return Failure(
        text=f"{recipient.diagnostic_code or ''}\n{bounce.text}",
        code=diagnostic.code or from_text.code,
        enhanced=enhanced,
        bounce=bounce,
        status_only=diagnostic.code is not None and replied is None and enhanced == status,
        answers_auth=answers_auth,
    )


def classify_failure(failure: Failure, rules: RuleTable | None = None) -> Diagnosis:
    """The diagnosis of ``failure``: the most specific matching rule, first in the table on a tie."""
    table = rules or load_rules()
    best = Specificity.NONE
    chosen = None
    phrase: str | None = None
    wording = _WHITESPACE.sub(" ", failure.text)
    folded = fold_case(wording)
    present = table.words_in_folded(folded)
    subjects = table.subjects
    agreeing: dict[Cause, tuple[Specificity, Rule, str | None]] = {}
    for rule in table.candidates(failure.code, failure.enhanced, present):
        if rule.ceiling <= best and not rule.enhanced:
            # It can neither win nor be an enhanced code agreeing with decisive wording.
            continue
        level, matched = rule.match(
            failure.code,
            failure.enhanced,
            wording,
            generic=table.generic,
            present=present,
            folded=folded,
        )
        level = _weighed(rule, level, failure, subjects)
        if level > best:
            best, chosen, phrase = level, rule, matched
        if level in _BY_CODE and (rule.cause not in agreeing or level > agreeing[rule.cause][0]):
            agreeing[rule.cause] = (level, rule, matched)
    if chosen is not None and best is Specificity.DECISIVE and chosen.cause in agreeing:
        # Decisive wording is there to overrule a code that says otherwise; where the enhanced
        # code agrees, its rule reports, with its own explanation.
        best, chosen, phrase = agreeing[chosen.cause]
    evidence = _evidence(failure)
    if chosen is None:
        advice = table.advice[Cause.UNKNOWN]
        return Diagnosis(
            cause=Cause.UNKNOWN,
            confidence=0.0,
            explanation=advice.explanation,
            remediation=advice.remediation,
            who_acts=advice.who_acts,
            evidence=evidence,
        )
    if phrase:
        evidence["matched"] = phrase
    evidence["specificity"] = best.name.lower()
    return Diagnosis(
        cause=chosen.cause,
        confidence=chosen.confidence,
        explanation=chosen.explanation,
        remediation=chosen.remediation,
        who_acts=chosen.who_acts,
        rule=chosen.id,
        evidence=evidence,
    )


def _subject(enhanced: str) -> str:
    """The subject of an enhanced status code (RFC 3463): 5.7.1 -> 7."""
    return enhanced.split(".")[1]


def _weighed(
    rule: Rule, level: Specificity, failure: Failure, subjects: Mapping[Cause, frozenset[str]]
) -> Specificity:
    """``level`` lowered where a less specific signal would otherwise decide."""
    if level is Specificity.ENHANCED and (
        failure.status_only or (rule.cause in _LOGIN_CAUSES and failure.answers_auth is False)
    ):
        # A Status the reporting MTA derived, or a login code in a reply to something else:
        # the reply's wording says more.
        return Specificity.GENERIC_ENHANCED
    if level is Specificity.CODE and failure.enhanced and rule.code and rule.code.isdigit():
        subject = _subject(failure.enhanced)
        known = subjects.get(rule.cause, frozenset())
        # Subjects 0 (other) and 5 (protocol) fit any cause.
        if subject not in ("0", "5") and known and subject not in known:
            return Specificity.NONE
    return level


def _evidence(failure: Failure) -> dict[str, str]:
    evidence: dict[str, str] = {}
    if failure.code:
        evidence["reply_code"] = failure.code
    if failure.enhanced:
        evidence["enhanced_status"] = failure.enhanced
    bounce = failure.bounce
    if bounce is None:
        line = failure.text.strip().split("\n", 1)[0].strip()
        if failure.code and line:
            evidence["reply"] = line[:500]
        return evidence
    recipient = bounce.failed
    fields = {
        "final_recipient": recipient.final_recipient if recipient else None,
        "action": recipient.action if recipient else None,
        "status": recipient.status if recipient else None,
        "diagnostic_code": recipient.diagnostic_code if recipient else None,
        "reporting_mta": bounce.reporting_mta,
        "remote_mta": recipient.remote_mta if recipient else None,
    }
    evidence.update({k: v for k, v in fields.items() if v})
    return evidence


def diagnose(data: bytes | str, rules: RuleTable | None = None) -> Diagnosis:
    """The diagnosis of a reply, an exception text, a transcript or a bounce message."""
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    if looks_like_message(raw):
        return classify_failure(extract_bounce_failure(parse_bounce_message(raw)), rules)
    return classify_failure(extract_failure(raw.decode("utf-8", "replace")), rules)
