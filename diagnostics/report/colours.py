"""One colour per status (background, text), shared by the HTML report and the notebook tables.

Each pair has a contrast ratio of at least 4.5:1 (WCAG AA for normal text).
"""

from __future__ import annotations

from diagnostics.findings import Status

STATUS_COLOURS: dict[Status, tuple[str, str]] = {
    Status.FAIL: ("#b00020", "#ffffff"),
    Status.ERROR: ("#6a1b9a", "#ffffff"),
    Status.WARN: ("#ffd54f", "#000000"),
    Status.PASS: ("#1b5e20", "#ffffff"),
    Status.SKIP: ("#e0e0e0", "#000000"),
}


def status_css(status: Status | str) -> str:
    """CSS declarations for a cell or badge showing ``status`` ('' for an unknown value)."""
    try:
        background, foreground = STATUS_COLOURS[Status(status)]
    except ValueError:
        return ""
    return f"background-color: {background}; color: {foreground}; font-weight: bold"
