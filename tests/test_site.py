"""The course site: built by the command README.md gives, then read page by page in Chromium.

The build is README's command (``python -m sphinx -c book . _build/html``) into a temporary
folder, with ``-W``: a warning (a broken cross-reference, a missing file, a docstring
autodoc cannot read) fails it. Then every page is opened in
headless Chromium, served from 127.0.0.1, and must

- load its scripts, styles and fonts without an error in the console, and ask for nothing
  from another host (MathJax ships inside the site);
- have every equation typeset by MathJax: no ``\\(...\\)`` left unrendered, no MathJax
  error, no undefined macro, no ``$`` or ``\\command`` left in the text outside code;
- show every image, and on a notebook's page as many figures as the notebook's committed
  outputs hold;
- link only to pages and anchors of the site that exist.

Without the site extra or Chromium the tests skip; CI installs both and sets
``SRSAN_REQUIRE_SITE=1``, which makes them fail instead.
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from conftest import ROOT, skip_unless_required
from test_equations import equations

BUILD = ["-m", "sphinx", "-c", "book", "."]  # then the output folder, as README.md says
TOC = ROOT / "book" / "_toc.yml"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1280,1600"]


def toc_pages() -> list[str]:
    """Every page book/_toc.yml lists, in order, as paths without extension."""
    return re.findall(r"^\s*(?:root|-\s*file):\s*(\S+)", TOC.read_text(encoding="utf-8"), re.M)


def source_of(page: str) -> Path:
    for suffix in (".md", ".ipynb", ".rst"):
        if (ROOT / (page + suffix)).is_file():
            return ROOT / (page + suffix)
    raise FileNotFoundError(page)


def committed_figures(notebook: Path) -> int:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return sum(1 for cell in cells if cell["cell_type"] == "code"
               for out in cell.get("outputs", [])
               if {"image/png", "image/svg+xml", "image/jpeg"} & set(out.get("data", {})))


# --------------------------------------------------------------------------- the build

@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The built site's html folder."""
    if importlib.util.find_spec("myst_nb") is None:
        skip_unless_required('the site\'s tools are not installed: pip install ".[site]"')
    out = tmp_path_factory.mktemp("site") / "html"
    proc = subprocess.run([sys.executable, *BUILD, str(out), "-W", "--keep-going"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    log = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
    problems = [line for line in log.splitlines() if "WARNING" in line or "ERROR" in line]
    assert proc.returncode == 0 and not problems, "\n".join(problems) or log[-3000:]
    return out


def test_the_site_holds_the_toc_and_the_toc_every_doc_and_notebook(site):
    built = {p.relative_to(site).with_suffix("").as_posix() for p in site.rglob("*.html")}
    assert set(toc_pages()) <= built
    sources = {p.relative_to(ROOT).with_suffix("").as_posix()
               for p in [*ROOT.glob("notebooks/*.ipynb"), *ROOT.glob("docs/*.md")]}
    assert sources <= set(toc_pages()), "a notebook or doc missing from book/_toc.yml"


def test_each_derivation_links_to_its_module_and_back(site):
    """A derivations heading naming a module links to the module's entry, whose page
    links back to that heading."""
    page = (site / "docs" / "derivations.html").read_text(encoding="utf-8")
    headings = re.findall(r"<h[23]>(.*?)</h[23]>", page, re.S)
    linked = [h for h in headings if "srsan_np" in h or ".py" in h]
    assert len(linked) >= 12, linked
    for heading in linked:
        assert re.search(r'href="\.\./book/api/\w+\.html#module-srsan_np[\w.]*"', heading), heading
    ops = (site / "book" / "api" / "ops.html").read_text(encoding="utf-8")
    start = ops.index('<section id="srsan-np-ops-attention-py">')
    section = ops[start:ops.index("</section>", start)]
    assert 'id="module-srsan_np.ops.attention"' in section
    assert re.search(r'Explained in <a class="reference internal" href="\.\./\.\./docs/'
                     r'derivations\.html#[\w-]*multi-head-self-attention', section)
    assert '_modules/srsan_np/ops/attention.html' in section


# --------------------------------------------------------------------------- the browser

def chromium_and_driver() -> tuple[str, str]:
    binary = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        skip_unless_required("Chromium and chromedriver are not installed "
                             "(Debian: apt-get install chromium chromium-driver)")
    if importlib.util.find_spec("selenium") is None:
        skip_unless_required('selenium is not installed: pip install ".[site]"')
    return binary, driver


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser(site, tmp_path_factory):
    """``browser(path) -> report`` of one page of the site, opened in headless Chromium."""
    binary, driver_path = chromium_and_driver()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{server.server_port}"

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_script_timeout(60)
    driver.set_page_load_timeout(60)

    def report(path: str) -> dict:
        driver.get(f"{origin}/{path}")
        # a page may go on to another (index.html refreshes to the README): read the page
        # the browser ends on, once it has loaded, however long the machine takes
        WebDriverWait(driver, 120).until(lambda d: d.execute_script(
            "return document.readyState === 'complete'"
            " && !document.querySelector('meta[http-equiv=Refresh]')"))
        page = driver.execute_async_script(PAGE_REPORT)
        page["console"] = [entry["message"] for entry in driver.get_log("browser")
                           if entry["level"] == "SEVERE"]
        page["origin"] = origin
        return page

    yield report
    driver.quit()
    server.shutdown()


# Run in the page once MathJax has typeset it: what a reader would see wrong.
PAGE_REPORT = r"""
const done = arguments[arguments.length - 1];
const typeset = window.MathJax && MathJax.startup ? MathJax.startup.promise : Promise.resolve();
typeset.then(() => {
  const skip = "code, pre, script, style, mjx-container, .math, textarea, .highlight";
  const raw = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (!node.parentElement || node.parentElement.closest(skip)) continue;
    const m = node.textContent.match(/\$|\\[A-Za-z]+|\\[(\[]/);
    if (m) raw.push(node.textContent.trim().slice(0, 120));
  }
  const math = [...document.querySelectorAll("span.math, div.math")];
  done({
    title: document.title,
    ready: document.readyState,
    math: math.length,
    typeset: document.querySelectorAll("mjx-container").length,
    unrendered: math.filter((e) => !e.querySelector("mjx-container"))
                    .map((e) => e.textContent.slice(0, 120)),
    errors: [...document.querySelectorAll("mjx-merror, mjx-container [style*='color: red']")]
              .map((e) => e.textContent.slice(0, 120)),
    raw: raw,
    broken_images: [...document.images].filter((i) => !i.complete || i.naturalWidth === 0)
                     .map((i) => i.src),
    figures: [...document.querySelectorAll(".cell_output img")]
               .filter((i) => i.naturalWidth > 0).length,
    links: [...document.querySelectorAll("a[href]")].map((a) => a.href),
    resources: performance.getEntriesByType("resource").map((r) => r.name),
  });
});
"""


@functools.lru_cache(maxsize=None)
def anchors(file: Path) -> frozenset[str]:
    html = file.read_text(encoding="utf-8", errors="replace")
    return frozenset(re.findall(r'\b(?:id|name)="([^"]+)"', html))


def check_page(site: Path, path: str, page: dict) -> list[str]:
    """Everything wrong with one page, as sentences."""
    origin = page["origin"]
    found = []
    if page["ready"] != "complete" or not page["title"]:
        found.append(f"did not load (readyState {page['ready']}, title {page['title']!r})")
    found += [f"console: {message}" for message in page["console"]
              if "favicon.ico" not in message]
    found += [f"asked another host for {url}" for url in page["resources"]
              if not url.startswith(origin)]
    found += [f"equation left unrendered: {t}" for t in page["unrendered"]]
    found += [f"equation in error: {t}" for t in page["errors"]]
    found += [f"raw TeX in the text: {t}" for t in page["raw"]]
    if page["math"] and page["typeset"] < page["math"]:
        found.append(f"{page['typeset']} of {page['math']} equations typeset")
    found += [f"image not shown: {src}" for src in page["broken_images"]]
    for url in page["links"]:
        if not url.startswith(origin + "/"):
            continue
        parts = urlsplit(url)
        target = site / unquote(parts.path).lstrip("/")
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            found.append(f"broken link: {url[len(origin):]}")
        elif parts.fragment and target.suffix == ".html" \
                and unquote(parts.fragment) not in anchors(target):
            found.append(f"link to a missing anchor: {url[len(origin):]}")
    return found


@pytest.mark.parametrize("page", toc_pages())
def test_every_page_of_the_course_reads_whole(site, browser, page):
    report = browser(page + ".html")
    problems = check_page(site, page, report)
    source = source_of(page)
    if source.suffix == ".ipynb":
        expected = committed_figures(source)
        if report["figures"] < expected:
            problems.append(f"{report['figures']} figures shown, the notebook holds {expected}")
    if source.suffix in (".md", ".ipynb") and equations(source) and not report["typeset"]:
        problems.append("the source has equations, the page none")
    assert not problems, "\n".join(problems)


def test_every_other_page_reads_whole(site, browser):
    """The highlighted sources, the indexes and the search page."""
    listed = {page + ".html" for page in toc_pages()}
    others = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html")
                    if not p.relative_to(site).as_posix().startswith(("_static/", "_sources/"))
                    and p.relative_to(site).as_posix() not in listed)
    assert any(p.startswith("_modules/srsan_np/ops/") for p in others), others
    problems = [f"{path}: {problem}" for path in others
                for problem in check_page(site, path, browser(path))]
    assert not problems, "\n".join(problems)
