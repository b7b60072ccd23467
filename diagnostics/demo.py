"""``maildiag demo``: the audit notebook, executed by papermill on a sandbox scenario with a
few deliberate faults, writing ``reports/demo/``.

Papermill only warns about a parameter the notebook does not declare (and the notebook then
silently keeps its default); here an unknown name is an error before anything runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from diagnostics.datafiles import package_path

AUDIT_NOTEBOOK = package_path("notebooks", "audit.ipynb")


def declared_parameters(notebook: Path) -> set[str]:
    """The names the notebook's ``parameters`` cell declares."""
    import papermill

    return set(papermill.inspect_notebook(str(notebook)))


def execute(notebook: Path, output: Path, parameters: Mapping[str, Any]) -> Path:
    """Execute ``notebook`` into ``output`` with ``parameters``; ValueError for an unknown name."""
    import papermill

    unknown = sorted(set(parameters) - declared_parameters(notebook))
    if unknown:
        known = ", ".join(sorted(declared_parameters(notebook)))
        raise ValueError(
            f"{notebook.name} has no parameter {', '.join(unknown)}; it declares: {known}"
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    # The kernel runs in the caller's folder, where the user's relative paths start.
    from diagnostics.kernels import kernel_config

    papermill.execute_notebook(
        str(notebook),
        str(output),
        parameters=dict(parameters),
        progress_bar=False,
        config=kernel_config(),
    )
    return output


def run_audit_notebook(
    config: Path,
    directory: Path,
    *,
    sandbox: str = "",
    only: str = "",
    ca_file: Path | None = None,
    send_test: bool = False,
    timeout: float | None = None,
    dns_server: str = "",
    resolve: str = "",
    roundtrip: bool = False,
    via: str = "mx",
    clean: bool = False,
    probe_platform: bool = False,
    wait: float = 0,
) -> Path:
    """Execute the audit notebook for ``config`` (in the sandbox world ``sandbox`` when given)
    into ``directory``, which receives the report folder and the executed ``audit.ipynb``;
    the executed notebook's path. Every parameter is passed, none left to its default, and
    every path absolute: the kernel's working folder is the caller's, but a caller in another
    process (batch) must not depend on it."""
    directory = directory.resolve()
    return execute(
        AUDIT_NOTEBOOK,
        directory / "audit.ipynb",
        {
            "config": str(config.resolve()),
            "sandbox": sandbox,
            "only": only,
            "report_dir": str(directory),
            "timeout_s": timeout or 0,
            "ca_file": str(ca_file.resolve()) if ca_file else "",
            "send_test": send_test,
            "dns_server": dns_server,
            "resolve": resolve,
            "roundtrip": roundtrip,
            "via": via,
            "clean": clean,
            "probe_platform": probe_platform,
            "wait_s": wait,
            # The caller reads the verdict from report.json and sets its own exit code.
            "fail_on": "never",
        },
    )


def run_demo(*, scenario: str = "demo", report_dir: Path | None = None) -> Path:
    """Run the audit notebook on ``scenario``; the report folder it wrote."""
    from diagnostics.sandbox.scenariofile import load_scenario

    directory = (report_dir or Path("reports") / "demo").resolve()
    run_audit_notebook(load_scenario(scenario).config_path(), directory, sandbox=scenario)
    return directory
