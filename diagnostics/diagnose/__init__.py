"""Diagnosis of failed mail: a reply, an exception text, a transcript or a bounce, mapped to
one cause of the product contract by the rules in ``data/diagnosis_rules.yaml``."""

from diagnostics.diagnose.dsn import (
    Bounce,
    RecipientStatus,
    looks_like_message,
    parse_bounce_message,
)
from diagnostics.diagnose.engine import (
    Diagnosis,
    Failure,
    classify_failure,
    diagnose,
    extract_bounce_failure,
    extract_failure,
)
from diagnostics.diagnose.rawtext import parse_status_fields
from diagnostics.diagnose.rules import (
    Advice,
    Rule,
    RuleTable,
    RuleTableError,
    Specificity,
    WhoActs,
    load_rules,
    parse_rules,
)

__all__ = [
    "Advice",
    "Bounce",
    "Diagnosis",
    "Failure",
    "RecipientStatus",
    "Rule",
    "RuleTable",
    "RuleTableError",
    "Specificity",
    "WhoActs",
    "classify_failure",
    "diagnose",
    "extract_bounce_failure",
    "extract_failure",
    "load_rules",
    "looks_like_message",
    "parse_bounce_message",
    "parse_rules",
    "parse_status_fields",
]
