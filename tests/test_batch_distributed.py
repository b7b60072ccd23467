"""``maildiag batch --scheduler``: the audits on a Dask cluster on loopback (two worker
processes, one thread each, each owning different egress IPs of the platform) give the
findings a local run gives, with each egress IP's greeting probes made by the worker that owns
it; a worker killed mid-batch loses no account, and the index says which ran again.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client, LocalCluster

from diagnostics.batch import run_batch
from diagnostics.batch.distributed import starts
from diagnostics.cli import main
from diagnostics.sandbox.generate import generate_accounts

# The Personio profile's egress IPs, shared between the two workers.
OWNED = {"a": ("3.121.59.239", "3.65.146.216"), "b": ("18.158.122.164",)}


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(
        n_workers=0, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, worker_dashboard_address=None,
    ) as local:  # fmt: skip
        for name, ips in OWNED.items():
            local.worker_spec[name] = {
                "cls": local.new_spec["cls"],
                "options": {
                    **local.new_spec["options"],
                    "resources": {f"egress-{ip}": 1 for ip in ips},
                },
            }
        local.scale(len(OWNED))
        with Client(local, set_as_default=False) as client:
            client.wait_for_workers(len(OWNED), timeout=60)
        yield local


@pytest.fixture(autouse=True)
def _no_env_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("ACME_SMTP_PASSWORD", "ACME_RETAIL_SMTP_PASSWORD"):
        monkeypatch.delenv(variable, raising=False)


def _findings(directory: Path) -> Counter[tuple[str, str, str, str | None]]:
    report = json.loads((directory / "report.json").read_text(encoding="utf-8"))
    return Counter((f["check"], f["subject"], f["status"], f["cause"]) for f in report["findings"])


@pytest.mark.timeout(180)
def test_the_cluster_gives_the_findings_of_a_local_run(
    tmp_path: Path, cluster: LocalCluster
) -> None:
    configs = generate_accounts(6, tmp_path / "accounts", shapes=("acme.yaml",))
    scenario = {c: ("egress-ip-missing" if i % 2 else "healthy") for i, c in enumerate(configs)}

    local = run_batch(
        configs, report_dir=tmp_path / "local", sandbox=scenario, notebooks="none",
        processes=1, jobs=3,
    )  # fmt: skip
    remote = run_batch(
        configs, report_dir=tmp_path / "dask", sandbox=scenario, notebooks="none", jobs=3,
        scheduler=cluster.scheduler_address,
    )  # fmt: skip

    assert [run.config for run in remote] == configs
    assert [run.error for run in remote] == [None] * 6
    for here, there in zip(local, remote, strict=True):
        assert _findings(there.directory) == _findings(here.directory), here.config.name
        assert (there.verdict, there.scenario) == (here.verdict, here.scenario)
        assert there.ran_on.startswith("dask worker tcp://127.0.0.1:")
        assert there.attempts == 1
    assert {run.verdict for run in remote} == {"pass", "fail"}

    with Client(cluster, set_as_default=False) as client:
        workers = client.scheduler_info(n_workers=-1)["workers"]
    owner = {
        resource.removeprefix("egress-"): address
        for address, worker in workers.items()
        for resource in worker["resources"]
    }
    assert set(owner) == {ip for ips in OWNED.values() for ip in ips}
    for run in remote:
        report = json.loads((run.directory / "report.json").read_text(encoding="utf-8"))
        probed = [
            f
            for f in report["findings"]
            if f["check"] == "allowlist.reachability" and f["evidence"].get("probes")
        ]
        assert probed, run.config.name
        for finding in probed:
            probed_by = finding["evidence"]["probed_by"]
            assert set(probed_by) == set(owner)
            for ip, worker in probed_by.items():
                assert worker.startswith(f"dask worker {owner[ip]} (egress "), (ip, worker)


@pytest.mark.timeout(180)
def test_a_worker_killed_mid_batch_loses_no_account(
    tmp_path: Path, cluster: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    configs = generate_accounts(6, tmp_path / "accounts", shapes=("acme.yaml",))
    report_dir = tmp_path / "batch"
    with Client(cluster, set_as_default=False) as client:
        pids = client.run(os.getpid)
    victim = next(address for address, pid in pids.items() if pid != os.getpid())
    folders = [report_dir / config.stem for config in configs]
    killed: list[Path] = []

    def kill_when_started() -> None:
        # Once an audit has started on the victim, it dies under it (the nanny starts a new
        # worker in its place).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for folder in folders:
                if any(victim in line for line in starts(folder)):
                    killed.append(folder)
                    os.kill(pids[victim], signal.SIGKILL)
                    return
            time.sleep(0.02)

    import threading

    killer = threading.Thread(target=kill_when_started, daemon=True)
    killer.start()
    code = main(
        ["batch", *map(str, configs), "--sandbox", "healthy", "--report-dir", str(report_dir),
         "--notebooks", "none", "--jobs", "2", "--scheduler", cluster.scheduler_address]
    )  # fmt: skip
    killer.join(5)
    assert killed, "no audit started on the victim"
    assert code == 0, capsys.readouterr().err

    state = json.loads((report_dir / "index.json").read_text(encoding="utf-8"))
    assert state["verdicts"] == {"pass": 6} and state["not_run"] == []
    again = [entry for entry in state["accounts"] if entry["attempts"] > 1]
    assert {Path(entry["directory"]) for entry in again} >= set(killed)
    for entry in again:
        assert entry["attempts"] == 2
        first, second = starts(Path(entry["directory"]))
        assert victim in first and victim not in second
    page = (report_dir / "index.html").read_text(encoding="utf-8")
    assert page.count("ran 2 times: its worker died") == len(again)


def test_the_scheduler_option_names_the_extra_when_dask_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "distributed" else real(name, *a),
    )
    config = generate_accounts(1, tmp_path / "accounts", shapes=("acme.yaml",))[0]
    code = main(["batch", str(config), "--scheduler", "tcp://127.0.0.1:1"])
    assert code == 2
    assert "pip install 'maildiag[dask]'" in capsys.readouterr().err
