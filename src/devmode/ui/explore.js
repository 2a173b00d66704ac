// Explorer: a query bar (service, operation, tags, duration, errors, time window), the latency
// histogram of the matching spans on a log-scale axis with p50/p95/p99 lines (clicking a bucket
// narrows the trace table to that range), a duration scatter plot of the traces found and a
// sortable table of them, newest first; a line says how far back the store reaches and how
// much it has evicted. After Lightstep's Explorer.
//
// Everything the screen shows is in the hash (#/explore?service=..&tag=k=v&sel_lo=..), so a
// query can be bookmarked, shared and navigated with Back.

import * as api from "./api.js";
import { toQuery } from "./api.js";
import { h, replace, table, linkRow, fmtCount, fmtDuration, fmtTime, serviceColor, announce, traceIdText } from "./dom.js";

const BUCKETS = 40;
const WINDOWS = [
  ["", "All time"],
  ["5m", "Last 5 minutes"],
  ["15m", "Last 15 minutes"],
  ["1h", "Last hour"],
  ["6h", "Last 6 hours"],
];
const LIMITS = ["20", "50", "100", "500"];

/** Parses "250us", "12ms", "1.5s", "2m" or a bare number of milliseconds into microseconds. */
export function parseDuration(text) {
  const t = text.trim();
  if (!t) return null;
  const m = /^(\d+(?:\.\d+)?)\s*(us|µs|ms|s|m)?$/i.exec(t);
  if (!m) return NaN;
  const scale = { us: 1, "µs": 1, ms: 1e3, s: 1e6, m: 60e6 }[(m[2] || "ms").toLowerCase()];
  return Math.round(parseFloat(m[1]) * scale);
}

function windowUs(w) {
  const m = /^(\d+)([mh])$/.exec(w || "");
  return m ? Number(m[1]) * (m[2] === "h" ? 3600e6 : 60e6) : null;
}

/**
 * Splits the tags box into key=value filters: on commas that start a new `key=` (so a value
 * may hold commas, as in `db.statement=SELECT a, b FROM t`) and on new lines.
 */
export function splitTags(text) {
  return text.split(/\n|,\s*(?=[^=,\s]+=)/).map((t) => t.trim()).filter(Boolean);
}

/** The server filters of a hash query (without the histogram selection). */
function filtersOf(params) {
  const f = {
    service: params.get("service") || "",
    operation: params.get("operation") || "",
    tag: params.getAll("tag").filter(Boolean),
    min_duration_us: params.get("min_duration_us") || "",
    max_duration_us: params.get("max_duration_us") || "",
    errors: params.get("errors") === "true" ? "true" : "",
  };
  const w = windowUs(params.get("window"));
  if (w) f.start_us = Math.floor(Date.now() * 1000 - w);
  return f;
}

/** Renders the explorer into `main`. */
export async function render(main, { params, signal }) {
  const filters = filtersOf(params);
  const selLo = params.get("sel_lo");
  const selHi = params.get("sel_hi");
  const limit = params.get("limit") || "20";

  const { services } = await api.services();
  if (signal.aborted) return;
  const form = await queryBar(params, services.map((s) => s.name).sort(), signal);
  if (signal.aborted) return;

  const histogramSection = h("section", { class: "histogram-panel", "aria-labelledby": "hist-heading" },
    h("h2", { id: "hist-heading" }, "Latency of matching spans"), h("p", { class: "loading" }, "Loading…"));
  const tracesSection = h("section", { class: "traces-panel", "aria-labelledby": "traces-heading" },
    h("h2", { id: "traces-heading" }, "Example traces"), h("p", { class: "loading" }, "Loading…"));
  const reach = h("p", { class: "hint store-reach", id: "store-reach" });
  replace(main, h("h1", {}, "Explorer"), form, reach, histogramSection, tracesSection);

  const traceFilters = { ...filters, limit };
  if (selLo !== null && selLo !== "") {
    traceFilters.min_duration_us = String(Math.max(Number(selLo), Number(filters.min_duration_us || 0)));
  }
  if (selHi !== null && selHi !== "") {
    const hi = Number(selHi);
    traceFilters.max_duration_us = String(filters.max_duration_us ? Math.min(hi, Number(filters.max_duration_us)) : hi);
  }

  const [lat, tr] = await Promise.allSettled([api.latency(filters, BUCKETS), api.traces(traceFilters)]);
  if (signal.aborted) return;
  if (lat.status === "fulfilled") {
    renderHistogram(histogramSection, lat.value, params, selLo, selHi);
  } else {
    replace(histogramSection, h("h2", { id: "hist-heading" }, "Latency of matching spans"),
      h("p", { class: "error", role: "alert" }, lat.reason.message));
  }
  if (tr.status === "fulfilled") {
    renderReach(reach, tr.value.store);
    renderTraces(tracesSection, tr.value.traces, params, selLo, selHi, limit);
  } else {
    replace(tracesSection, h("h2", { id: "traces-heading" }, "Example traces"),
      h("p", { class: "error", role: "alert" }, tr.reason.message));
  }
}

/** Navigates to the explorer with `params`; re-runs the query when the hash is unchanged. */
function navigate(params) {
  const hash = `#/explore?${params.toString()}`;
  if (location.hash === hash) window.dispatchEvent(new HashChangeEvent("hashchange"));
  else location.hash = hash;
}

async function queryBar(params, serviceNames, signal) {
  const service = params.get("service") || "";
  const field = (id, label, control, hint) =>
    h("div", { class: "field" }, h("label", { for: id }, label), control,
      hint ? h("small", { id: `${id}-hint`, class: "hint" }, hint) : null);

  const serviceSel = h("select", { id: "q-service", name: "service" },
    h("option", { value: "" }, "All services"),
    serviceNames.map((n) => h("option", { value: n, selected: n === service }, n)));
  if (service && !serviceNames.includes(service)) {
    serviceSel.appendChild(h("option", { value: service, selected: true }, `${service} (no spans)`));
  }
  const opSel = h("select", { id: "q-operation", name: "operation" });
  const fillOperations = async (svc, chosen) => {
    replace(opSel, h("option", { value: "" }, "All operations"));
    opSel.disabled = !svc;
    if (!svc) return;
    try {
      const { operations } = await api.operations(svc);
      for (const op of operations.map((o) => o.name).sort()) {
        opSel.appendChild(h("option", { value: op, selected: op === chosen }, op));
      }
    } catch {
      // An unknown service has no operations; the server will say so when the query runs.
    }
    if (chosen && opSel.value !== chosen) opSel.appendChild(h("option", { value: chosen, selected: true }, chosen));
  };
  await fillOperations(service, params.get("operation") || "");
  if (signal.aborted) return h("form");
  serviceSel.addEventListener("change", () => fillOperations(serviceSel.value, ""));

  const tags = h("input", {
    id: "q-tags", name: "tags", type: "text", value: params.getAll("tag").join(", "),
    placeholder: "http.status_code=500, error=true", "aria-describedby": "q-tags-hint", autocomplete: "off",
  });
  // Back into the same units parseDuration reads, exactly (no rounding).
  const usText = (v) => {
    const us = Number(v);
    if (!v || Number.isNaN(us)) return "";
    return us % 1e6 === 0 ? `${us / 1e6}s` : us % 1000 === 0 ? `${us / 1000}ms` : `${us}us`;
  };
  const minD = h("input", { id: "q-min", name: "min", type: "text", value: usText(params.get("min_duration_us")), placeholder: "e.g. 10ms", "aria-describedby": "q-dur-hint", size: 8 });
  const maxD = h("input", { id: "q-max", name: "max", type: "text", value: usText(params.get("max_duration_us")), placeholder: "e.g. 2s", "aria-describedby": "q-dur-hint", size: 8 });
  const errors = h("input", { id: "q-errors", name: "errors", type: "checkbox", checked: params.get("errors") === "true" });
  const windowSel = h("select", { id: "q-window", name: "window" },
    WINDOWS.map(([v, label]) => h("option", { value: v, selected: (params.get("window") || "") === v }, label)));
  const limitSel = h("select", { id: "q-limit", name: "limit" },
    LIMITS.map((v) => h("option", { value: v, selected: (params.get("limit") || "20") === v }, v)));
  const problem = h("p", { class: "error", role: "alert", id: "q-problem" });

  const form = h("form", { class: "query-bar", role: "search", "aria-label": "Trace query" },
    field("q-service", "Service", serviceSel),
    field("q-operation", "Operation", opSel),
    field("q-tags", "Tags", tags, "key=value, comma-separated (values may hold commas); all must match"),
    h("fieldset", { class: "field durations" },
      h("legend", {}, "Span duration"),
      h("label", { for: "q-min", class: "visually-hidden" }, "Minimum duration"), minD,
      h("span", { "aria-hidden": "true" }, "–"),
      h("label", { for: "q-max", class: "visually-hidden" }, "Maximum duration"), maxD,
      h("small", { id: "q-dur-hint", class: "hint" }, "us, ms, s or m; a bare number is ms")),
    field("q-window", "Time", windowSel),
    field("q-limit", "Traces", limitSel),
    h("div", { class: "field check" }, errors, h("label", { for: "q-errors" }, "Errors only")),
    h("div", { class: "field actions" },
      h("button", { type: "submit", class: "primary" }, "Run query"),
      h("button", { type: "button", class: "link", onclick: () => navigate(new URLSearchParams()) }, "Clear")),
    problem);

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const next = new URLSearchParams();
    const set = (k, v) => v && next.set(k, v);
    set("service", serviceSel.value);
    set("operation", serviceSel.value ? opSel.value : "");
    const tagList = splitTags(tags.value);
    const bad = tagList.find((t) => !/^[^=]+=.*$/.test(t));
    const min = parseDuration(minD.value);
    const max = parseDuration(maxD.value);
    for (const el of [tags, minD, maxD]) el.removeAttribute("aria-invalid");
    let message = "";
    if (bad) {
      message = `Tag "${bad}" is not key=value.`;
      tags.setAttribute("aria-invalid", "true");
    } else if (Number.isNaN(min)) {
      message = `Minimum duration "${minD.value}" is not a duration like 10ms.`;
      minD.setAttribute("aria-invalid", "true");
    } else if (Number.isNaN(max)) {
      message = `Maximum duration "${maxD.value}" is not a duration like 2s.`;
      maxD.setAttribute("aria-invalid", "true");
    } else if (min !== null && max !== null && min > max) {
      message = "The minimum duration is above the maximum.";
      minD.setAttribute("aria-invalid", "true");
    }
    if (message) {
      problem.textContent = message;
      return;
    }
    for (const t of tagList) next.append("tag", t);
    if (min !== null) next.set("min_duration_us", String(min));
    if (max !== null) next.set("max_duration_us", String(max));
    if (errors.checked) next.set("errors", "true");
    set("window", windowSel.value);
    if (limitSel.value !== "20") next.set("limit", limitSel.value);
    navigate(next);
  });
  return form;
}

function renderHistogram(section, { spans, scale, buckets, p50_us, p95_us, p99_us }, params, selLo, selHi) {
  const heading = h("h2", { id: "hist-heading" }, "Latency of matching spans");
  const count = h("p", { class: "hist-count" },
    h("span", { id: "histogram-count", dataset: { spans: String(spans) } },
      h("strong", {}, fmtCount(spans)), ` matching span${spans === 1 ? "" : "s"}`),
    spans && p50_us !== undefined && p50_us !== null
      ? h("span", { class: "percentiles" },
        ` · p50 ${fmtDuration(p50_us)} · p95 ${fmtDuration(p95_us)} · p99 ${fmtDuration(p99_us)}`)
      : null);
  if (!spans || !buckets.length) {
    replace(section, heading, count, h("p", { class: "hint" }, "No spans match this query."));
    return;
  }
  const max = Math.max(...buckets.map((b) => b.count));
  const lo = selLo !== null && selLo !== "" ? Number(selLo) : null;
  const hi = selHi !== null && selHi !== "" ? Number(selHi) : null;
  const inSel = (b) => lo !== null && hi !== null && b.lo_us >= lo && b.hi_us <= hi;

  const select = (b, extend) => {
    const next = new URLSearchParams(params);
    if (inSel(b) && !extend && lo === b.lo_us && hi === b.hi_us) {
      next.delete("sel_lo");
      next.delete("sel_hi");
    } else if (extend && lo !== null && hi !== null) {
      next.set("sel_lo", String(Math.min(lo, b.lo_us)));
      next.set("sel_hi", String(Math.max(hi, b.hi_us)));
    } else {
      next.set("sel_lo", String(b.lo_us));
      next.set("sel_hi", String(b.hi_us));
    }
    navigate(next);
  };
  const bars = buckets.map((b, i) => {
    const label = `${fmtCount(b.count)} span${b.count === 1 ? "" : "s"} between ${fmtDuration(b.lo_us)} and ${fmtDuration(b.hi_us)}`;
    const bar = h("button", {
      type: "button", class: `bar ${inSel(b) ? "selected" : ""} ${b.count ? "" : "zero"}`,
      "aria-pressed": inSel(b) ? "true" : "false", "aria-label": label, title: label,
      dataset: { count: String(b.count), lo: String(b.lo_us), hi: String(b.hi_us), index: String(i) },
      onclick: (e) => select(b, e.shiftKey),
    }, h("span", { class: "fill", style: { height: `${b.count ? Math.max(2, (100 * b.count) / max) : 0}%` } }));
    bar.addEventListener("keydown", (e) => {
      const to = e.key === "ArrowRight" ? bar.nextElementSibling : e.key === "ArrowLeft" ? bar.previousElementSibling : null;
      if (to) {
        e.preventDefault();
        to.focus();
      }
    });
    return bar;
  });
  // Percentile lines, placed inside their bucket on the same (log) scale the buckets use.
  const at = (us) => {
    const i = buckets.findIndex((b) => us >= b.lo_us && us <= b.hi_us);
    if (i < 0) return null;
    const b = buckets[i];
    const span = Math.log(b.hi_us + 1) - Math.log(Math.max(1, b.lo_us));
    const f = span > 0 ? (Math.log(us + 0.5) - Math.log(Math.max(1, b.lo_us))) / span : 0.5;
    return ((i + Math.min(1, Math.max(0, f))) / buckets.length) * 100;
  };
  const lines = [["p50", p50_us], ["p95", p95_us], ["p99", p99_us]]
    .map(([name, us]) => [name, us, at(us)]).filter(([, , x]) => x !== null)
    .map(([name, us, x]) => h("div", { class: `pline pline-${name}`, style: { left: `${x}%` }, dataset: { us: String(us) }, "aria-hidden": "true" },
      h("span", {}, `${name} ${fmtDuration(us)}`)));
  const labelAt = (f) => {
    const b = buckets[Math.min(buckets.length - 1, Math.floor(f * buckets.length))];
    return f >= 1 ? buckets[buckets.length - 1].hi_us : b.lo_us;
  };
  const area = h("div", { class: "histogram-area" },
    h("div", { class: "histogram", role: "group", "aria-label": "Latency histogram, log scale: choose a bucket to narrow the traces table, Shift to extend the range" }, bars),
    lines);
  replace(section, heading, count,
    h("div", { class: "histogram-wrap" },
      h("div", { class: "y-axis", "aria-hidden": "true" }, h("span", {}, fmtCount(max)), h("span", {}, "0")),
      area),
    h("div", { class: "x-axis", "aria-hidden": "true" },
      [0, 0.25, 0.5, 0.75, 1].map((f) => h("span", {}, fmtDuration(labelAt(f))))),
    h("p", { class: "hint" }, `Durations on a ${scale === "log" ? "log-scale" : "linear"} axis. Click a bar to show only traces with a span in that latency range; Shift-click extends the range.`));
  placeLabels(area);
}

/**
 * Keeps the percentile labels inside the chart: each sits right of its line, or left of it
 * when it would cross the right edge (clamped to the chart when neither fits), on the first
 * row where it covers no other label. Placed again whenever the chart or a label is resized.
 */
function placeLabels(area) {
  const GAP = 3;
  const place = () => {
    if (!area.isConnected) {
      observer.disconnect();
      return;
    }
    const box = area.getBoundingClientRect();
    if (!box.width) return;
    const placed = [];
    for (const line of area.querySelectorAll(".pline")) {
      const label = line.querySelector("span");
      const x = line.getBoundingClientRect().left - box.left;
      const { width, height } = label.getBoundingClientRect();
      let left = x + GAP + width <= box.width ? x + GAP : x - GAP - width;
      left = Math.max(0, Math.min(left, box.width - width));
      let row = 0;
      while (placed.some((p) => p.row === row && left < p.right + GAP && p.left < left + width + GAP)) row += 1;
      placed.push({ row, left, right: left + width });
      label.style.left = `${left - x}px`;
      label.style.top = `${row * (height + 1)}px`;
      label.classList.toggle("flipped", left < x);
    }
    area.dataset.labelsPlaced = "true";
  };
  const observer = new ResizeObserver(place);
  observer.observe(area);
  for (const label of area.querySelectorAll(".pline span")) observer.observe(label);
  place();
}

function renderReach(el, store) {
  if (!store) return;
  const parts = [];
  parts.push(store.oldest_start_us ? `The store reaches back to ${fmtTime(store.oldest_start_us)}` : "The store is empty");
  parts.push(store.evicted_traces
    ? `; ${fmtCount(store.evicted_traces)} older traces (${fmtCount(store.evicted_spans)} spans) were evicted to stay within --store-bytes`
    : "; nothing has been evicted");
  if (store.pinned_traces) parts.push(`; ${fmtCount(store.pinned_traces)} pinned trace${store.pinned_traces === 1 ? " is" : "s are"} kept`);
  el.textContent = `${parts.join("")}.`;
  el.dataset.evictedTraces = String(store.evicted_traces || 0);
}

const SORTS = {
  start: (a, b) => b.start_us - a.start_us,
  duration: (a, b) => b.duration_us - a.duration_us,
  spans: (a, b) => b.spans - a.spans,
  errors: (a, b) => b.errors - a.errors,
};

/** A scatter plot of the traces: start time across, duration up (log scale); a dot opens its trace. */
function scatter(traces) {
  const W = 900;
  const H = 170;
  const pad = { l: 56, r: 10, t: 8, b: 22 };
  const t0 = Math.min(...traces.map((t) => t.start_us));
  const t1 = Math.max(...traces.map((t) => t.start_us));
  const d0 = Math.log(Math.max(1, Math.min(...traces.map((t) => t.duration_us))));
  const d1 = Math.log(Math.max(2, Math.max(...traces.map((t) => t.duration_us))));
  const x = (us) => pad.l + (t1 > t0 ? (us - t0) / (t1 - t0) : 0.5) * (W - pad.l - pad.r);
  const y = (us) => H - pad.b - (d1 > d0 ? (Math.log(Math.max(1, us)) - d0) / (d1 - d0) : 0.5) * (H - pad.t - pad.b);
  const dots = traces.map((t) => h("svg:a", { href: `#/trace/${t.trace_id}`, "aria-label": `${t.root_service} ${t.root_operation}, ${fmtDuration(t.duration_us)}` },
    h("svg:circle", { cx: x(t.start_us).toFixed(1), cy: y(t.duration_us).toFixed(1), r: 4, class: t.errors ? "dot error" : "dot", dataset: { traceId: t.trace_id } },
      h("svg:title", {}, `${t.root_service} ${t.root_operation}: ${fmtDuration(t.duration_us)} at ${fmtTime(t.start_us)}`))));
  const label = (text, lx, ly, anchor) => h("svg:text", { x: lx, y: ly, "text-anchor": anchor, class: "axis-label" }, text);
  return h("figure", { class: "scatter" },
    h("svg:svg", { viewBox: `0 0 ${W} ${H}`, class: "scatter-plot", role: "group", "aria-label": "Trace durations over time (log scale)" },
      h("svg:line", { x1: pad.l, y1: H - pad.b, x2: W - pad.r, y2: H - pad.b, class: "axis-line" }),
      h("svg:line", { x1: pad.l, y1: pad.t, x2: pad.l, y2: H - pad.b, class: "axis-line" }),
      label(fmtDuration(Math.exp(d1)), pad.l - 4, pad.t + 8, "end"),
      label(fmtDuration(Math.exp(d0)), pad.l - 4, H - pad.b, "end"),
      label(fmtTime(t0), pad.l, H - 6, "start"),
      label(fmtTime(t1), W - pad.r, H - 6, "end"),
      dots),
    h("figcaption", { class: "hint" }, "Each dot is a trace: start time across, duration up (log scale). Click one to open it."));
}

function renderTraces(section, traces, params, selLo, selHi, limit) {
  const sort = SORTS[params.get("sort")] ? params.get("sort") : "start";
  traces = [...traces].sort(SORTS[sort]);
  const sortBy = (key) => () => {
    const next = new URLSearchParams(params);
    if (key === "start") next.delete("sort");
    else next.set("sort", key);
    navigate(next);
  };
  const sortState = (key) => (sort === key ? "descending" : "none");
  const heading = h("h2", { id: "traces-heading" }, "Example traces");
  const parts = [heading];
  if (selLo || selHi) {
    const next = new URLSearchParams(params);
    next.delete("sel_lo");
    next.delete("sel_hi");
    parts.push(h("p", { class: "selection" },
      `Showing traces with a matching span between ${fmtDuration(Number(selLo))} and ${fmtDuration(Number(selHi))}. `,
      h("button", { type: "button", class: "link", onclick: () => navigate(next) }, "Clear latency selection")));
  }
  if (!traces.length) {
    parts.push(h("p", { class: "hint", id: "traces-empty" }, "No traces match."));
    replace(section, ...parts);
    announce("No traces match the query");
    return;
  }
  const rows = traces.map((t) => {
    const href = `#/trace/${t.trace_id}`;
    const tr = h("tr", { class: t.errors ? "error-row" : "", dataset: { traceId: t.trace_id } },
      h("th", { scope: "row" },
        h("span", { class: "swatch", style: { background: serviceColor(t.root_service) }, "aria-hidden": "true" }),
        h("a", { href }, h("span", { class: "svc" }, t.root_service), " ", t.root_operation)),
      h("td", {}, fmtTime(t.start_us)),
      h("td", { class: "num" }, fmtDuration(t.duration_us)),
      h("td", { class: "num" }, fmtCount(t.spans)),
      h("td", { class: "services-cell", title: (t.services || []).join(", ") },
        (t.services || []).slice(0, 3).map((s) => h("span", { class: "chip", style: { borderColor: serviceColor(s) } }, s)),
        (t.services || []).length > 3 ? h("span", { class: "more" }, `+${t.services.length - 3}`) : null),
      h("td", { class: "num" }, fmtCount(t.matched)),
      h("td", { class: `num ${t.errors ? "has-errors" : ""}` }, fmtCount(t.errors)),
      h("td", { class: "mono", title: t.trace_id }, traceIdText(t.trace_id)));
    return linkRow(tr, `Trace ${t.root_service} ${t.root_operation}, ${fmtDuration(t.duration_us)}, ${t.spans} spans, ${t.errors} errors`, () => (location.hash = href));
  });
  const more = traces.length >= Number(limit) ? ` (the newest ${limit}; raise “Traces” for more)` : "";
  const order = { start: "newest first", duration: "longest first", spans: "most spans first", errors: "most errors first" }[sort];
  parts.push(scatter(traces));
  parts.push(table(`${traces.length} trace${traces.length === 1 ? "" : "s"}, ${order}${more}`, [
    { label: "Root span" }, { label: "Start", sort: sortState("start"), onSort: sortBy("start") },
    { label: "Duration", num: true, sort: sortState("duration"), onSort: sortBy("duration") },
    { label: "Spans", num: true, sort: sortState("spans"), onSort: sortBy("spans") },
    { label: "Services" }, { label: "Matching spans", num: true },
    { label: "Errors", num: true, sort: sortState("errors"), onSort: sortBy("errors") }, { label: "Trace ID" },
  ], rows, "traces"));
  replace(section, ...parts);
  announce(`${traces.length} traces match the query`);
}
