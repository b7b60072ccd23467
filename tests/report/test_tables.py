"""The notebook tables: styled by status, every outside value escaped, stable for nbval."""

from __future__ import annotations

from diagnostics.findings import Cause, Outcome, Status
from diagnostics.report.colours import STATUS_COLOURS
from diagnostics.report.tables import (
    Message,
    findings_frame,
    status_matrix,
    steps_chart,
    steps_frame,
    styled,
)

BANNER = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def _findings() -> list:  # type: ignore[type-arg]
    steps = [
        {"step": "connect", "ok": True, "elapsed_ms": 5.0},
        {"step": "banner", "ok": True, "elapsed_ms": 2.0, "reply": "220 " + BANNER},
        {"step": "auth", "ok": False, "elapsed_ms": 7.5},
    ]
    return [
        Outcome(Status.PASS, "Schema valid").finding("config.schema", "Acme GmbH"),
        Outcome(Status.FAIL, "Banner " + BANNER, cause=Cause.CONNECTION_REFUSED).finding(
            "smtp.connect", "Acme GmbH", {"host": "smtp.acme.example", "port": 587, "steps": steps}
        ),
        Outcome(Status.WARN, "Certificate expires soon").finding("smtp.tls", "Acme GmbH"),
        Outcome(Status.SKIP, "No custom address").finding("redirect.roundtrip", "Acme <Labs>"),
        Outcome(Status.PASS, "Sender resolved").finding("sender.resolution", "Acme <Labs>"),
    ]


def test_styled_findings_escape_markup_and_colour_each_status() -> None:
    html = styled(findings_frame(_findings()), name="t")._repr_html_()
    assert "<script" not in html and "<img" not in html
    assert "Banner &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x" in html
    assert "Acme &lt;Labs&gt;" in html
    fail_bg, fail_fg = STATUS_COLOURS[Status.FAIL]
    # row 1 is the failing one: its status cell, and only it, has the fail colours
    rule = html.split("#T_t_row1_col2 {", 1)[1].split("}", 1)[0]
    assert f"background-color: {fail_bg}" in rule and f"color: {fail_fg}" in rule
    assert html.count(f"background-color: {fail_bg}") == 1


def test_styled_tables_are_the_same_html_on_every_run() -> None:
    first = styled(findings_frame(_findings()), name="flow_outbound")._repr_html_()
    second = styled(findings_frame(_findings()), name="flow_outbound")._repr_html_()
    assert first == second and 'id="T_flow_outbound"' in first


def test_status_matrix_holds_the_worst_status_per_subject_and_flow() -> None:
    frame = status_matrix(_findings())
    assert frame.to_dict(orient="index") == {
        "Acme GmbH": {"configuration": "pass", "outbound": "fail", "inbound": "", "sender": ""},
        "Acme <Labs>": {"configuration": "", "outbound": "", "inbound": "skip", "sender": "pass"},
    }
    html = styled(frame, name="m")._repr_html_()
    assert "Acme &lt;Labs&gt;" in html and "<Labs>" not in html


def test_steps_come_from_the_smtp_session_and_chart_as_png() -> None:
    frame = steps_frame(_findings())
    assert frame.to_dict(orient="records") == [
        {"session": "Acme GmbH (smtp.acme.example:587)", "step": s, "elapsed_ms": ms, "ok": ok}
        for s, ms, ok in [("connect", 5.0, True), ("banner", 2.0, True), ("auth", 7.5, False)]
    ]
    chart = steps_chart(frame)
    assert chart is not None and repr(chart) == "SMTP step timings of 1 session"
    assert chart._repr_png_().startswith(b"\x89PNG\r\n\x1a\n")
    assert steps_chart(steps_frame([])) is None


def test_an_empty_table_is_a_sentence() -> None:
    assert Message("Nothing to fix.")._repr_markdown_() == "Nothing to fix."


def test_a_styled_table_reads_as_plain_text_where_there_is_no_html() -> None:
    table = styled(findings_frame(_findings())[["status", "check", "subject"]], name="p")
    lines = repr(table).splitlines()
    assert lines[0].split() == ["status", "check", "subject"]
    assert lines[2].split() == ["fail", "smtp.connect", "Acme", "GmbH"]
    assert "Styler at 0x" not in repr(table)
