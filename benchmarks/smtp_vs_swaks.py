"""Benchmark: `maildiag smtp` against `swaks --quit-after AUTH`, whole-process wall time.

Run on demand: ``.venv/bin/python benchmarks/smtp_vs_swaks.py [--runs 15]`` (needs Debian's
``swaks``: ``apt-get install swaks``). Both talk to the same sandbox submission server
(STARTTLS on its port 587, from a platform egress address, sandbox CA trusted) in one run,
alternating, so that the machine's state weighs on both alike. Prints each tool's median and
the ratio of medians, and how long ``maildiag --help`` takes to start.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time

from sandbox_process import MAILDIAG, sandbox_up, starttls_port


def timed(command: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    started = time.perf_counter()
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    return time.perf_counter() - started, done.returncode, done.stdout + done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    if shutil.which("swaks") is None:
        raise SystemExit("swaks is not installed: apt-get install swaks")
    password = "bench-" + os.urandom(6).hex()
    # As installed for use: Python may keep its bytecode caches (some shells set
    # PYTHONDONTWRITEBYTECODE, which makes every start compile the package again).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update({"ACME_SMTP_PASSWORD": password, "ACME_RETAIL_SMTP_PASSWORD": password})
    with tempfile.TemporaryDirectory() as state, sandbox_up(env, state) as described:
        port = starttls_port(described)
        dns_host, dns_port = described["dns"].rsplit(":", 1)
        source = described["egress_sources"]["3.121.59.239"]
        ca = described["ca_file"]
        maildiag = [
            *MAILDIAG,
            "smtp",
            "--host",
            "smtp.acme.example",
            "--port",
            port,
            "--encryption",
            "starttls",
            "--account",
            "jobs@acme.example",
            "--password-env",
            "ACME_SMTP_PASSWORD",
            "--ca-file",
            ca,
            "--source",
            source,
            "--resolve",
            "smtp.acme.example:127.0.0.1",
            "--dns-server",
            f"{dns_host}:{dns_port}",
            "--json",
        ]
        swaks = [
            "swaks",
            "--server",
            f"127.0.0.1:{port}",
            "--local-interface",
            source,
            "--tls",
            "--tls-verify",
            "--tls-ca-path",
            ca,
            "--auth",
            "PLAIN",
            "--auth-user",
            "jobs@acme.example",
            "--auth-password",
            password,
            "--quit-after",
            "AUTH",
            "--helo",
            "maildiag.invalid",
            "--from",
            "jobs@acme.example",
            "--to",
            "jobs@acme.example",
        ]
        for name, command in (("maildiag", maildiag), ("swaks", swaks)):
            _, code, output = timed(command, env)
            if code != 0:
                raise SystemExit(f"{name} failed (exit {code}):\n{output}")
        times: dict[str, list[float]] = {"maildiag": [], "swaks": []}
        dialogue: list[float] = []
        for _ in range(args.runs):
            for name, command in (("maildiag", maildiag), ("swaks", swaks)):
                elapsed, code, output = timed(command, env)
                if code != 0:
                    raise SystemExit(f"{name} failed (exit {code}):\n{output}")
                times[name].append(elapsed)
                if name == "maildiag":
                    report = json.loads(output[output.index("{") :])
                    # The session checks share one SMTP dialogue; the longest of them spans it.
                    dialogue.append(max(f["duration_ms"] for f in report["findings"]) / 1000)
    help_times = [timed([*MAILDIAG, "--help"], env)[0] for _ in range(args.runs)]
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        print(
            f"{name:9} median {medians[name] * 1000:7.1f} ms   min {min(values) * 1000:7.1f} ms   max {max(values) * 1000:7.1f} ms   ({len(values)} runs)"
        )
    print(f"ratio of medians maildiag / swaks: {medians['maildiag'] / medians['swaks']:.2f}")
    print(
        f"maildiag's SMTP dialogue itself (from its report): median {statistics.median(dialogue) * 1000:.1f} ms; "
        f"the rest of its time is interpreter start-up and imports"
    )
    print(
        f"maildiag --help: median {statistics.median(help_times) * 1000:.1f} ms ({len(help_times)} runs)"
    )


if __name__ == "__main__":
    main()
