// Trace view: a waterfall of every span of one trace across services, nested by parent, with
// the critical path marked and a panel showing the selected span's ids, tags, logs, links and
// process (resource).
//
// Built for big traces: only the rows in view are in the DOM (a 20,000-span trace draws ~50
// rows), the time axis stays on top while the rows scroll, a minimap of the whole trace takes
// a dragged window to zoom the time axis, and there is collapse-all / expand-one-level, "next
// error", and find over operation, service, ids, tags, error messages and logs ("/" focuses it).
// Spans the server shifted for clock skew (`skew_us`) are drawn where they were adjusted to,
// flagged, with the raw times kept in their details.
// The waterfall is an ARIA tree: Up/Down move, Left/Right collapse/expand, Enter selects.

import * as api from "./api.js";
import { h, replace, fmtCount, fmtDuration, fmtTime, serviceColor, announce, copyButton } from "./dom.js";

const KINDS = ["unspecified", "internal", "server", "client", "producer", "consumer"];
const ROW = 30; // px per waterfall row (the CSS matches)
const OVERSCAN = 12;
// Above this many spans the waterfall is drawn from the timeline alone, and tags, logs and
// links are filled in when the whole trace has arrived.
const BIG = 2000;

/** "SPAN_KIND_SERVER", "server" or 2 -> "server". */
export function kindName(kind) {
  if (typeof kind === "number") return KINDS[kind] || String(kind);
  return String(kind || "unspecified").replace(/^SPAN_KIND_/i, "").toLowerCase();
}

/** Where a span is drawn: its start shifted by the server's clock-skew adjustment. */
const startOf = (s) => s.start_us + (s.skew_us || 0);
const end = (node) => startOf(node.span) + node.span.duration_us;

/** Links spans into a forest: roots are spans whose parent is absent from the trace. */
export function buildTree(spans) {
  const byId = new Map(spans.map((s) => [s.span_id, { span: s, children: [], depth: 0, parent: null }]));
  const roots = [];
  for (const node of byId.values()) {
    const parent = node.span.parent_span_id && byId.get(node.span.parent_span_id);
    if (parent && parent !== node) {
      parent.children.push(node);
      node.parent = parent;
    } else {
      roots.push(node);
    }
  }
  const byStart = (a, b) => startOf(a.span) - startOf(b.span) || a.span.span_id.localeCompare(b.span.span_id);
  const order = [];
  const seen = new Set();
  // Iterative depth-first walk: a trace may be thousands of levels deep.
  const walk = (root) => {
    const stack = [[root, 0]];
    while (stack.length) {
      const [node, depth] = stack.pop();
      if (seen.has(node)) continue; // a parent cycle in bad data must not loop forever
      seen.add(node);
      node.depth = depth;
      order.push(node);
      node.children.sort(byStart);
      for (let i = node.children.length - 1; i >= 0; i--) stack.push([node.children[i], depth + 1]);
    }
  };
  roots.sort(byStart);
  for (const r of roots) walk(r);
  // Spans only reachable through a cycle: show them at the top level rather than lose them.
  for (const node of byId.values()) {
    if (!seen.has(node)) {
      if (node.parent) node.parent.children = node.parent.children.filter((c) => c !== node);
      node.parent = null;
      walk(node);
    }
  }
  return { roots, order, byId };
}

/**
 * The critical path as segments {id, start, end}: from the end of each root, walk back
 * through the child that finished last before the cursor; time not covered by a child is the
 * parent's own (the algorithm Jaeger uses). Children are clipped to their parent's interval,
 * so a child that starts before its parent or ends after it (clock skew, async work) never
 * makes the path longer than the root.
 */
export function criticalPath(roots) {
  const segments = [];
  const visit = (node, lo, hi) => {
    const start = Math.max(startOf(node.span), lo);
    let cursor = Math.min(end(node), hi);
    if (cursor <= start) return;
    const children = [...node.children].sort((a, b) => end(b) - end(a));
    for (const child of children) {
      const childStart = Math.max(startOf(child.span), start);
      if (childStart >= cursor || end(child) <= start) continue;
      const childEnd = Math.min(end(child), cursor);
      if (childEnd < cursor) segments.push({ id: node.span.span_id, start: childEnd, end: cursor });
      visit(child, start, childEnd);
      cursor = childStart;
      if (cursor <= start) break;
    }
    if (cursor > start) segments.push({ id: node.span.span_id, start, end: cursor });
  };
  for (const r of roots) visit(r, -Infinity, Infinity);
  return segments;
}

/** Text a find query is matched against: service, operation, ids, tags, status, logs. */
export function searchText(s) {
  const val = (v) => (typeof v === "string" ? v : JSON.stringify(v));
  const parts = [s.service, s.operation, s.span_id, s.parent_span_id || "", s.status_message || ""];
  for (const [k, v] of Object.entries(s.tags || {})) parts.push(`${k}=${val(v)}`);
  for (const log of s.logs || []) {
    for (const [k, v] of Object.entries(log.fields || {})) parts.push(`${k}=${val(v)}`);
  }
  for (const link of s.links || []) parts.push(link.trace_id, link.span_id);
  return parts.join("\n").toLowerCase();
}

/** Spans as objects from the column-wise timeline answer (`?fields=timeline`). */
export function fromColumns(timeline) {
  const c = timeline.columns || {};
  const str = timeline.strings || [];
  const spans = (c.span_id || []).map((id, i) => ({
    span_id: id,
    parent_span_id: c.parent_span_id[i] || null,
    service: str[c.service[i]],
    operation: str[c.operation[i]],
    start_us: c.start_us[i],
    duration_us: c.duration_us[i],
    kind: c.kind[i],
    error: !!c.error[i],
    process_id: `p${c.process[i]}`,
    skew_us: c.skew_us[i] || undefined,
  }));
  return { ...timeline, spans, columns: undefined, strings: undefined };
}

/** Renders trace `arg` into `main`; `?span=<id>` selects a span. */
export async function render(main, { arg, params, signal }) {
  const id = arg.trim().toLowerCase();
  let trace;
  let full = null;
  try {
    trace = fromColumns(await api.trace(id, "timeline"));
    if ((trace.spans || []).length <= BIG) trace = await api.trace(id);
    // The whole trace is asked for once the waterfall is drawn, not while it is being drawn.
    else full = new Promise((r) => setTimeout(r, 250)).then(() => api.trace(id));
  } catch (e) {
    if (signal.aborted) return undefined;
    replace(main, h("h1", {}, "Trace ", h("span", { class: "mono" }, id)),
      h("p", { class: "error", role: "alert" }, e.status === 404
        ? `No trace ${id} in the store: it may have been evicted (see how far back the store reaches in the Explorer), or not arrived yet.`
        : e.message),
      h("p", {}, h("a", { href: "#/explore" }, "← Explorer")));
    return undefined;
  }
  if (signal.aborted) return undefined;
  const spans = trace.spans || [];
  if (!spans.length) {
    replace(main, h("h1", {}, "Trace ", h("span", { class: "mono" }, id)), h("p", {}, "This trace has no spans."));
    return undefined;
  }
  const view = new TraceView(main, trace, id, params);
  view.enriched = !full;
  view.full = full ? full.then((whole) => {
    if (!signal.aborted) view.enrich(whole);
  }, () => {}) : Promise.resolve();
  return view.cleanup;
}

class TraceView {
  constructor(main, trace, id, params) {
    this.trace = trace;
    this.id = id;
    const spans = trace.spans;
    const { roots, order, byId } = buildTree(spans);
    Object.assign(this, { roots, order, byId });
    let t0 = Infinity;
    let t1 = -Infinity;
    for (const s of spans) {
      t0 = Math.min(t0, startOf(s));
      t1 = Math.max(t1, startOf(s) + s.duration_us);
    }
    this.t0 = t0;
    this.total = Math.max(1, t1 - t0);
    this.zoom = [0, 1]; // the visible fraction of the trace's time
    this.collapsed = new Set();
    this.matches = [];
    this.matchSet = new Set();
    this.matchAt = -1;
    this.selected = null;
    this.focusIdx = 0;
    this.crit = criticalPath(roots);
    this.critBySpan = new Map();
    for (const seg of this.crit) {
      if (!this.critBySpan.has(seg.id)) this.critBySpan.set(seg.id, []);
      this.critBySpan.get(seg.id).push(seg);
    }
    this.errors = order.filter((n) => n.span.error);
    this.haystack = null; // built on the first find
    this.computeVisible();
    this.build(main);
    const wanted = params.get("span");
    const initial = (wanted && byId.get(wanted)) || null;
    if (initial) this.select(initial, false, true);
    else this.draw();
    const onKey = (e) => {
      if (e.key === "/" && !e.target.closest("input, textarea, select")) {
        e.preventDefault();
        this.findInput.focus();
      }
    };
    const onResize = () => this.drawMinimap();
    document.addEventListener("keydown", onKey);
    window.addEventListener("resize", onResize);
    this.cleanup = () => {
      document.removeEventListener("keydown", onKey);
      window.removeEventListener("resize", onResize);
    };
  }

  /** The rows shown: the tree order without the subtrees of collapsed spans. */
  computeVisible() {
    const visible = [];
    let skipDepth = Infinity;
    for (const node of this.order) {
      if (node.depth > skipDepth) continue;
      skipDepth = Infinity;
      visible.push(node);
      if (this.collapsed.has(node.span.span_id) && node.children.length) skipDepth = node.depth;
    }
    this.visible = visible;
    this.indexOf = new Map(visible.map((n, i) => [n, i]));
  }

  x(us) {
    const [z0, z1] = this.zoom;
    return (((us - this.t0) / this.total - z0) / (z1 - z0)) * 100;
  }

  build(main) {
    const { trace, order, roots } = this;
    const spans = trace.spans;
    const root = roots[0].span;
    const services = [...new Set(spans.map((s) => s.service))].sort();
    const critTotal = this.crit.reduce((sum, seg) => sum + (seg.end - seg.start), 0);

    this.detail = h("aside", { class: "span-detail", id: "span-detail", "aria-labelledby": "detail-heading", "aria-live": "polite" },
      h("h2", { id: "detail-heading" }, "Span details"),
      h("p", { class: "hint" }, "Select a span in the waterfall to see its tags, logs, links and process."));

    this.tree = h("div", {
      class: "waterfall", role: "tree", "aria-label": `Spans of trace ${this.id}`, "aria-describedby": "waterfall-help",
      style: { height: `${this.visible.length * ROW}px` },
    });
    this.tree.addEventListener("keydown", (e) => this.onKey(e));
    // Focus that arrives by Tab or a click moves the keyboard's position with it.
    this.tree.addEventListener("focusin", (e) => {
      const row = e.target.closest(".span-row");
      if (row) this.focusIdx = Number(row.dataset.index);
    });
    this.tree.addEventListener("click", (e) => {
      const row = e.target.closest(".span-row");
      if (!row) return;
      const node = this.byId.get(row.dataset.spanId);
      if (e.target.closest(".twisty")) this.toggle(node);
      else this.select(node);
    });
    this.ticks = h("div", { class: "timeline" });
    this.axis = h("div", { class: "axis", "aria-hidden": "true" }, h("div", { class: "label" }, "Service · operation"), this.ticks);
    this.scroller = h("div", { class: "waterfall-scroll" }, this.axis, this.tree);
    let frame = 0;
    this.scroller.addEventListener("scroll", () => {
      if (!frame) frame = requestAnimationFrame(() => { frame = 0; this.draw(); });
    });

    // Minimap: every span as a thin line; drag across it to zoom the time axis.
    this.canvas = h("canvas", { class: "minimap-canvas", height: 56 });
    this.window = h("div", { class: "minimap-window" });
    this.minimap = h("div", { class: "minimap", "aria-hidden": "true", title: "Drag across the minimap to zoom into that time range" }, this.canvas, this.window);
    this.minimap.addEventListener("pointerdown", (e) => this.dragZoom(e));
    this.zoomReset = h("button", { type: "button", id: "zoom-reset", disabled: true, onclick: () => this.setZoom([0, 1]) }, "Reset zoom");

    // Find.
    this.findCount = h("span", { class: "hint", id: "find-count", "aria-live": "polite" });
    this.findInput = h("input", {
      type: "search", id: "find-span", placeholder: "operation, service, id, tag, error message, log", autocomplete: "off",
      "aria-describedby": "find-help",
    });
    this.findInput.addEventListener("input", () => this.find(this.findInput.value));
    this.findInput.addEventListener("keydown", (e) => {
      if (e.key !== "Enter" || !this.matches.length) return;
      e.preventDefault();
      this.nextMatch(e.shiftKey ? -1 : 1);
    });

    const toolbar = h("div", { class: "trace-tools", role: "toolbar", "aria-label": "Waterfall tools" },
      h("button", { type: "button", id: "collapse-all", onclick: () => this.collapseAll() }, "Collapse all"),
      h("button", { type: "button", id: "expand-level", onclick: () => this.expandLevel() }, "Expand one level"),
      h("button", { type: "button", id: "expand-all", onclick: () => this.expandAll() }, "Expand all"),
      h("button", { type: "button", id: "next-error", disabled: !this.errors.length, onclick: () => this.nextError() },
        `Next error (${fmtCount(this.errors.length)})`),
      this.zoomReset);

    this.pinButton = h("button", { type: "button", id: "pin-trace", "aria-pressed": String(!!trace.pinned), onclick: () => this.togglePin() },
      trace.pinned ? "Unpin trace" : "Pin trace");
    this.pinState = h("span", { class: "hint", id: "pin-state", "aria-live": "polite" },
      trace.pinned ? "Pinned: eviction keeps this trace." : "");

    const skewed = trace.skewed_spans || 0;
    const notice = skewed
      ? h("p", { class: "notice", id: "skew-notice", role: "note" },
        `Clock skew: the timestamps of ${fmtCount(skewed)} span${skewed === 1 ? " were" : "s were"} adjusted to fit inside their parent span `,
        "(each is marked “adjusted” and its details give the shift and the raw start).")
      : null;
    const elsewhere = trace.linked_from_elsewhere || [];

    replace(main,
      h("p", { class: "crumbs" }, h("a", { href: "#/explore" }, "← Explorer")),
      h("div", { class: "trace-title" },
        h("h1", {}, "Trace: ", h("span", { class: "svc" }, root.service), " ", root.operation),
        h("div", { class: "pin" }, this.pinButton, this.pinState)),
      h("dl", { class: "trace-meta" },
        h("div", {}, h("dt", {}, "Trace ID"), h("dd", { class: "mono", id: "trace-id" }, trace.trace_id || this.id)),
        h("div", {}, h("dt", {}, "Start"), h("dd", {}, fmtTime(this.t0))),
        h("div", {}, h("dt", {}, "Duration"), h("dd", {}, fmtDuration(this.total))),
        h("div", {}, h("dt", {}, "Spans"), h("dd", { id: "trace-span-count" }, fmtCount(spans.length))),
        h("div", {}, h("dt", {}, "Depth"), h("dd", {}, fmtCount(1 + Math.max(...order.map((n) => n.depth))))),
        h("div", {}, h("dt", {}, "Services"), h("dd", { class: "chips" }, services.map((s) => h("span", { class: "chip", style: { borderColor: serviceColor(s) } }, s)))),
        h("div", {}, h("dt", {}, "Errors"), h("dd", { class: this.errors.length ? "has-errors" : "" }, fmtCount(this.errors.length))),
        h("div", {}, h("dt", {}, "Critical path"), h("dd", { id: "critical-path", dataset: { us: String(critTotal) } }, fmtDuration(critTotal), " ", h("span", { class: "crit-key", "aria-hidden": "true" })))),
      notice,
      elsewhere.length
        ? h("p", { class: "notice" }, `${elsewhere.length} span link${elsewhere.length === 1 ? "" : "s"} from other traces point to spans of this trace that are not stored.`)
        : null,
      h("div", { class: "find" }, h("label", { for: "find-span" }, "Find in trace"), this.findInput, this.findCount,
        h("span", { class: "visually-hidden", id: "find-help" }, "Enter moves to the next match, Shift+Enter to the previous; / focuses this box.")),
      toolbar,
      h("p", { class: "visually-hidden", id: "waterfall-help" },
        "Arrow keys move between spans, Left and Right collapse and expand, Enter shows a span's details."),
      h("div", { class: "trace-layout" },
        h("section", { class: "waterfall-panel", "aria-label": "Waterfall" }, this.minimap, this.scroller),
        this.detail));
    this.drawAxis();
    requestAnimationFrame(() => this.drawMinimap());
  }

  /** Draws the rows in view (plus a margin, plus the focused row). */
  draw() {
    const top = Math.max(0, this.scroller.scrollTop - this.axis.offsetHeight);
    const height = this.scroller.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW) - OVERSCAN);
    const last = Math.min(this.visible.length, Math.ceil((top + height) / ROW) + OVERSCAN);
    const wanted = new Set();
    for (let i = first; i < last; i++) wanted.add(i);
    if (this.focusIdx < this.visible.length) wanted.add(this.focusIdx);
    const rows = [...wanted].sort((a, b) => a - b).map((i) => this.row(this.visible[i], i));
    this.tree.style.height = `${this.visible.length * ROW}px`;
    this.tree.replaceChildren(...rows);
  }

  row(node, i) {
    const s = node.span;
    const sid = s.span_id;
    const kind = kindName(s.kind);
    const onPath = this.critBySpan.has(sid);
    const color = serviceColor(s.service);
    const open = !this.collapsed.has(sid);
    const label = `${s.service} ${s.operation}, ${kind}, ${fmtDuration(s.duration_us)}${s.error ? ", error" : ""}${onPath ? ", on the critical path" : ""}${s.skew_us ? ", clock skew adjusted" : ""}`;
    const left = this.x(startOf(s));
    const right = this.x(startOf(s) + s.duration_us);
    const bar = h("div", {
      class: `bar ${s.error ? "error" : ""}`,
      style: { left: `${left}%`, width: `${Math.max(0.15, right - left)}%`, background: color },
    });
    const marks = (this.critBySpan.get(sid) || []).map((seg) => {
      const a = this.x(seg.start);
      return h("div", { class: "crit", style: { left: `${a}%`, width: `${Math.max(0.15, this.x(seg.end) - a)}%` } });
    });
    // Indentation: full steps for 16 levels, then narrower ones, so deep traces stay readable.
    const indent = Math.min(node.depth, 16) * 1.1 + Math.max(0, node.depth - 16) * 0.3;
    const row = h("div", {
      class: `span-row ${s.error ? "error" : ""} ${onPath ? "on-path" : ""} ${this.matchSet.has(node) ? "match" : ""}`,
      role: "treeitem", "aria-level": String(node.depth + 1), "aria-setsize": String(node.parent ? node.parent.children.length : this.roots.length),
      "aria-posinset": String((node.parent ? node.parent.children : this.roots).indexOf(node) + 1),
      "aria-selected": String(this.selected === node), "aria-label": label,
      "aria-expanded": node.children.length ? String(open) : undefined, tabindex: i === this.focusIdx ? "0" : "-1",
      style: { top: `${i * ROW}px` },
      dataset: { spanId: sid, parentSpanId: s.parent_span_id || "", depth: String(node.depth), service: s.service, operation: s.operation, index: String(i) },
    },
    h("div", { class: "label", title: `${s.service} ${s.operation} (depth ${node.depth + 1})`, style: { paddingLeft: `${0.4 + indent}rem` } },
      node.children.length
        ? h("span", { class: "twisty", "aria-hidden": "true", title: open ? "Collapse" : `Expand (${node.children.length} children)` }, "▾")
        : h("span", { class: "twisty leaf", "aria-hidden": "true" }),
      h("span", { class: "swatch", style: { background: color }, "aria-hidden": "true" }),
      h("span", { class: "svc" }, s.service), " ",
      h("span", { class: "op" }, s.operation),
      kind !== "unspecified" && kind !== "internal" ? h("span", { class: `kind kind-${kind}` }, kind) : null,
      s.error ? h("span", { class: "err-badge" }, "error") : null,
      s.skew_us ? h("span", { class: "skew-badge", title: `Clock skew: shifted ${s.skew_us > 0 ? "+" : "−"}${fmtDuration(Math.abs(s.skew_us))}` }, "adjusted") : null,
      (s.links || []).length || (s.linked_from || []).length ? h("span", { class: "link-badge", title: "Has span links" }, "⇄") : null),
    h("div", { class: "timeline" }, bar, marks,
      right < 100 ? h("span", { class: "dur", style: { left: `${Math.max(0, right)}%` } }, fmtDuration(s.duration_us)) : null));
    return row;
  }

  drawAxis() {
    const [z0, z1] = this.zoom;
    replace(this.ticks, [0, 0.25, 0.5, 0.75, 1].map((f) =>
      h("span", { class: "tick", style: { left: `${f * 100}%` } }, fmtDuration((z0 + f * (z1 - z0)) * this.total))));
    const w = this.window.style;
    w.left = `${z0 * 100}%`;
    w.width = `${(z1 - z0) * 100}%`;
    this.window.hidden = z0 === 0 && z1 === 1;
    this.zoomReset.disabled = z0 === 0 && z1 === 1;
  }

  drawMinimap() {
    const canvas = this.canvas;
    const width = Math.max(100, this.minimap.clientWidth);
    const ratio = window.devicePixelRatio || 1;
    canvas.width = width * ratio;
    canvas.height = 56 * ratio;
    canvas.style.width = `${width}px`;
    const ctx = canvas.getContext("2d");
    if (!ctx) return;
    ctx.scale(ratio, ratio);
    const n = this.order.length;
    const lineH = Math.max(0.5, 52 / n);
    this.order.forEach((node, i) => {
      const s = node.span;
      ctx.fillStyle = s.error ? "#c62828" : serviceColor(s.service);
      const x = ((startOf(s) - this.t0) / this.total) * width;
      const w = Math.max(1, (s.duration_us / this.total) * width);
      ctx.fillRect(x, 2 + (i / n) * 52, w, Math.max(1, lineH));
    });
  }

  dragZoom(e) {
    const rect = this.minimap.getBoundingClientRect();
    const frac = (ev) => Math.min(1, Math.max(0, (ev.clientX - rect.left) / rect.width));
    const from = frac(e);
    this.minimap.setPointerCapture?.(e.pointerId);
    const move = (ev) => {
      const to = frac(ev);
      this.window.hidden = false;
      this.window.style.left = `${Math.min(from, to) * 100}%`;
      this.window.style.width = `${Math.abs(to - from) * 100}%`;
    };
    const up = (ev) => {
      this.minimap.removeEventListener("pointermove", move);
      this.minimap.removeEventListener("pointerup", up);
      const to = frac(ev);
      if (Math.abs(to - from) > 0.005) this.setZoom([Math.min(from, to), Math.max(from, to)]);
      else this.drawAxis();
    };
    this.minimap.addEventListener("pointermove", move);
    this.minimap.addEventListener("pointerup", up);
  }

  setZoom(zoom) {
    this.zoom = zoom;
    this.drawAxis();
    this.draw();
    announce(zoom[0] === 0 && zoom[1] === 1 ? "Zoom reset" : `Zoomed to ${fmtDuration(zoom[0] * this.total)} – ${fmtDuration(zoom[1] * this.total)}`);
  }

  relayout(keep) {
    this.computeVisible();
    if (keep && this.indexOf.has(keep)) this.focusIdx = this.indexOf.get(keep);
    else this.focusIdx = Math.min(this.focusIdx, this.visible.length - 1);
    this.draw();
  }

  toggle(node, open) {
    const sid = node.span.span_id;
    if (!node.children.length) return;
    if (open === undefined) open = this.collapsed.has(sid);
    if (open) this.collapsed.delete(sid);
    else this.collapsed.add(sid);
    this.relayout(node);
  }

  collapseAll() {
    for (const node of this.order) if (node.children.length) this.collapsed.add(node.span.span_id);
    this.focusIdx = 0;
    this.relayout(this.visible[0]);
    announce(`Collapsed: ${this.visible.length} rows shown`);
  }

  expandLevel() {
    // Opens the shallowest level of collapsed spans that are shown.
    let depth = Infinity;
    for (const node of this.visible) if (this.collapsed.has(node.span.span_id) && node.children.length) depth = Math.min(depth, node.depth);
    if (depth === Infinity) return;
    for (const node of this.visible) if (node.depth === depth) this.collapsed.delete(node.span.span_id);
    this.relayout(this.visible[this.focusIdx]);
    announce(`Expanded level ${depth + 1}: ${this.visible.length} rows shown`);
  }

  expandAll() {
    this.collapsed.clear();
    this.relayout(this.visible[this.focusIdx]);
  }

  /** Makes `node` shown (expanding its ancestors) and scrolls it into view. */
  reveal(node, center) {
    let changed = false;
    for (let p = node.parent; p; p = p.parent) {
      if (this.collapsed.delete(p.span.span_id)) changed = true;
    }
    if (changed) this.computeVisible();
    const i = this.indexOf.get(node);
    this.focusIdx = i;
    const top = i * ROW;
    const view = this.scroller.clientHeight - this.axis.offsetHeight;
    const at = this.scroller.scrollTop;
    if (center || top < at || top + ROW > at + view) {
      this.scroller.scrollTop = Math.max(0, top - (center ? view / 2 : view / 3));
    }
    this.draw();
  }

  focusRow() {
    const row = this.tree.querySelector(`.span-row[data-index="${this.focusIdx}"]`);
    if (row) row.focus({ preventScroll: true });
  }

  select(node, focus = true, center = false) {
    this.selected = node;
    this.reveal(node, center);
    if (focus) this.focusRow();
    this.showDetail(node);
    const q = new URLSearchParams({ span: node.span.span_id });
    history.replaceState(null, "", `#/trace/${this.id}?${q}`);
  }

  nextError() {
    if (!this.errors.length) return;
    const from = this.selected ? this.order.indexOf(this.selected) : -1;
    const next = this.errors.find((n) => this.order.indexOf(n) > from) || this.errors[0];
    this.select(next, true);
    announce(`Error span ${this.errors.indexOf(next) + 1} of ${this.errors.length}: ${next.span.service} ${next.span.operation}`);
  }

  /** Fills in tags, logs and links from the whole trace (after a timeline-first draw). */
  enrich(whole) {
    this.enriched = true;
    const bySpan = new Map((whole.spans || []).map((s) => [s.span_id, s]));
    for (const node of this.order) {
      const s = bySpan.get(node.span.span_id);
      if (s) Object.assign(node.span, s);
    }
    this.trace.linked_from_elsewhere = whole.linked_from_elsewhere;
    this.haystack = null;
    if (this.findInput.value.trim()) this.find(this.findInput.value);
    else this.draw();
    if (this.selected) this.showDetail(this.selected);
  }

  find(text) {
    if (this.full && !this.enriched) {
      // Search the whole trace: wait for its tags, logs and messages.
      this.full.then(() => {
        this.enriched = true;
        if (this.findInput.value === text) this.find(text);
      });
      if (this.trace.spans.length > BIG && !this.order[0].span.tags) {
        this.findCount.textContent = "searching…";
        return;
      }
    }
    const q = text.trim().toLowerCase();
    if (!this.haystack && q) this.haystack = new Map(this.order.map((n) => [n, searchText(n.span)]));
    this.matches = q ? this.order.filter((n) => this.haystack.get(n).includes(q)) : [];
    this.matchSet = new Set(this.matches);
    this.matchAt = -1;
    this.findCount.textContent = q ? `${fmtCount(this.matches.length)} of ${fmtCount(this.order.length)} spans match` : "";
    this.findCount.dataset.matches = this.matches.map((n) => n.span.span_id).join(" ");
    this.draw();
  }

  nextMatch(step) {
    const n = this.matches.length;
    this.matchAt = (this.matchAt + (step < 0 ? n - 1 : 1)) % n;
    this.select(this.matches[this.matchAt], false);
  }

  onKey(e) {
    const at = this.focusIdx;
    const node = this.visible[at];
    if (!node) return;
    let to = null;
    switch (e.key) {
      case "ArrowDown": to = at + 1; break;
      case "ArrowUp": to = at - 1; break;
      case "Home": to = 0; break;
      case "End": to = this.visible.length - 1; break;
      case "PageDown": to = Math.min(this.visible.length - 1, at + 20); break;
      case "PageUp": to = Math.max(0, at - 20); break;
      case "ArrowRight":
        if (node.children.length && this.collapsed.has(node.span.span_id)) this.toggle(node, true);
        else if (node.children.length) to = at + 1;
        break;
      case "ArrowLeft":
        if (node.children.length && !this.collapsed.has(node.span.span_id)) this.toggle(node, false);
        else if (node.parent) to = this.indexOf.get(node.parent);
        break;
      case "Enter":
      case " ":
        this.select(node);
        break;
      default:
        return;
    }
    e.preventDefault();
    if (to !== null && to >= 0 && to < this.visible.length) {
      this.reveal(this.visible[to], false);
    }
    this.focusRow();
  }

  async togglePin() {
    const pin = this.pinButton.getAttribute("aria-pressed") !== "true";
    try {
      await (pin ? api.pin(this.id) : api.unpin(this.id));
      this.pinButton.setAttribute("aria-pressed", String(pin));
      this.pinButton.textContent = pin ? "Unpin trace" : "Pin trace";
      this.pinState.textContent = pin ? "Pinned: eviction keeps this trace." : "Unpinned.";
    } catch (e) {
      this.pinState.textContent = e.message;
    }
  }

  showDetail(node) {
    const s = node.span;
    const { t0, byId } = this;
    const kind = kindName(s.kind);
    const parent = s.parent_span_id ? byId.get(s.parent_span_id) : null;
    const tags = Object.entries(s.tags || {}).sort(([a], [b]) => a.localeCompare(b));
    const onPath = (this.critBySpan.get(s.span_id) || []).reduce((sum, seg) => sum + (seg.end - seg.start), 0);
    const kv = (label, value, cls) => h("div", {}, h("dt", {}, label), h("dd", { class: cls || "" }, value));
    const text = (v) => (typeof v === "string" ? v : JSON.stringify(v));
    const spanLink = (traceId, spanId, label) => h("a", {
      href: `#/trace/${traceId}?span=${spanId}`, class: "mono",
      onclick: (e) => {
        if (traceId !== this.trace.trace_id) return; // another trace: let the hash change
        e.preventDefault();
        const target = byId.get(spanId);
        if (target) this.select(target);
      },
    }, label);
    const attrTable = (id, caption, entries) => entries.length
      ? h("table", { class: "data tags", id },
        h("caption", { class: "visually-hidden" }, caption),
        h("colgroup", {}, h("col", { class: "key" }), h("col", {})),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Key"), h("th", { scope: "col" }, "Value"))),
        h("tbody", {}, entries.map(([k, v]) => h("tr", {}, h("th", { scope: "row", class: "mono" }, k), h("td", { class: "mono value" }, text(v))))))
      : h("p", { class: "hint" }, "None.");
    const process = (this.trace.processes || {})[s.process_id];
    const links = s.links || [];
    const from = s.linked_from || [];
    const json = h("pre", { class: "span-json", id: "span-json" }, JSON.stringify(s, null, 2));
    replace(this.detail,
      h("h2", { id: "detail-heading" }, h("span", { class: "swatch", style: { background: serviceColor(s.service) }, "aria-hidden": "true" }),
        h("span", { class: "svc" }, s.service), " ", s.operation),
      h("dl", { class: "span-fields" },
        kv("Span ID", s.span_id, "mono span-id"),
        kv("Parent span ID", s.parent_span_id
          ? (parent ? spanLink(this.trace.trace_id, s.parent_span_id, s.parent_span_id) : `${s.parent_span_id} (not in this trace)`)
          : "none (root)", "mono"),
        kv("Kind", kind),
        kv("Start", `+${fmtDuration(startOf(s) - t0)} (${fmtTime(startOf(s))})`),
        s.skew_us
          ? kv("Clock skew", `adjusted ${s.skew_us > 0 ? "+" : "−"}${fmtDuration(Math.abs(s.skew_us))} to fit its parent; raw start ${fmtTime(s.start_us)}`, "skewed")
          : null,
        kv("Duration", fmtDuration(s.duration_us)),
        kv("Error", s.error ? (s.status_message ? `yes: ${s.status_message}` : "yes") : "no", s.error ? "has-errors pre" : ""),
        kv("On critical path", onPath ? fmtDuration(onPath) : "no")),
      h("h3", {}, `Tags (${tags.length})`),
      attrTable("span-tags", `Tags of ${s.operation}`, tags),
      h("h3", {}, `Logs (${(s.logs || []).length})`),
      (s.logs || []).length
        ? h("ol", { class: "logs" }, s.logs.map((log) =>
          h("li", {},
            h("span", { class: "log-time" }, `+${fmtDuration(log.time_us - t0)}`),
            h("dl", {}, Object.entries(log.fields || {}).map(([k, v]) =>
              h("div", {}, h("dt", { class: "mono" }, k), h("dd", { class: "mono value" }, text(v))))))))
        : h("p", { class: "hint" }, "No logs."),
      h("h3", {}, `Links (${links.length + from.length})`),
      links.length || from.length
        ? h("ul", { class: "links", id: "span-links" },
          links.map((l) => h("li", { dataset: { direction: "to", traceId: l.trace_id, spanId: l.span_id } }, "→ links to ",
            spanLink(l.trace_id, l.span_id, `${l.trace_id.replace(/^0{16}/, "")} / ${l.span_id}`),
            l.stored ? null : h("span", { class: "hint" }, " (not stored)"),
            Object.keys(l.attributes || {}).length ? h("span", { class: "hint" }, ` ${JSON.stringify(l.attributes)}`) : null)),
          from.map((l) => h("li", { dataset: { direction: "from", traceId: l.trace_id, spanId: l.span_id } }, "← linked from ",
            spanLink(l.trace_id, l.span_id, `${l.service} ${l.operation}`),
            h("span", { class: "hint mono" }, ` ${l.trace_id.replace(/^0{16}/, "")}`))))
        : h("p", { class: "hint" }, "No links."),
      h("h3", {}, "Process"),
      process
        ? attrTable("span-process", `Resource attributes of ${s.service}`, Object.entries(process.attributes || {}).sort(([a], [b]) => a.localeCompare(b)))
        : h("p", { class: "hint" }, "No resource attributes."),
      h("details", { class: "json-view" },
        h("summary", {}, "Span as JSON"),
        h("div", { class: "snippet-head" }, copyButton(json, "span JSON")),
        json));
  }
}
