"""The built book in a real browser: math typeset, images loaded, no console errors, no network.

Opens pages of ``_build/html`` in headless Chromium (Debian's ``chromium`` and
``chromium-driver``) through selenium. The pages are served from a local HTTP
server on the loopback address, and the browser resolves no other host name, so
a page that still needs a CDN shows a console error here instead of passing
because the test machine happens to be online. Skips with its reason when the
browser, its driver, selenium or the built book is missing (build it with
``make book``).
"""

from __future__ import annotations

import functools
import importlib.util
import http.server
import shutil
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
PAGES = ["intro.html", "chapters/10-mcu-inference.html", "chapters/12-on-device-training.html"]
LOAD_TIMEOUT = 60  # seconds for a page, its math and its images; generous for a busy two-core machine


def _missing() -> str | None:
    """Why the browser test cannot run here, or None."""
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install -r requirements.txt)"
    for exe in ("chromium", "chromedriver"):
        if shutil.which(exe) is None:
            return f"{exe} not found (Debian packages chromium and chromium-driver)"
    missing = [p for p in PAGES if not (HTML / p).is_file()]
    if missing:
        return f"the built book lacks {', '.join(missing)}: run `make book` first"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


@pytest.fixture(scope="module")
def server():
    """The built book served over HTTP on 127.0.0.1 (a free port), as a host would serve it."""
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium that logs the console and the network, and resolves no host but localhost."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    offline = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900",
                 offline):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    driver.set_page_load_timeout(LOAD_TIMEOUT)
    yield driver
    driver.quit()


# Every element Sphinx marks as math must hold MathJax's output; true once MathJax has typeset the page.
_MATH_DONE = """
const math = document.querySelectorAll('.math');
return math.length > 0 && Array.from(math).every(m => m.querySelector('mjx-container') !== null);
"""

_IMAGES = """
return Array.from(document.images).map(i => [i.currentSrc || i.src, i.complete, i.naturalWidth]);
"""


def _open(browser, url: str):
    """Load ``url`` and return the network requests it made, with the log emptied first."""
    browser.get_log("browser")
    browser.get_log("performance")
    browser.get(url)
    browser.execute_script("document.querySelectorAll('img[loading=lazy]').forEach(i => i.loading = 'eager');")


def _requested_hosts(browser) -> set[str]:
    import json

    hosts = set()
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            parts = urlsplit(message["params"]["request"]["url"])
            if parts.scheme in ("http", "https", "ws", "wss"):
                hosts.add(parts.hostname)
    return hosts


def _check_page(browser, server: str, page: str) -> None:
    """Math typeset, every image loaded, no console error, no host asked but the local server."""
    from selenium.webdriver.support.ui import WebDriverWait

    _open(browser, f"{server}/{page}")
    source = (HTML / page).read_text(encoding="utf-8")
    if 'class="math' in source:
        WebDriverWait(browser, LOAD_TIMEOUT).until(lambda d: d.execute_script(_MATH_DONE),
                                                   message=f"MathJax did not typeset the math of {page}")
        assert browser.execute_script("return document.querySelectorAll('mjx-merror').length") == 0, \
            f"MathJax reports a TeX error in {page}"
    WebDriverWait(browser, LOAD_TIMEOUT).until(
        lambda d: all(done for _, done, _ in d.execute_script(_IMAGES)),
        message=f"images of {page} did not finish loading")
    images = browser.execute_script(_IMAGES)
    broken = [src for src, _, width in images if width == 0]
    assert not broken, f"images that did not load in {page}: {broken}"
    severe = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, f"console errors in {page}: {severe}"
    outside = _requested_hosts(browser) - {"127.0.0.1", "localhost"}
    assert not outside, f"{page} asked hosts other than the book's own server: {sorted(outside)}"


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_offline(browser, server, page):
    _check_page(browser, server, page)


# Widget views drawn by the HTML manager: a .jupyter-widgets box holding a widget's own element.
_WIDGETS = """
const views = document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length;
const drawn = Array.from(document.querySelectorAll('.jupyter-widgets'))
  .filter(w => w.querySelector('[class*="widget-"]') !== null).length;
return [views, drawn];
"""


def test_lab_widgets_render_offline(browser, server):
    """The first lab page with saved widgets draws them from the book's own scripts."""
    from selenium.webdriver.support.ui import WebDriverWait

    labs = sorted(p for p in (HTML / "labs").glob("*.html")
                  if "application/vnd.jupyter.widget-view+json" in p.read_text(encoding="utf-8"))
    if not labs:
        pytest.skip("no built lab page shows widgets")
    page = labs[0].relative_to(HTML).as_posix()
    _check_page(browser, server, page)
    WebDriverWait(browser, LOAD_TIMEOUT).until(lambda d: d.execute_script(_WIDGETS)[1] >= 1,
                                               message=f"no widget of {page} was drawn")
    views, drawn = browser.execute_script(_WIDGETS)
    assert drawn >= views, f"{page}: {drawn} of {views} widgets drawn"
    severe = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, f"console errors in {page} while drawing its widgets: {severe}"


def test_chapter_pages_have_math_and_figures():
    """The chapters chosen above exercise what the test checks: typeset math and figures."""
    for page in PAGES[1:]:
        source = (HTML / page).read_text(encoding="utf-8")
        assert 'class="math' in source, f"{page} has no math to check"
        assert "<img" in source, f"{page} has no image to check"
