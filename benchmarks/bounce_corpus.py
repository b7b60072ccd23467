"""Accuracy of ``maildiag diagnose`` on the real-world corpus ``fixtures/bounces-corpus``.

Prints the accuracy per batch (1: labelled and measured before the rule changes that came with the
corpus; 2: gathered after them and measured, then used for a second round of rules, so that
batches 1 and 2 are both fitted; 3: gathered after the second round from sources not used before,
never used to write rules, the honest figure), per MTA/provider family and per cause, and the
samples it gets wrong. If the Debian package ``libsisimai-perl`` is installed (this script never
installs it), it also times ``maildiag diagnose DIR`` against sisimai on the same folder, one
process each, and reports how often both agree where both answer; otherwise it says it is absent.

    .venv/bin/python benchmarks/bounce_corpus.py [--misses] [--json] [--runs 9]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import yaml

from diagnostics.diagnose import diagnose

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "fixtures" / "bounces-corpus"

# Batches whose samples rules were written from; the others measure the rules honestly.
FITTED_BATCHES = frozenset({1, 2})

# sisimai's reasons mapped onto maildiag's causes, for the agreement figure only.
SISIMAI_TO_CAUSE = {
    "userunknown": "recipient_unknown",
    "hasmoved": "recipient_unknown",
    "suspend": "recipient_unknown",
    "mailboxfull": "mailbox_full",
    "exceedlimit": "message_too_large",
    "mesgtoobig": "message_too_large",
    "hostunknown": "dns_failure",
    "blocked": "client_ip_rejected",
    "rejected": "policy_rejected",
    "spamdetected": "policy_rejected",
    "policyviolation": "policy_rejected",
    "authfailure": "policy_rejected",
    "securityerror": "auth_failed",
    "norelaying": "relay_denied",
    "toomanyconn": "rate_limited",
    "speeding": "rate_limited",
    "ratelimited": "rate_limited",
    "expired": "temporary_failure",
    "systemerror": "temporary_failure",
    "networkerror": "connection_timeout",
    "notaccept": "client_ip_rejected",
    "requireptr": "client_ip_rejected",
}


def load_labels() -> dict[str, dict[str, object]]:
    labels: dict[str, dict[str, object]] = yaml.safe_load(
        (CORPUS / "labels.yaml").read_text("utf-8")
    )
    return labels


def classify(labels: dict[str, dict[str, object]]) -> dict[str, str]:
    return {name: diagnose((CORPUS / name).read_bytes()).cause.value for name in sorted(labels)}


def _table(title: str, groups: dict[str, list[bool]]) -> list[str]:
    lines = [f"{title:<28} {'right':>7} {'n':>4} {'accuracy':>9}"]
    for key in sorted(groups, key=lambda k: (sum(groups[k]) / len(groups[k]), k)):
        hits = groups[key]
        lines.append(f"{key:<28} {sum(hits):>7} {len(hits):>4} {sum(hits) / len(hits):>9.1%}")
    return lines


def report(labels: dict[str, dict[str, object]], got: dict[str, str], misses: bool) -> list[str]:
    by_batch: dict[str, list[bool]] = defaultdict(list)
    by_family: dict[str, list[bool]] = defaultdict(list)
    by_cause: dict[str, list[bool]] = defaultdict(list)
    for name, label in labels.items():
        ok = got[name] == label["cause"]
        fitted = "fitted" if label["batch"] in FITTED_BATCHES else "honest"
        by_batch[f"batch {label['batch']} ({fitted})"].append(ok)
        by_batch["all"].append(ok)
        by_family[str(label["family"])].append(ok)
        by_cause[str(label["cause"])].append(ok)
    lines = [
        f"{len(labels)} samples, {len(by_family)} families",
        "",
        *_table("batch", by_batch),
        "",
        *_table("family", by_family),
        "",
        *_table("cause (labelled)", by_cause),
    ]
    if misses:
        lines += ["", "misses (file: labelled -> answered)"]
        for name in sorted(labels):
            if got[name] != labels[name]["cause"]:
                lines.append(
                    f"  [{labels[name]['batch']}] {name}: {labels[name]['cause']} -> {got[name]}"
                )
    return lines


def _sisimai_script() -> str:
    return (
        "use Sisimai; my $f = Sisimai->can('rise') ? 'rise' : 'make';"  # v5 rise, v4 make
        " my $v = Sisimai->$f($ARGV[0], delivered => 1) || [];"
        "for my $e (@$v) { my $o = $e->origin // ''; $o =~ s{.*/}{};"
        ' printf("%s\\t%s\\n", $o, $e->reason); }'
    )


# Python may cache compiled modules, as an installed wheel has them (pip compiles them when it
# installs); an environment that forbids it would time the compiler, not maildiag.
_ENVIRONMENT = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _timed(command: list[str]) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """(wall seconds, CPU seconds of the process and its children, the finished run)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=_ENVIRONMENT)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done


def compare_with_sisimai(
    labels: dict[str, dict[str, object]], got: dict[str, str], runs: int
) -> list[str]:
    perl = shutil.which("perl")
    if (
        perl is None
        or subprocess.run(
            [perl, "-MSisimai", "-e", "1"], capture_output=True, check=False
        ).returncode
    ):
        return ["sisimai: not installed (Debian package libsisimai-perl); no timing or agreement"]
    maildiag = Path(sys.executable).with_name("maildiag")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in labels:
            if name.endswith(".eml"):  # sisimai reads whole messages only
                shutil.copy(CORPUS / name, folder / name)
        ours_command = [str(maildiag), "diagnose", "--json", str(folder)]
        theirs_command = [perl, "-e", _sisimai_script(), str(folder)]
        # One warm-up each (file cache, bytecode), then the two in turn, so that a machine
        # whose speed drifts slows both alike; the ratio is taken pair by pair.
        _timed(ours_command)
        _timed(theirs_command)
        walls: list[float] = []
        cpus: list[float] = []
        pairs: list[float] = []
        for _ in range(runs):
            our_wall, our_cpu, mine = _timed(ours_command)
            their_wall, their_cpu, done = _timed(theirs_command)
            walls += [our_wall, their_wall]
            cpus += [our_cpu, their_cpu]
            pairs.append(our_cpu / their_cpu)
    answers: dict[str, str] = {}
    for line in done.stdout.splitlines():
        origin, _, reason = line.partition("\t")
        answers.setdefault(origin, reason)
    both = agree = 0
    for name, reason in answers.items():
        cause = SISIMAI_TO_CAUSE.get(reason)
        if cause is None or got.get(name, "unknown") == "unknown":
            continue
        both += 1
        agree += got[name] == cause
    try:
        answered_ours = sum(d["cause"] != "unknown" for d in json.loads(mine.stdout))
    except (ValueError, TypeError, KeyError):
        answered_ours = 0
    answered_theirs = sum(1 for r in answers.values() if r in SISIMAI_TO_CAUSE)
    messages = sum(n.endswith(".eml") for n in labels)
    median = statistics.median
    return [
        f"commands: {maildiag.name} diagnose --json DIR; perl -MSisimai (Sisimai->rise or make)",
        f"answered (a cause, not unknown/undefined): maildiag {answered_ours}, "
        f"sisimai {answered_theirs}",
        f"{runs} runs each, in turn, one process per run, on {messages} messages (medians):",
        f"  CPU time: maildiag {median(cpus[0::2]):.3f} s, sisimai {median(cpus[1::2]):.3f} s; "
        f"ratio {median(pairs):.2f} (min {min(pairs):.2f}, max {max(pairs):.2f})",
        f"  wall time: maildiag {median(walls[0::2]):.3f} s, sisimai {median(walls[1::2]):.3f} s",
        f"agreement where both answer: {agree}/{both}" + (f" ({agree / both:.1%})" if both else ""),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--misses", action="store_true", help="list every misclassified sample")
    parser.add_argument("--json", action="store_true", help="print {file: answered cause} as JSON")
    parser.add_argument(
        "--runs", type=int, default=9, help="timed runs of each command against sisimai (9)"
    )
    args = parser.parse_args()
    labels = load_labels()
    got = classify(labels)
    if args.json:
        print(json.dumps(got, indent=1, sort_keys=True))
        return 0
    print("\n".join(report(labels, got, args.misses)))
    print()
    print("\n".join(compare_with_sisimai(labels, got, args.runs)))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
