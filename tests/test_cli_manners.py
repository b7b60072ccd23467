"""What a command-line user expects of any tool: --version, "did you mean", shell completion."""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import diagnostics
from diagnostics.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
BASH = shutil.which("bash") or "/bin/bash"


def test_version_is_the_installed_distributions(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "diagnostics", "--version"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=True,
    )
    installed = importlib.metadata.version("maildiag")
    assert done.stdout == f"maildiag {installed}\n"
    assert diagnostics.__version__ == installed


def test_the_version_is_written_once() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    dynamic = project["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "diagnostics.__version__"}


@pytest.mark.parametrize(
    ("argv", "error", "hint"),
    [
        (
            ["audti", "x.yaml"],
            "maildiag: error: argument COMMAND: invalid choice: 'audti' (choose from ",
            "did you mean 'audit'?",
        ),
        (
            ["audit", "x.yaml", "--sandbx", "healthy"],
            "maildiag audit: error: unrecognized arguments: --sandbx healthy",
            "did you mean '--sandbox'?",
        ),
        (
            ["audit", "x.yaml", "--reprot-dir=out"],
            "maildiag audit: error: unrecognized arguments: --reprot-dir=out",
            "did you mean '--report-dir'?",
        ),
        (
            ["smtp", "--hots", "smtp.acme.example", "--port", "587", "--encryption", "starttls",
             "--account", "jobs@acme.example", "--password-env", "ACME_SMTP_PASSWORD"],
            "maildiag smtp: error: the following arguments are required: --host",
            "did you mean '--host'?",
        ),
        (
            ["sandbox", "upp"],
            "maildiag sandbox: error: argument ACTION: invalid choice: 'upp'",
            "did you mean 'up'?",
        ),
        (
            ["--verbsoe", "audit", "x.yaml"],
            "maildiag: error: unrecognized arguments: --verbsoe",
            "did you mean '--verbose'?",
        ),
    ],
)  # fmt: skip
def test_a_mistyped_command_or_option_gets_a_suggestion(
    capsys: pytest.CaptureFixture[str], argv: list[str], error: str, hint: str
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert lines[0].startswith("usage: maildiag")
    message = next(i for i, line in enumerate(lines) if "error:" in line)
    assert lines[message].startswith(error)
    assert lines[message + 1 :] == [hint]


@pytest.mark.parametrize(
    "argv", [["frobnicate"], ["audit", "x.yaml", "--zzzzzz"], ["audit", "x.yaml", "extra"]]
)
def test_nothing_close_gets_no_suggestion(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert main(argv) == 2
    assert "did you mean" not in capsys.readouterr().err


def test_an_abbreviated_option_still_works_as_in_argparse() -> None:
    args = build_parser().parse_args(["audit", "x.yaml", "--sand", "healthy", "--rep", "out"])
    assert (args.sandbox, args.report_dir) == ("healthy", Path("out"))


@pytest.mark.parametrize("shell", ["bash", "zsh", "tcsh"])
def test_completion_scripts_name_every_command(shell: str) -> None:
    out = io.StringIO()
    assert main(["completion", shell], out=out) == 0
    script = out.getvalue()
    commands = next(
        action.choices
        for action in build_parser()._actions
        if isinstance(action.choices, dict) and "audit" in action.choices
    )
    for name in commands:
        assert name in script
    if shell != "tcsh":  # shtab's tcsh script completes commands, not their options
        assert "--sandbox" in script and "--password-env" in script


def test_the_bash_completion_is_valid_bash_and_completes_commands_and_options() -> None:
    out = io.StringIO()
    assert main(["completion", "bash"], out=out) == 0
    script = out.getvalue()
    syntax = subprocess.run(
        [BASH, "-n"], input=script, capture_output=True, text=True, timeout=30, check=False
    )
    assert syntax.returncode == 0, syntax.stderr
    # What bash offers after `maildiag au<TAB>` and `maildiag audit x.yaml --sa<TAB>`.
    probe = (
        script
        + """
complete_line() {
    COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
    COMPREPLY=(); _shtab_maildiag; printf '%s\\n' "${COMPREPLY[@]}"; echo --
}
complete_line maildiag au
complete_line maildiag audit x.yaml --sa
complete_line maildiag sandbox u
"""
    )
    done = subprocess.run(
        [BASH, "-c", probe], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    offered = [block.split() for block in done.stdout.split("--\n")[:3]]
    assert offered == [["audit"], ["--sandbox"], ["up"]]


def test_a_usage_error_loads_neither_shtab_nor_the_heavy_modules() -> None:
    script = (
        "import json, sys\n"
        "from diagnostics.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "print(json.dumps([code, sorted(sys.modules)]), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, "audti"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    code, modules = json.loads(done.stderr.strip().splitlines()[-1])
    assert code == 2
    assert not {"shtab", "papermill", "pydantic"} & {m.split(".")[0] for m in modules}


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["diagnose", "x.txt"], "diagnose"),
        (["-v", "--log-file", "l.log", "audit", "a.yaml"], "audit"),
        (["--log-file=l.log", "smtp", "--host", "h"], "smtp"),
        (["--help"], None),
        (["--version"], None),
        (["diagnsoe", "x.txt"], None),  # a typo gets the full parser and its suggestion
        (["completion", "bash"], None),  # completion describes every command
        ([], None),
    ],
)
def test_a_run_builds_only_its_commands_options(argv: list[str], command: str | None) -> None:
    from diagnostics.cli import _command_named

    assert _command_named(argv) == command


def _options(parser: argparse.ArgumentParser, name: str) -> list[tuple[str, ...]]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [tuple(a.option_strings) or (a.dest,) for a in sub.choices[name]._actions]


def test_the_options_of_a_command_are_the_same_built_alone() -> None:
    full = build_parser()
    for name in ("audit", "smtp", "headers", "watch", "diagnose", "batch", "demo", "notebook"):
        assert _options(build_parser(name), name) == _options(full, name), name
