"""The browser set-up shared by check_ui.py and check_scale.py: headless Chromium (Debian's
system binary, via Playwright; nothing is downloaded) with one page that records console errors
and uncaught exceptions, the "RESULT <json>" line that ends every run, and page helpers both
scripts use.
"""

import json
import sys
from contextlib import contextmanager

from playwright.sync_api import sync_playwright


def read_config():
    """The run's configuration: the JSON object given as the only argument."""
    return json.loads(sys.argv[1])


@contextmanager
def browser_page(chromium, width, height, timeout_ms):
    """Yields (page, out): a page of `width` x `height` in headless Chromium at `chromium`, its
    waits failing after `timeout_ms`, and the dict the run reports, whose "console_errors"
    collects every console error and uncaught exception of the page."""
    out = {"console_errors": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": width, "height": height})
        page.set_default_timeout(timeout_ms)
        page.on(
            "console",
            lambda m: out["console_errors"].append(m.text) if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: out["console_errors"].append(f"uncaught: {e}"))
        yield page, out
        browser.close()


def report(out):
    """The last stdout line: everything observed, for the Rust test to assert on."""
    print("RESULT " + json.dumps(out), flush=True)


# The chart's box and each percentile label's box in the Explorer histogram, with whether the
# label lies inside the chart and which labels it covers.
LABEL_BOXES = """area => {
  const box = (el) => { const b = el.getBoundingClientRect(); return {left: b.left, right: b.right, top: b.top, bottom: b.bottom}; };
  const chart = box(area);
  const labels = [...area.querySelectorAll('.pline span')].map((s) => ({text: s.textContent, ...box(s)}));
  const within = (l) => l.left >= chart.left - 0.5 && l.right <= chart.right + 0.5
    && l.top >= chart.top - 0.5 && l.bottom <= chart.bottom + 0.5;
  const cover = (a, b) => a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5;
  return {chart, labels: labels.map((l) => ({...l, inside: within(l),
    covers: labels.filter((o) => o !== l && cover(l, o)).map((o) => o.text)}))};
}"""


def percentile_labels(page):
    """The Explorer histogram's percentile labels once placed (LABEL_BOXES)."""
    page.wait_for_selector(".histogram-area[data-labels-placed]")
    # One frame for a resize to be observed and the labels placed again.
    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
    return page.eval_on_selector(".histogram-area", LABEL_BOXES)
