"""Drives cubesat's developer-mode UI in a real headless Chromium (Debian's system binary, via
Playwright; nothing is downloaded) and reports what the pages show, for tests/devmode_ui.rs.

Usage: check_ui.py CONFIG_JSON
  CONFIG_JSON: {"base": "http://127.0.0.1:PORT", "chromium": "/usr/bin/chromium",
                "screenshots": "DIR", "trace_id": "<hex>", "tag_service": "ratings"}

Walks the screens the way a person would (query bar, clicks, keyboard), saves screenshots of
the service directory, explorer, trace view and service diagram into DIR, then opens the live
tail, prints "LIVE_READY" and waits for a line on stdin (the test sends more spans meanwhile).
The last stdout line is "RESULT <json>" with everything observed; assertions are the Rust
test's job. A page that never shows what is waited for fails here with the screen named.
"""

import sys

from devmode_browser import browser_page, percentile_labels, read_config, report

TIMEOUT_MS = 15000


def rows(page, selector, script):
    return page.eval_on_selector_all(selector, script)


# Controls a screen reader could not name, images without alt text, and missing landmarks.
A11Y_PROBLEMS = """() => {
  const problems = [];
  const named = (el) => (el.labels && el.labels.length) || el.getAttribute('aria-label')
    || el.getAttribute('aria-labelledby') || el.textContent.trim() || el.getAttribute('title');
  for (const el of document.querySelectorAll('input, select, textarea, button, a[href], [tabindex="0"]')) {
    if (el.closest('[hidden]')) continue;
    if (!named(el)) problems.push(`unnamed ${el.tagName.toLowerCase()} ${el.outerHTML.slice(0, 80)}`);
  }
  for (const img of document.querySelectorAll('img:not([alt])')) problems.push(`img without alt ${img.src}`);
  for (const sel of ['header', 'nav', 'main', 'h1']) {
    if (!document.querySelector(sel)) problems.push(`no ${sel}`);
  }
  return problems;
}"""


def a11y(page, out, screen):
    out.setdefault("a11y", {})[screen] = page.evaluate(A11Y_PROBLEMS)


def main() -> int:
    config = read_config()
    base = config["base"].rstrip("/")
    shots = config["screenshots"]
    with browser_page(config["chromium"], 1360, 860, TIMEOUT_MS) as (page, out):
        # The pages' pure functions, imported as the page imports them (evaluated through the
        # DevTools protocol, which the page's CSP does not restrict).
        page.goto(f"{base}/")
        out["units"] = page.evaluate(
            """async () => {
              const t = await import('/ui/trace.js');
              const e = await import('/ui/explore.js');
              const d = await import('/ui/diagram.js');
              const s = (id, parent, start, end) =>
                ({span_id: id, parent_span_id: parent, start_us: start, duration_us: end - start});
              const crit = (spans) => t.criticalPath(t.buildTree(spans).roots)
                .map(g => [g.id, g.start, g.end]);
              const order = (spans) => t.buildTree(spans).order.map(n => [n.span.span_id, n.depth]);
              return {
                // Overlapping children: the last to finish wins, the other is clipped.
                critical_overlap: crit([s('a', null, 0, 100), s('b', 'a', 10, 40),
                                        s('c', 'a', 30, 90), s('d', 'c', 35, 60)]),
                // A child running past its parent's end counts only up to that end.
                critical_overrun: crit([s('a', null, 0, 50), s('b', 'a', 20, 70)]),
                // Missing parents make roots; a parent cycle neither loops nor loses spans.
                order_orphan: order([s('x', 'gone', 5, 6), s('r', null, 0, 9), s('k', 'r', 1, 2)]),
                order_cycle: order([s('p', 'q', 0, 1), s('q', 'p', 0, 1)]),
                durations: ['250us', '12ms', '1.5s', '2m', '7', ' 3 ms ', 'x', '-1ms', '']
                  .map(e.parseDuration).map(v => Number.isNaN(v) ? 'NaN' : v),
                kinds: ['SPAN_KIND_SERVER', 'client', 2, 9, null].map(t.kindName),
                layers: Object.fromEntries(d.layers(['a', 'b', 'c', 'z'],
                  [{parent: 'a', child: 'b'}, {parent: 'b', child: 'c'}, {parent: 'c', child: 'a'},
                   {parent: 'a', child: 'c'}])),
              };
            }"""
        )

        # Service directory: every service, then its operations by keyboard (Enter on a row).
        page.goto(f"{base}/#/services")
        page.wait_for_selector("#service-directory tbody tr")
        out["directory"] = rows(
            page, "#service-directory tbody tr",
            "rs => rs.map(r => ({service: r.dataset.service, cells: [...r.cells].map(c => c.innerText.trim())}))",
        )
        # Sorting by a column header (a button; the header says how it is sorted).
        page.click('#service-directory thead button.sort:has-text("Spans")')
        page.wait_for_url(lambda url: "sort=spans" in url)
        page.wait_for_selector("#service-directory tbody tr")
        out["sorted_by_spans"] = {
            "services": rows(page, "#service-directory tbody tr", "rs => rs.map(r => r.dataset.service)"),
            "aria_sort": page.eval_on_selector(
                '#service-directory thead th:has(button:has-text("Spans"))', "th => th.getAttribute('aria-sort')"
            ),
        }
        page.focus('#service-directory tbody tr[data-service="reviews"]')
        page.keyboard.press("Enter")
        page.wait_for_selector(".operations-table tbody tr")
        out["operations_of_reviews"] = rows(
            page, ".operations-table tbody tr", "rs => rs.map(r => r.dataset.operation)"
        )
        page.screenshot(path=f"{shots}/devmode-services.png", full_page=True)
        a11y(page, out, "services")

        # Explorer: the query bar, service=reviews.
        page.click('nav a[data-route="explore"]')
        page.wait_for_selector("#q-service")
        page.select_option("#q-service", "reviews")
        page.click(".query-bar button[type=submit]")
        page.wait_for_url(lambda url: "service=reviews" in url)
        page.wait_for_selector("table.traces tbody tr, #traces-empty")
        page.wait_for_selector("#histogram-count")
        out["explorer"] = {
            "hash": page.evaluate("location.hash"),
            "trace_ids": rows(page, "table.traces tbody tr", "rs => rs.map(r => r.dataset.traceId)"),
            "histogram_spans": int(page.get_attribute("#histogram-count", "data-spans")),
            "histogram_text": page.inner_text("#histogram-count"),
            "bars": rows(
                page, ".histogram .bar",
                "bs => bs.map(b => ({lo: +b.dataset.lo, hi: +b.dataset.hi, count: +b.dataset.count}))",
            ),
        }
        out["explorer"]["percentile_labels"] = percentile_labels(page)
        # A narrow window: the p99 line near the right edge has no room for its label there.
        page.set_viewport_size({"width": 560, "height": 860})
        out["explorer"]["percentile_labels_narrow"] = percentile_labels(page)
        page.set_viewport_size({"width": 1360, "height": 860})
        page.screenshot(path=f"{shots}/devmode-explorer.png", full_page=True)
        a11y(page, out, "explorer")

        # Clicking the slowest non-empty bucket narrows the table to that latency range.
        page.click(".histogram .bar:not(.zero) >> nth=-1")
        page.wait_for_selector(".traces-panel .selection")
        page.wait_for_selector("table.traces tbody tr, #traces-empty")
        out["narrowed"] = {
            "hash": page.evaluate("location.hash"),
            "selected_bars": rows(
                page, ".histogram .bar[aria-pressed=true]",
                "bs => bs.map(b => ({lo: +b.dataset.lo, hi: +b.dataset.hi}))",
            ),
            "trace_ids": rows(page, "table.traces tbody tr", "rs => rs.map(r => r.dataset.traceId)"),
        }
        page.click(".traces-panel .selection button")
        page.wait_for_url(lambda url: "sel_lo" not in url)
        page.wait_for_selector("table.traces tbody tr")

        # Trace view: open the wanted trace from the table, then a span's details by click.
        trace_id = config["trace_id"]
        page.click(f'table.traces tbody tr[data-trace-id="{trace_id}"] th a')
        page.wait_for_selector(".waterfall .span-row")
        out["trace"] = {
            "hash": page.evaluate("location.hash"),
            "trace_id_shown": page.inner_text("#trace-id"),
            "rows": rows(
                page, ".waterfall .span-row",
                """rs => rs.map(r => ({span_id: r.dataset.spanId, parent: r.dataset.parentSpanId || null,
                      level: +r.getAttribute('aria-level'), service: r.dataset.service,
                      operation: r.dataset.operation, error: r.classList.contains('error'),
                      on_path: r.classList.contains('on-path'), visible: r.offsetParent !== null,
                      bar_width: r.querySelector('.timeline .bar').getBoundingClientRect().width}))""",
            ),
        }
        tag_service = config["tag_service"]
        page.click(f'.waterfall .span-row[data-service="{tag_service}"][aria-level] .label')
        page.wait_for_selector("#span-tags tbody tr")
        out["span_detail"] = {
            "heading": page.inner_text("#detail-heading"),
            "span_id": page.inner_text(".span-fields .span-id"),
            "tags": dict(
                rows(page, "#span-tags tbody tr", "rs => rs.map(r => [r.cells[0].innerText, r.cells[1].innerText])")
            ),
            "logs": rows(page, ".logs li", "ls => ls.map(l => l.innerText)"),
        }
        page.screenshot(path=f"{shots}/devmode-trace.png", full_page=True)
        a11y(page, out, "trace")

        # Find in trace: a tag value only the failing span has; Enter selects it.
        page.click(".waterfall .span-row[aria-level='1'] .label")
        page.fill("#find-span", "503")
        page.press("#find-span", "Enter")
        out["find"] = {
            "count": page.inner_text("#find-count"),
            "matches": rows(page, ".waterfall .span-row.match", "rs => rs.map(r => r.dataset.spanId)"),
            "selected": rows(
                page, ".waterfall .span-row[aria-selected=true]", "rs => rs.map(r => r.dataset.spanId)"
            ),
        }
        page.fill("#find-span", "")

        # Keyboard in the waterfall: Home, then Left on the root collapses the whole tree.
        page.focus(".waterfall .span-row[aria-level='1']")
        page.keyboard.press("ArrowLeft")
        out["collapsed_visible_rows"] = page.eval_on_selector_all(
            ".waterfall .span-row", "rs => rs.filter(r => !r.hidden).length"
        )
        page.keyboard.press("ArrowRight")

        # Service diagram.
        page.click('nav a[data-route="diagram"]')
        page.wait_for_selector("svg.diagram .node")
        out["diagram"] = {
            "nodes": rows(page, "svg.diagram .node", "ns => ns.map(n => n.dataset.service)"),
            "edges": rows(
                page, "table.edges tbody tr",
                "rs => rs.map(r => [r.cells[0].innerText, r.cells[1].innerText, +r.cells[2].innerText.replace(/,/g, '')])",
            ),
        }
        page.screenshot(path=f"{shots}/devmode-diagram.png", full_page=True)
        a11y(page, out, "diagram")

        # Live tail: the test sends more spans once the stream is open.
        page.click('nav a[data-route="live"]')
        page.wait_for_selector('#live-state[data-state="open"]')
        print("LIVE_READY", flush=True)
        want = int(sys.stdin.readline().strip() or "0")
        # (A selector, not a JS predicate: the page's CSP forbids the eval Playwright would use.)
        if want:
            page.wait_for_selector(f".live-log li:nth-child({want})")
        out["live"] = rows(
            page, ".live-log li",
            "ls => ls.map(l => ({service: l.dataset.service, trace_id: l.dataset.traceId}))",
        )
        out["live_log_role"] = page.get_attribute(".live-log", "role")
        a11y(page, out, "live")
        page.click('nav a[data-route="status"]')
        page.wait_for_selector("#status-received")
        a11y(page, out, "status")
    report(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
