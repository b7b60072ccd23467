"""``report.html`` as a reader sees it: rendered by a real headless Chromium (Playwright).

Two uses: :func:`read_report` opens a report and returns what is on the screen (the text, the
verdict heading, which texts are visible) together with everything the page tried to do that a
self-contained report must not (requests, dialogs, console errors, scripts); :func:`screenshot`
keeps a PNG of it (``maildiag demo --screenshot``).

The browser is Debian's ``chromium`` (``apt-get install chromium``), found through
``$MAILDIAG_CHROMIUM`` or on ``PATH``; Playwright drives it and is an optional dependency
(``pip install -e '.[browser]'``), imported only here, inside the functions, so that the command
line stays fast. Either one missing raises :class:`BrowserUnavailable`, saying what to install.

The page may load exactly one URL, the ``file://`` URL of the report: every other request
(stylesheet, image, fetch, even another local file) is aborted and recorded. Chromium runs
headless, without its sandbox (we run as root), with background networking, updates, sync and
QUIC off, a host resolver that resolves nothing (so no DNS query ever leaves), and a fresh
temporary profile. Every wait is bounded by :data:`TIMEOUT_S`.

Playwright's sync API refuses to run in a thread whose asyncio loop is running (an ``async``
test under pytest-asyncio, a notebook kernel). Called from such a thread, the functions here
do their work in a short-lived worker thread and wait for it (blocking that loop meanwhile);
plain sync callers run in their own thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from diagnostics.errors import ReportError

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Route

__all__ = [
    "CHROMIUM_ARGS",
    "CHROMIUM_NAMES",
    "ENV_VAR",
    "TIMEOUT_S",
    "BrowserUnavailable",
    "RenderedPage",
    "find_chromium",
    "read_report",
    "require_browser",
    "screenshot",
]

ENV_VAR = "MAILDIAG_CHROMIUM"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
TIMEOUT_S = 30.0
CHROMIUM_ARGS = (
    # Headless as root in a container: no setuid sandbox, no GPU, /dev/shm may be small.
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    # Chromium's own traffic (background services, updates, sync, first-run, QUIC), where a
    # switch turns it off.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    # No name resolves: a request that slipped past the routing below could not go anywhere.
    # Chromium 156 still asks for an on-demand component update and Google's account list,
    # which no switch stops; ^NOTFOUND fails them in the mapping, before the resolver. The
    # older ~NOTFOUND is an ordinary host name to current Chromium: each such request reached
    # the resolver, whose IPv6 probe connected a socket to 2001:4860:4860::8888 port 443.
    "--host-resolver-rules=MAP * ^NOTFOUND",
)

_INSTALL_CHROMIUM = "install Debian's Chromium (apt-get install chromium)"
_INSTALL_PLAYWRIGHT = "install Playwright for Python (pip install -e '.[browser]')"

T = TypeVar("T")


class BrowserUnavailable(ReportError):
    """No browser to render the report with: Chromium or Playwright is not installed."""


@dataclass
class RenderedPage:
    """What a reader sees of one report page, and what the page tried to do."""

    url: str
    title: str
    #: ``document.body.innerText``: the visible text, as a reader sees it.
    text: str
    #: The inner text of the first ``h1`` ("" when there is none).
    verdict: str
    #: Top edge of the first ``h1`` in CSS pixels from the top of the first screen (the page
    #: is not scrolled), None without an ``h1``.
    verdict_top: float | None
    viewport: tuple[int, int]
    #: Every URL the page requested other than the report itself (each one was aborted).
    blocked_requests: list[str] = field(default_factory=list)
    #: Console messages of type ``error`` and uncaught exceptions.
    console_errors: list[str] = field(default_factory=list)
    #: The message of every alert/confirm/prompt the page opened (each one was dismissed).
    dialogs: list[str] = field(default_factory=list)
    #: ``document.scripts.length``.
    script_elements: int = 0
    #: How many elements of each tag name the document holds, e.g. ``{"h1": 1, ...}``.
    tag_counts: dict[str, int] = field(default_factory=dict)
    #: The texts asked for with ``must_see`` that are in no visible element.
    unseen: list[str] = field(default_factory=list)

    @property
    def verdict_in_first_viewport(self) -> bool:
        """Whether the verdict heading starts within the first screen, without scrolling."""
        return self.verdict_top is not None and 0 <= self.verdict_top < self.viewport[1]


def find_chromium() -> Path:
    """The Chromium to use: ``$MAILDIAG_CHROMIUM`` if set, else the first of
    :data:`CHROMIUM_NAMES` on ``PATH``; :class:`BrowserUnavailable` when there is none."""
    configured = os.environ.get(ENV_VAR, "").strip()
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file() or not os.access(path, os.X_OK):
            raise BrowserUnavailable(
                f"${ENV_VAR} is {configured}, which is not an executable file: point it at "
                f"a Chromium binary, or unset it and {_INSTALL_CHROMIUM}"
            )
        return path
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return Path(found)
    raise BrowserUnavailable(
        f"no Chromium found (looked for {', '.join(CHROMIUM_NAMES)} on PATH and ${ENV_VAR}): "
        f"{_INSTALL_CHROMIUM}, or set ${ENV_VAR} to a Chromium binary"
    )


def _require_playwright() -> None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        raise BrowserUnavailable(
            f"Playwright is not installed ({exc}): {_INSTALL_PLAYWRIGHT}"
        ) from exc


def require_browser() -> Path:
    """Check that a report can be rendered (Playwright importable, Chromium found) before
    any slow work; the Chromium path, else :class:`BrowserUnavailable`."""
    _require_playwright()
    return find_chromium()


def _outside_running_loop(work: Callable[[], T]) -> T:
    """``work()``, in a worker thread when this thread runs an asyncio loop (see module doc)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return work()
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="maildiag-browser") as pool:
        return pool.submit(work).result()


@contextlib.contextmanager
def _browser() -> Iterator[Browser]:
    from playwright.sync_api import Error, sync_playwright

    executable = require_browser()
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=str(executable),
                headless=True,
                chromium_sandbox=False,
                args=list(CHROMIUM_ARGS),
                timeout=TIMEOUT_S * 1000,
            )
        except Error as exc:
            raise BrowserUnavailable(
                f"cannot start {executable}: {_first_line(exc)} ({_INSTALL_CHROMIUM})"
            ) from exc
        try:
            yield browser
        except Error as exc:
            raise ReportError(f"the browser failed: {_first_line(exc)}") from exc
        finally:
            browser.close()


def _first_line(exc: Exception) -> str:
    message = getattr(exc, "message", "") or str(exc)
    return str(message).strip().splitlines()[0] if str(message).strip() else type(exc).__name__


@dataclass
class _Watch:
    blocked: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


def _open(
    browser: Browser, html_path: Path, viewport: tuple[int, int]
) -> tuple[BrowserContext, Page, _Watch, str]:
    """A fresh context and page showing ``html_path``, only its own URL allowed to load."""
    from playwright.sync_api import ConsoleMessage, Dialog
    from playwright.sync_api import Error as PlaywrightError

    if not html_path.is_file():
        raise ReportError(f"cannot render {html_path}: no such file")
    url = html_path.resolve().as_uri()
    watch = _Watch()
    context = browser.new_context(
        viewport={"width": viewport[0], "height": viewport[1]},
        device_scale_factor=1,
        service_workers="block",
        accept_downloads=False,
    )
    context.set_default_timeout(TIMEOUT_S * 1000)
    context.set_default_navigation_timeout(TIMEOUT_S * 1000)

    def route(route: Route) -> None:
        request = route.request
        if request.url == url and request.is_navigation_request():
            route.continue_()
        else:
            watch.blocked.append(request.url)
            route.abort("blockedbyclient")

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            watch.console_errors.append(message.text)

    def dialog(opened: Dialog) -> None:
        watch.dialogs.append(opened.message)
        opened.dismiss()

    def page_error(error: PlaywrightError) -> None:
        watch.console_errors.append(f"uncaught: {error.message}")

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", console)
    page.on("dialog", dialog)
    page.on("pageerror", page_error)
    try:
        page.goto(url, wait_until="load", timeout=TIMEOUT_S * 1000)
    except PlaywrightError as exc:
        context.close()
        raise ReportError(f"cannot render {html_path}: {_first_line(exc)}") from exc
    return context, page, watch, url


# Which of the texts are in no element a reader can see. Only rendered elements count
# (checkVisibility: not display:none, not visibility:hidden, not inside a closed <details>),
# and their innerText, which holds rendered text only. A text is seen when one of the innermost
# rendered elements holding it (whitespace collapsed, case kept) has a box of some size.
# Innermost among *rendered* elements: a visible cell that also holds the text in a folded
# <details> still counts, which Playwright's get_by_text (innermost of all elements) misses.
# As for Playwright, opacity, colour and clipping by an ancestor are not looked at: the report
# uses none of them to hide text.
_UNSEEN = """(wanted) => {
  const norm = (s) => (s || "").replace(/\\s+/g, " ").trim();
  const rendered = [...document.querySelectorAll("body, body *")].filter((e) =>
    e.checkVisibility({ visibilityProperty: true }));
  const texts = new Map(rendered.map((e) => [e, norm(e.innerText)]));
  return wanted.filter((text) => {
    const needle = norm(text);
    if (!needle) return false;
    const holders = rendered.filter((e) => texts.get(e).includes(needle));
    const innermost = holders.filter((e) => !holders.some((o) => o !== e && e.contains(o)));
    return !innermost.some((e) => {
      const box = e.getBoundingClientRect();
      return box.width > 0 && box.height > 0;
    });
  });
}"""


_TAG_COUNTS = """() => {
  const counts = {};
  for (const element of document.getElementsByTagName("*")) {
    const tag = element.localName;
    counts[tag] = (counts[tag] || 0) + 1;
  }
  return counts;
}"""


def read_report(
    html_path: Path | str,
    *,
    must_see: Iterable[str] = (),
    unfold: bool = False,
    width: int = 1280,
    height: int = 900,
) -> RenderedPage:
    """Render ``html_path`` in headless Chromium and return what a reader sees.

    ``unseen`` lists those of ``must_see`` that are in no visible element: a text inside a
    closed ``<details>`` does not count, unless ``unfold`` opens every one first (what a
    reader does who clicks each "Evidence" and "passed" fold). :class:`BrowserUnavailable` without a browser,
    :class:`ReportError` when the page cannot be rendered.
    """
    path = Path(html_path)
    wanted = list(must_see)

    def work() -> RenderedPage:
        with _browser() as browser:
            context, page, watch, url = _open(browser, path, (width, height))
            try:
                if unfold:
                    page.evaluate(
                        "document.querySelectorAll('details').forEach(d => d.open = true)"
                    )
                heading = page.locator("h1").first
                has_heading = page.locator("h1").count() > 0
                box = heading.bounding_box() if has_heading else None
                rendered = RenderedPage(
                    url=url,
                    title=page.title(),
                    text=str(page.evaluate("document.body ? document.body.innerText : ''")),
                    verdict=heading.inner_text() if has_heading else "",
                    verdict_top=box["y"] if box else None,
                    viewport=(width, height),
                    script_elements=int(page.evaluate("document.scripts.length")),
                    tag_counts={str(k): int(v) for k, v in page.evaluate(_TAG_COUNTS).items()},
                    unseen=[str(t) for t in page.evaluate(_UNSEEN, wanted)],
                )
                rendered.blocked_requests = list(watch.blocked)
                rendered.console_errors = list(watch.console_errors)
                rendered.dialogs = list(watch.dialogs)
                return rendered
            finally:
                context.close()

    return _outside_running_loop(work)


def screenshot(
    html_path: Path | str,
    png_path: Path | str,
    *,
    width: int = 1280,
    height: int = 900,
    full_page: bool = False,
) -> Path:
    """Render ``html_path`` and write a PNG of it (``width`` CSS pixels wide, scale 1) to
    ``png_path`` atomically (temp file in the same folder, then a rename); returns the path."""
    source, target = Path(html_path), Path(png_path)

    def work() -> bytes:
        with _browser() as browser:
            context, page, _watch, _url = _open(browser, source, (width, height))
            try:
                return page.screenshot(
                    type="png", full_page=full_page, animations="disabled", timeout=TIMEOUT_S * 1000
                )
            finally:
                context.close()

    image = _outside_running_loop(work)
    from diagnostics.report.json import write_atomic

    return write_atomic(target, image)
