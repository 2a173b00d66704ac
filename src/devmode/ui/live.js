// Live tail: spans as they arrive, newest on top, from the /api/live server-sent events.
// The list is an ARIA log (announced politely); pausing keeps the stream open but holds new
// spans back so the list stops moving while you read it.

import * as api from "./api.js";
import { h, replace, fmtCount, fmtDuration, fmtTime, serviceColor, announce, traceIdText } from "./dom.js";

const KEEP = 500;

/** Renders the live tail into `main`; returns the cleanup that closes the stream. */
export async function render(main) {
  let paused = false;
  let held = [];
  let received = 0;
  let filter = "";

  const state = h("span", { class: "conn", id: "live-state" }, "connecting…");
  const counter = h("span", { id: "live-count" }, "0 spans");
  const pause = h("button", { type: "button", "aria-pressed": "false" }, "Pause");
  const clear = h("button", { type: "button" }, "Clear");
  const filterInput = h("input", { id: "live-filter", type: "search", placeholder: "service or operation", autocomplete: "off" });
  const log = h("ol", { class: "live-log", role: "log", "aria-label": "Spans as they arrive, newest first", "aria-live": "polite", "aria-relevant": "additions" });
  const empty = h("p", { class: "hint", id: "live-empty" }, "Waiting for spans… send some to the ingest port and they appear here.");

  const matches = (s) => !filter || `${s.service} ${s.operation}`.toLowerCase().includes(filter);
  const entry = (s) => {
    const href = s.trace_id ? `#/trace/${s.trace_id}${s.span_id ? `?span=${s.span_id}` : ""}` : null;
    return h("li", { class: s.error ? "error" : "", dataset: { service: s.service || "", traceId: s.trace_id || "" } },
      h("span", { class: "when" }, fmtTime(s.start_us)),
      h("span", { class: "swatch", style: { background: serviceColor(s.service) }, "aria-hidden": "true" }),
      h("span", { class: "svc" }, s.service || "?"),
      href ? h("a", { href, class: "op" }, s.operation || "?") : h("span", { class: "op" }, s.operation || "?"),
      h("span", { class: "dur" }, fmtDuration(s.duration_us)),
      s.error ? h("span", { class: "err-badge" }, "error") : null,
      h("span", { class: "mono ids", title: s.trace_id || "" }, s.trace_id ? traceIdText(s.trace_id) : ""));
  };
  const add = (spans) => {
    const shown = spans.filter(matches);
    if (!shown.length) return;
    empty.hidden = true;
    const frag = document.createDocumentFragment();
    for (const s of shown.reverse()) frag.appendChild(entry(s));
    log.prepend(frag);
    while (log.childElementCount > KEEP) log.lastElementChild.remove();
  };
  // Batch DOM work per animation frame: a busy service can send thousands of spans a second.
  let pending = [];
  let frame = 0;
  const onSpan = (s) => {
    received += 1;
    if (paused) {
      held.push(s);
      if (held.length > KEEP) held = held.slice(-KEEP);
    } else {
      pending.push(s);
    }
    if (!frame) {
      frame = requestAnimationFrame(() => {
        frame = 0;
        add(pending);
        pending = [];
        counter.textContent = `${fmtCount(received)} span${received === 1 ? "" : "s"}${paused ? ` (${fmtCount(held.length)} held while paused)` : ""}`;
      });
    }
  };
  const onLagged = (skipped) => {
    counter.textContent = `${fmtCount(received)} spans (${fmtCount(skipped)} skipped: the page fell behind)`;
  };
  const source = api.live(onSpan, onLagged, (st) => {
    state.textContent = st === "open" ? "connected" : st === "closed" ? "disconnected" : "reconnecting…";
    state.dataset.state = st;
  });

  pause.addEventListener("click", () => {
    paused = !paused;
    pause.setAttribute("aria-pressed", String(paused));
    pause.textContent = paused ? "Resume" : "Pause";
    if (!paused) {
      add(held);
      held = [];
    }
    announce(paused ? "Live tail paused" : "Live tail resumed");
  });
  clear.addEventListener("click", () => {
    log.replaceChildren();
    empty.hidden = false;
  });
  filterInput.addEventListener("input", () => {
    filter = filterInput.value.trim().toLowerCase();
    for (const li of log.children) {
      li.hidden = !!filter && !li.textContent.toLowerCase().includes(filter);
    }
  });

  replace(main,
    h("h1", {}, "Live tail"),
    h("div", { class: "live-controls", role: "toolbar", "aria-label": "Live tail controls" },
      h("span", { class: "status-line" }, state, " · ", counter),
      h("label", { for: "live-filter" }, "Filter"), filterInput, pause, clear),
    empty, log);
  return () => {
    source.close();
    if (frame) cancelAnimationFrame(frame);
  };
}
