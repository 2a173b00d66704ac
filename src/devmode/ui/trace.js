// Trace view: a waterfall of every span of one trace across services, nested by parent, with
// the critical path marked and a panel showing the selected span's ids, tags and logs.
// The waterfall is an ARIA tree: Up/Down move, Left/Right collapse/expand, Enter selects.

import * as api from "./api.js";
import { h, replace, fmtCount, fmtDuration, fmtTime, serviceColor } from "./dom.js";

const KINDS = ["unspecified", "internal", "server", "client", "producer", "consumer"];

/** "SPAN_KIND_SERVER", "server" or 2 -> "server". */
export function kindName(kind) {
  if (typeof kind === "number") return KINDS[kind] || String(kind);
  return String(kind || "unspecified").replace(/^SPAN_KIND_/i, "").toLowerCase();
}

/** Links spans into a forest: roots are spans whose parent is absent from the trace. */
export function buildTree(spans) {
  const byId = new Map(spans.map((s) => [s.span_id, { span: s, children: [], depth: 0 }]));
  const roots = [];
  for (const node of byId.values()) {
    const parent = node.span.parent_span_id && byId.get(node.span.parent_span_id);
    if (parent && parent !== node) parent.children.push(node);
    else roots.push(node);
  }
  const byStart = (a, b) => a.span.start_us - b.span.start_us || a.span.span_id.localeCompare(b.span.span_id);
  const order = [];
  const seen = new Set();
  const walk = (node, depth) => {
    if (seen.has(node)) return; // a parent cycle in bad data must not loop forever
    seen.add(node);
    node.depth = depth;
    order.push(node);
    node.children.sort(byStart);
    for (const c of node.children) walk(c, depth + 1);
  };
  roots.sort(byStart);
  for (const r of roots) walk(r, 0);
  // Spans only reachable through a cycle: show them at the top level rather than lose them.
  for (const node of byId.values()) if (!seen.has(node)) walk(node, 0);
  return { roots, order, byId };
}

const end = (node) => node.span.start_us + node.span.duration_us;

/**
 * The critical path as segments {id, start, end}: from the end of each root, walk back
 * through the child that finished last before the cursor; time not covered by a child is the
 * parent's own. (The algorithm Jaeger uses.)
 */
export function criticalPath(roots) {
  const segments = [];
  const visit = (node, cursorEnd) => {
    const start = node.span.start_us;
    let cursor = Math.min(end(node), cursorEnd);
    const children = [...node.children].sort((a, b) => end(b) - end(a));
    for (const child of children) {
      if (child.span.start_us >= cursor || end(child) <= start) continue;
      const childEnd = Math.min(end(child), cursor);
      if (childEnd < cursor) segments.push({ id: node.span.span_id, start: childEnd, end: cursor });
      visit(child, childEnd);
      cursor = Math.max(child.span.start_us, start);
      if (cursor <= start) break;
    }
    if (cursor > start) segments.push({ id: node.span.span_id, start, end: cursor });
  };
  for (const r of roots) visit(r, end(r));
  return segments;
}

/** Renders trace `arg` into `main`; `?span=<id>` selects a span. */
export async function render(main, { arg, params, signal }) {
  const id = arg.trim().toLowerCase();
  let trace;
  try {
    trace = await api.trace(id);
  } catch (e) {
    if (signal.aborted) return;
    replace(main, h("h1", {}, "Trace ", h("span", { class: "mono" }, id)),
      h("p", { class: "error", role: "alert" }, e.status === 404 ? `No trace ${id} in the store: it may have been evicted, or not arrived yet.` : e.message),
      h("p", {}, h("a", { href: "#/explore" }, "← Explorer")));
    return;
  }
  if (signal.aborted) return;
  const spans = trace.spans || [];
  if (!spans.length) {
    replace(main, h("h1", {}, "Trace ", h("span", { class: "mono" }, id)), h("p", {}, "This trace has no spans."));
    return;
  }
  const { roots, order, byId } = buildTree(spans);
  const t0 = Math.min(...spans.map((s) => s.start_us));
  const t1 = Math.max(...spans.map((s) => s.start_us + s.duration_us));
  const total = Math.max(1, t1 - t0);
  const pct = (us) => `${(100 * (us - t0)) / total}%`;
  const width = (us) => `${Math.max(0.15, (100 * us) / total)}%`;

  const crit = criticalPath(roots);
  const critBySpan = new Map();
  for (const seg of crit) {
    if (!critBySpan.has(seg.id)) critBySpan.set(seg.id, []);
    critBySpan.get(seg.id).push(seg);
  }
  const services = [...new Set(spans.map((s) => s.service))].sort();
  const errors = spans.filter((s) => s.error).length;
  const root = roots[0].span;

  const detail = h("aside", { class: "span-detail", id: "span-detail", "aria-labelledby": "detail-heading", "aria-live": "polite" },
    h("h2", { id: "detail-heading" }, "Span details"),
    h("p", { class: "hint" }, "Select a span in the waterfall to see its tags and logs."));

  const tree = h("div", { class: "waterfall", role: "tree", "aria-label": `Spans of trace ${id}`, "aria-describedby": "waterfall-help" });
  const rows = new Map();
  const collapsed = new Set();

  const visibleRows = () => [...tree.querySelectorAll(".span-row")].filter((r) => !r.hidden);
  const setHidden = () => {
    for (const node of order) {
      let hidden = false;
      for (let p = byId.get(node.span.parent_span_id); p && p !== node; p = byId.get(p.span.parent_span_id)) {
        if (collapsed.has(p.span.span_id)) {
          hidden = true;
          break;
        }
        if (p.depth === 0) break;
      }
      rows.get(node.span.span_id).hidden = hidden;
    }
  };
  const focusRow = (row) => {
    for (const r of rows.values()) r.tabIndex = -1;
    row.tabIndex = 0;
    row.focus();
  };
  const toggle = (node, open) => {
    const sid = node.span.span_id;
    if (!node.children.length) return;
    if (open === undefined) open = collapsed.has(sid);
    if (open) collapsed.delete(sid);
    else collapsed.add(sid);
    rows.get(sid).setAttribute("aria-expanded", String(open));
    setHidden();
  };
  const select = (node, focus = true) => {
    for (const r of rows.values()) r.setAttribute("aria-selected", "false");
    const row = rows.get(node.span.span_id);
    row.setAttribute("aria-selected", "true");
    if (focus) focusRow(row);
    showDetail(detail, node, t0, critBySpan.get(node.span.span_id), byId);
    const q = new URLSearchParams({ span: node.span.span_id });
    history.replaceState(null, "", `#/trace/${id}?${q}`);
  };

  order.forEach((node, i) => {
    const s = node.span;
    const kind = kindName(s.kind);
    const onPath = critBySpan.has(s.span_id);
    const color = serviceColor(s.service);
    const label = `${s.service} ${s.operation}, ${kind}, ${fmtDuration(s.duration_us)}${s.error ? ", error" : ""}${onPath ? ", on the critical path" : ""}`;
    const bar = h("div", { class: `bar ${s.error ? "error" : ""}`, style: { left: pct(s.start_us), width: width(s.duration_us), background: color } });
    const critMarks = (critBySpan.get(s.span_id) || []).map((seg) =>
      h("div", { class: "crit", style: { left: pct(seg.start), width: width(seg.end - seg.start) } }));
    const row = h("div", {
      class: `span-row ${s.error ? "error" : ""} ${onPath ? "on-path" : ""}`, role: "treeitem",
      "aria-level": String(node.depth + 1), "aria-selected": "false", "aria-label": label,
      "aria-expanded": node.children.length ? "true" : undefined, tabindex: i === 0 ? "0" : "-1",
      dataset: { spanId: s.span_id, parentSpanId: s.parent_span_id || "", depth: String(node.depth), service: s.service, operation: s.operation },
    },
    h("div", { class: "label", title: `${s.service} ${s.operation}`, style: { paddingLeft: `${0.4 + Math.min(node.depth, 16) * 1.1}rem` } },
      node.children.length
        ? h("span", { class: "twisty", "aria-hidden": "true", onclick: (e) => { e.stopPropagation(); toggle(node); } }, "▾")
        : h("span", { class: "twisty leaf", "aria-hidden": "true" }),
      h("span", { class: "swatch", style: { background: color }, "aria-hidden": "true" }),
      h("span", { class: "svc" }, s.service), " ",
      h("span", { class: "op" }, s.operation),
      kind !== "unspecified" && kind !== "internal" ? h("span", { class: `kind kind-${kind}` }, kind) : null,
      s.error ? h("span", { class: "err-badge" }, "error") : null),
    h("div", { class: "timeline" }, bar, critMarks,
      h("span", { class: "dur", style: { left: pct(s.start_us + s.duration_us) } }, fmtDuration(s.duration_us))));
    row.addEventListener("click", () => select(node));
    row.addEventListener("keydown", (e) => {
      const vis = visibleRows();
      const at = vis.indexOf(row);
      let to = null;
      switch (e.key) {
        case "ArrowDown": to = vis[at + 1]; break;
        case "ArrowUp": to = vis[at - 1]; break;
        case "Home": to = vis[0]; break;
        case "End": to = vis[vis.length - 1]; break;
        case "ArrowRight":
          if (node.children.length && collapsed.has(s.span_id)) toggle(node, true);
          else to = node.children.length ? rows.get(node.children[0].span.span_id) : null;
          break;
        case "ArrowLeft":
          if (node.children.length && !collapsed.has(s.span_id)) toggle(node, false);
          else if (s.parent_span_id && rows.has(s.parent_span_id)) to = rows.get(s.parent_span_id);
          break;
        case "Enter":
        case " ":
          select(node);
          break;
        default:
          return;
      }
      e.preventDefault();
      if (to) focusRow(to);
    });
    rows.set(s.span_id, row);
    tree.appendChild(row);
  });

  // Find: marks the spans whose service, operation, id or tags contain the text; Enter
  // moves to the next one.
  const findCount = h("span", { class: "hint", id: "find-count", "aria-live": "polite" });
  const findInput = h("input", { type: "search", id: "find-span", placeholder: "service, operation, id or tag", autocomplete: "off" });
  let matches = [];
  let matchAt = -1;
  const haystack = new Map(order.map((node) => {
    const sp = node.span;
    const tagText = Object.entries(sp.tags || {}).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(" ");
    return [sp.span_id, `${sp.service} ${sp.operation} ${sp.span_id} ${tagText}`.toLowerCase()];
  }));
  findInput.addEventListener("input", () => {
    const q = findInput.value.trim().toLowerCase();
    matches = [];
    matchAt = -1;
    for (const node of order) {
      const hit = !!q && haystack.get(node.span.span_id).includes(q);
      rows.get(node.span.span_id).classList.toggle("match", hit);
      if (hit) matches.push(node);
    }
    findCount.textContent = q ? `${matches.length} of ${order.length} spans match` : "";
  });
  findInput.addEventListener("keydown", (e) => {
    if (e.key !== "Enter" || !matches.length) return;
    e.preventDefault();
    matchAt = (matchAt + (e.shiftKey ? matches.length - 1 : 1)) % matches.length;
    const node = matches[matchAt];
    for (let p = byId.get(node.span.parent_span_id); p; p = byId.get(p.span.parent_span_id)) {
      if (collapsed.has(p.span.span_id)) toggle(p, true);
      if (p.depth === 0) break;
    }
    select(node, false);
    rows.get(node.span.span_id).scrollIntoView({ block: "nearest" });
  });

  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) =>
    h("span", { class: "tick", style: { left: `${f * 100}%` } }, fmtDuration(f * total)));
  const critTotal = crit.reduce((sum, seg) => sum + (seg.end - seg.start), 0);

  replace(main,
    h("p", { class: "crumbs" }, h("a", { href: "#/explore" }, "← Explorer")),
    h("h1", {}, "Trace: ", h("span", { class: "svc" }, root.service), " ", root.operation),
    h("dl", { class: "trace-meta" },
      h("div", {}, h("dt", {}, "Trace ID"), h("dd", { class: "mono", id: "trace-id" }, trace.trace_id || id)),
      h("div", {}, h("dt", {}, "Start"), h("dd", {}, fmtTime(t0))),
      h("div", {}, h("dt", {}, "Duration"), h("dd", {}, fmtDuration(total))),
      h("div", {}, h("dt", {}, "Spans"), h("dd", { id: "trace-span-count" }, fmtCount(spans.length))),
      h("div", {}, h("dt", {}, "Services"), h("dd", {}, services.map((s) => h("span", { class: "chip", style: { borderColor: serviceColor(s) } }, s)))),
      h("div", {}, h("dt", {}, "Errors"), h("dd", { class: errors ? "has-errors" : "" }, fmtCount(errors))),
      h("div", {}, h("dt", {}, "Critical path"), h("dd", {}, fmtDuration(critTotal), " ", h("span", { class: "crit-key", "aria-hidden": "true" })))),
    h("div", { class: "find" }, h("label", { for: "find-span" }, "Find in trace"), findInput, findCount),
    h("p", { class: "visually-hidden", id: "waterfall-help" },
      "Arrow keys move between spans, Left and Right collapse and expand, Enter shows a span's tags and logs."),
    h("div", { class: "trace-layout" },
      h("section", { class: "waterfall-panel", "aria-label": "Waterfall" },
        h("div", { class: "axis", "aria-hidden": "true" }, h("div", { class: "label" }, "Service · operation"), h("div", { class: "timeline" }, ticks)),
        tree),
      detail));

  const wanted = params.get("span");
  const initial = (wanted && byId.get(wanted)) || null;
  if (initial) {
    select(initial, false);
    rows.get(initial.span.span_id).scrollIntoView({ block: "center" });
  }
  return undefined;
}

function showDetail(panel, node, t0, critSegments, byId) {
  const s = node.span;
  const kind = kindName(s.kind);
  const parent = s.parent_span_id ? byId.get(s.parent_span_id) : null;
  const tags = Object.entries(s.tags || {}).sort(([a], [b]) => a.localeCompare(b));
  const onPath = (critSegments || []).reduce((sum, seg) => sum + (seg.end - seg.start), 0);
  const kv = (label, value, cls) => h("div", {}, h("dt", {}, label), h("dd", { class: cls || "" }, value));
  replace(panel,
    h("h2", { id: "detail-heading" }, h("span", { class: "swatch", style: { background: serviceColor(s.service) }, "aria-hidden": "true" }),
      h("span", { class: "svc" }, s.service), " ", s.operation),
    h("dl", { class: "span-fields" },
      kv("Span ID", s.span_id, "mono span-id"),
      kv("Parent span ID", s.parent_span_id
        ? (parent ? h("a", { href: "#", class: "mono", onclick: (e) => { e.preventDefault(); document.querySelector(`.span-row[data-span-id="${CSS.escape(s.parent_span_id)}"]`)?.click(); } }, s.parent_span_id) : `${s.parent_span_id} (not in this trace)`)
        : "none (root)", "mono"),
      kv("Kind", kind),
      kv("Start", `+${fmtDuration(s.start_us - t0)} (${fmtTime(s.start_us)})`),
      kv("Duration", fmtDuration(s.duration_us)),
      kv("Error", s.error ? (s.status_message ? `yes: ${s.status_message}` : "yes") : "no", s.error ? "has-errors" : ""),
      kv("On critical path", onPath ? fmtDuration(onPath) : "no")),
    h("h3", {}, `Tags (${tags.length})`),
    tags.length
      ? h("table", { class: "data tags", id: "span-tags" },
        h("caption", { class: "visually-hidden" }, `Tags of ${s.operation}`),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Key"), h("th", { scope: "col" }, "Value"))),
        h("tbody", {}, tags.map(([k, v]) => h("tr", {}, h("th", { scope: "row", class: "mono" }, k), h("td", { class: "mono" }, typeof v === "string" ? v : JSON.stringify(v))))))
      : h("p", { class: "hint" }, "No tags."),
    h("h3", {}, `Logs (${(s.logs || []).length})`),
    (s.logs || []).length
      ? h("ol", { class: "logs" }, s.logs.map((log) =>
        h("li", {},
          h("span", { class: "log-time" }, `+${fmtDuration(log.time_us - t0)}`),
          h("dl", {}, Object.entries(log.fields || {}).map(([k, v]) =>
            h("div", {}, h("dt", { class: "mono" }, k), h("dd", { class: "mono" }, typeof v === "string" ? v : JSON.stringify(v))))))))
      : h("p", { class: "hint" }, "No logs."));
}
