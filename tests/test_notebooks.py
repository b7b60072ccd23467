"""The notebooks, executed for real by papermill in a Jupyter kernel, results read back."""

from __future__ import annotations

from pathlib import Path

import nbformat
import papermill
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
BOUNCES = Path(__file__).resolve().parents[1] / "fixtures" / "bounces"


def outputs(notebook: Path) -> str:
    executed = nbformat.read(str(notebook), as_version=4)
    texts = []
    for cell in executed.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", ""))
            texts.append(output.get("data", {}).get("text/plain", ""))
    return "\n".join(texts)


@pytest.mark.timeout(180)
def test_diagnose_notebook_takes_a_pasted_text_and_a_path(tmp_path: Path) -> None:
    pasted = tmp_path / "pasted.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOKS / "diagnose_failed_test_mail.ipynb"),
        str(pasted),
        parameters={"text": "530 5.7.0 Must issue a STARTTLS command first", "path": ""},
        progress_bar=False,
        cwd=str(NOTEBOOKS.parent),
    )
    text = outputs(pasted)
    assert "pasted text: starttls_required" in text
    assert "config.port_encryption, smtp.tls" in text

    folder = tmp_path / "folder.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOKS / "diagnose_failed_test_mail.ipynb"),
        str(folder),
        parameters={"text": "", "path": str(BOUNCES)},
        progress_bar=False,
        cwd=str(NOTEBOOKS.parent),
    )
    assert text.count(": ") >= 1
    assert outputs(folder).count("What to do:") == len(
        [p for p in BOUNCES.iterdir() if p.suffix != ".yaml"]
    )
