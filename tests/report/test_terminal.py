"""diagnostics.report.terminal: text written by strangers, made safe for a terminal."""

from __future__ import annotations

from diagnostics.report.terminal import printable


def test_printable_shows_control_characters_and_bidi_overrides_without_obeying_them() -> None:
    assert (
        printable("a\x1b[2Jb\tc\r\nd\x00\x7f\x9b\u202ee\u2028f\udcff")
        == "a\\x1b[2Jb c  d\\x00\\x7f\\x9b\\u202ee f\ufffd"
    )
    assert printable("<script>Grüße</script>") == "<script>Grüße</script>"


def test_printable_masks_every_known_secret() -> None:
    """A server that echoes the credentials it was sent cannot get them printed."""
    from diagnostics.secrets import MASK, Secret

    secret = Secret("echoed-Passw0rd-77", source="test")
    said = f"535 5.7.8 Username and Password not accepted for {secret.reveal()}"
    assert printable(said) == f"535 5.7.8 Username and Password not accepted for {MASK}"


def test_a_finding_prints_no_control_sequence_a_server_wrote() -> None:
    """A title or remediation quoting a hostile banner cannot drive the admin's terminal."""
    import io

    from diagnostics.findings import Cause, Finding, Status
    from diagnostics.report.terminal import print_finding

    finding = Finding(
        check="smtp.connect",
        status=Status.FAIL,
        subject="Acme\x1b]0;owned\x07 GmbH",
        title="Greeting: 554 \x1b[2J\x1b[31mno\u202eetirw",
        remediation="Ask the admin\r\nof smtp.acme.example",
        cause=Cause.CLIENT_IP_REJECTED,
    )
    out = io.StringIO()
    print_finding(finding, out)
    text = out.getvalue()
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert text.splitlines() == [
        "  fail  smtp.connect                       Acme\\x1b]0;owned\\x07 GmbH: Greeting: 554 "
        "\\x1b[2J\\x1b[31mno\\u202eetirw",
        "        -> Ask the admin  of smtp.acme.example",
    ]


def test_the_headers_analysis_reads_as_lines_after_the_hop_table() -> None:
    from diagnostics.parse.headers.analysis import analyse_headers
    from diagnostics.report.terminal import header_analysis_lines
    from tests.parse.headers.samples import CORPUS

    analysis = analyse_headers(
        (CORPUS / "m365-external-tag-disclaimer.eml").read_bytes(),
        original=(CORPUS / "originals/max-mustermann.eml").read_bytes(),
    )
    lines = header_analysis_lines(analysis)
    assert lines[0] == "Total delay: 5.0 s over 5 hop(s)"
    assert "ARC: 1 instance(s), complete, cv=none (structure only; no signature verified)" in lines
    assert lines[-1] == "Verdict: FAIL"
