"""Peak memory and time of maildiag's commands on hostile inputs, each run as its own process.

Run on demand::

    .venv/bin/python benchmarks/peak_memory.py

The inputs are written to a temporary folder: a "billion laughs" account file, an alias inside
its own anchor, YAML nested 10,000 levels, a password file that never ends (/dev/zero), a
Subject of 5 MB of encoded words, a message nested 1,200 multiparts deep, a 2 MB message of
15,000 parts, a 350 KB HTML bounce full of scripts, a bounce with 100 KB of spaces in its
Subject, and an mbox of 2,000 bounces. Each command's peak resident memory (the child's
``ru_maxrss``) is printed beside that of ``python -c pass`` measured in the same run, so the
figures read as multiples of a bare interpreter; the goal is every command under 512 MiB.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

LIMIT_MIB = 512
MAILDIAG = [sys.executable, "-m", "diagnostics"]
HEAD = "platform: {profile: personio, account: acme}\n"


def _laughs() -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, 10):
        lines.append(f"a{level}: &a{level} [" + ",".join([f"*a{level - 1}"] * 9) + "]")
    return HEAD + "\n".join(lines) + "\ncompany: {name: ACME}\nemployees: *a9\n"


def _inputs(folder: Path) -> dict[str, list[str]]:
    def write(name: str, data: str | bytes) -> str:
        path = folder / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return str(path)

    deep = ['Content-Type: multipart/mixed; boundary="b0"\n\n']
    deep += [
        f'--b{n - 1}\nContent-Type: multipart/mixed; boundary="b{n}"\n\n' for n in range(1, 1200)
    ]
    parts = "".join(
        "--x\r\nContent-Type: text/plain\r\n\r\n" + "a" * 100 + "\r\n" for _ in range(15_000)
    )
    html = "".join(
        f'<script>var a{i} = "550 5.1.1";</script><p>   text   </p>' for i in range(6000)
    )
    bounce = (
        "From: MAILER-DAEMON@mx.example.org\nSubject: Undelivered Mail\n\n"
        "<jobs@acme.example>: host mx.acme.example said: 550 5.1.1 User unknown\n"
    )
    password_file = HEAD + (
        "company:\n  name: ACME\n  custom_address: jobs@acme.example\n  smtp:\n"
        "    host: smtp.acme.example\n    port: 587\n    encryption: starttls\n"
        "    account: jobs@acme.example\n    password_file: /dev/zero\n"
    )
    return {
        "audit: billion laughs": ["audit", write("laughs.yaml", _laughs()), "--only", "config"],
        "audit: alias in its anchor": [
            "audit",
            write("self.yaml", HEAD + "company: &c\n  name: A\n  again: *c\n"),
            "--only",
            "config",
        ],
        "audit: 10,000 levels": [
            "audit",
            write("deep.yaml", HEAD + "company: " + "[" * 10_000 + "]" * 10_000 + "\n"),
            "--only",
            "config",
        ],
        "audit: password_file /dev/zero": [
            "audit",
            write("zero.yaml", password_file),
            "--only",
            "config",
        ],
        "headers: 5 MB encoded Subject": [
            "headers",
            write(
                "subject.eml",
                "Subject: " + " ".join(["=?utf-8?q?abc=C3=A4?="] * 250_000) + "\r\n\r\nx\r\n",
            ),
        ],
        "headers: 1,200 nested parts": [
            "headers",
            write("nested.eml", "Subject: deep\nMIME-Version: 1.0\n" + "".join(deep)),
        ],
        "headers: 15,000 parts": [
            "headers",
            write(
                "parts.eml",
                "Content-Type: multipart/mixed; boundary=x\r\nSubject: s\r\n\r\n"
                + parts
                + "--x--\r\n",
            ),
        ],
        "diagnose: 350 KB HTML bounce": [
            "diagnose",
            write(
                "html.eml",
                "From: MAILER-DAEMON@x\nContent-Type: text/html\nSubject: Undeliverable\n\n" + html,
            ),
        ],
        "diagnose: 100 KB of spaces": [
            "diagnose",
            write(
                "spaces.eml", "From: MAILER-DAEMON@x\nSubject: " + " " * 100_000 + "x\n\nfailed\n"
            ),
        ],
        "diagnose: mbox of 2,000 bounces": [
            "diagnose",
            write(
                "box.mbox",
                "".join(
                    f"From MAILER-DAEMON Thu Nov 26 09:30:{n % 60:02d} 2026\n{bounce}\n"
                    for n in range(2000)
                ),
            ),
        ],
    }


def _measured(command: list[str]) -> tuple[float, float, int]:
    """Run ``command`` under a small wrapper that reports its own child's peak memory."""
    wrapper = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "code = subprocess.run(sys.argv[1:], capture_output=True).returncode\n"
        "e = time.perf_counter() - t\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, e, code)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", wrapper, *command],
        capture_output=True,
        text=True,
        check=True,
        timeout=150,
    ).stdout.split()
    return int(out[0]) / 1024, float(out[1]), int(out[2])


def main() -> int:
    baseline, base_time, _ = _measured([sys.executable, "-c", "pass"])
    print(f"baseline: python -c pass, {baseline:.0f} MiB, {base_time:.2f} s")
    print(f"{'command and input':38} {'peak MiB':>9} {'x base':>7} {'s':>6} {'exit':>5}")
    worst = 0.0
    with tempfile.TemporaryDirectory() as folder:
        env_folder = Path(folder)
        os.chdir(env_folder)
        for label, arguments in _inputs(env_folder).items():
            peak, seconds, code = _measured([*MAILDIAG, *arguments])
            worst = max(worst, peak)
            print(f"{label:38} {peak:9.0f} {peak / baseline:7.1f} {seconds:6.2f} {code:5d}")
    verdict = "under" if worst < LIMIT_MIB else "OVER"
    print(f"worst peak {worst:.0f} MiB: {verdict} the {LIMIT_MIB} MiB goal")
    return 0 if worst < LIMIT_MIB else 1


if __name__ == "__main__":
    raise SystemExit(main())
