"""diagnostics.report.terminal: text written by strangers, made safe for a terminal."""

from __future__ import annotations

from diagnostics.report.terminal import printable


def test_printable_strips_control_characters_and_bidi_overrides() -> None:
    assert printable("a\x1b[2Jb\tc\r\nd\x00\x7f\x9b\u202ee\u2028f\udcff") == "a[2Jb c  de f\ufffd"
    assert printable("<script>Grüße</script>") == "<script>Grüße</script>"
