// Service diagram: which service calls which, drawn as an SVG from /api/dependencies (edges
// from parent/child span links across services), laid out in columns by call depth. The same
// edges are listed in a table for screen readers and for exact numbers.

import * as api from "./api.js";
import { toQuery } from "./api.js";
import { h, replace, table, fmtCount, fmtRate, fmtDuration, serviceColor } from "./dom.js";

const NODE_W = 220;
const NODE_H = 54;
const COL_GAP = 110;
const ROW_GAP = 34;
const PAD = 24;

/**
 * Column of each node: the longest call chain leading to it. Cycles are cut at their back
 * edges, found by a depth-first walk that starts from services nobody calls, so in
 * a -> b -> c -> a the entry point `a` stays in the first column.
 */
export function layers(nodes, edges) {
  const out = new Map(nodes.map((n) => [n, []]));
  const indegree = new Map(nodes.map((n) => [n, 0]));
  for (const e of edges) {
    if (e.parent === e.child || !out.has(e.parent) || !out.has(e.child)) continue;
    out.get(e.parent).push(e.child);
    indegree.set(e.child, indegree.get(e.child) + 1);
  }
  const back = new Set();
  const state = new Map(); // 1 = on the walk's stack, 2 = done
  const walk = (n) => {
    state.set(n, 1);
    for (const c of out.get(n)) {
      if (state.get(c) === 1) back.add(`${n}\u0000${c}`);
      else if (!state.has(c)) walk(c);
    }
    state.set(n, 2);
  };
  const starts = [...nodes.filter((n) => indegree.get(n) === 0), ...nodes];
  for (const n of starts) if (!state.has(n)) walk(n);
  const incoming = new Map(nodes.map((n) => [n, []]));
  for (const [n, children] of out) {
    for (const c of children) if (!back.has(`${n}\u0000${c}`)) incoming.get(c).push(n);
  }
  const depth = new Map();
  const depthOf = (n) => {
    if (!depth.has(n)) depth.set(n, Math.max(0, ...incoming.get(n).map((p) => depthOf(p) + 1)));
    return depth.get(n);
  };
  for (const n of nodes) depthOf(n);
  return depth;
}

/** Renders the diagram into `main`. */
export async function render(main, { signal }) {
  const [{ edges }, { services }] = await Promise.all([api.dependencies(), api.services()]);
  if (signal.aborted) return;
  const stats = new Map(services.map((s) => [s.name, s]));
  const names = [...new Set([...services.map((s) => s.name), ...edges.flatMap((e) => [e.parent, e.child])])].sort();
  const heading = h("h1", {}, "Service diagram");
  if (!names.length) {
    replace(main, heading, h("p", { class: "empty" }, "No spans yet, so no services to draw."));
    return;
  }
  const depth = layers(names, edges);
  const columns = [];
  for (const n of names) (columns[depth.get(n)] ||= []).push(n);
  // Order each column by the mean row of its callers, so edges cross less.
  const row = new Map();
  columns.forEach((col, c) => {
    if (c > 0) {
      const callerRow = (n) => {
        const rows = edges.filter((e) => e.child === n && row.has(e.parent)).map((e) => row.get(e.parent));
        return rows.length ? rows.reduce((a, b) => a + b, 0) / rows.length : Infinity;
      };
      col.sort((a, b) => callerRow(a) - callerRow(b) || a.localeCompare(b));
    }
    col.forEach((n, r) => row.set(n, r));
  });
  const tallest = Math.max(...columns.map((c) => c.length));
  const width = PAD * 2 + columns.length * NODE_W + (columns.length - 1) * COL_GAP;
  const height = PAD * 2 + tallest * NODE_H + (tallest - 1) * ROW_GAP;
  const pos = new Map();
  columns.forEach((col, c) => {
    const offset = ((tallest - col.length) * (NODE_H + ROW_GAP)) / 2;
    col.forEach((n, r) => pos.set(n, { x: PAD + c * (NODE_W + COL_GAP), y: PAD + offset + r * (NODE_H + ROW_GAP) }));
  });

  const maxCalls = Math.max(1, ...edges.map((e) => e.calls));
  const edgeEls = edges.map((e) => {
    const a = pos.get(e.parent);
    const b = pos.get(e.child);
    const stroke = 1.2 + (3 * e.calls) / maxCalls;
    let d;
    let lx;
    let ly;
    if (e.parent === e.child) {
      d = `M${a.x + NODE_W - 30},${a.y} c 0,-30 40,-30 30,0`;
      lx = a.x + NODE_W - 10;
      ly = a.y - 26;
    } else if (b.x > a.x) {
      const x1 = a.x + NODE_W;
      const y1 = a.y + NODE_H / 2;
      const x2 = b.x;
      const y2 = b.y + NODE_H / 2;
      const mx = (x1 + x2) / 2;
      d = `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2 - 6},${y2}`;
      lx = mx;
      ly = (y1 + y2) / 2 - 6;
    } else {
      // A call back to an earlier column (a cycle): arc under the nodes.
      const x1 = a.x + NODE_W / 2;
      const y1 = a.y + NODE_H;
      const x2 = b.x + NODE_W / 2;
      const y2 = b.y + NODE_H + 6;
      const dip = Math.max(y1, y2) + 40;
      d = `M${x1},${y1} C${x1},${dip} ${x2},${dip} ${x2},${y2}`;
      lx = (x1 + x2) / 2;
      ly = dip - 8;
    }
    return h("svg:g", { class: "edge" },
      h("svg:path", { d, "stroke-width": stroke.toFixed(1), "marker-end": "url(#arrow)" }),
      h("svg:text", { x: lx, y: ly, "text-anchor": "middle", class: "calls" }, `${fmtCount(e.calls)}×`));
  });
  const nodeEls = names.map((n) => {
    const { x, y } = pos.get(n);
    const s = stats.get(n);
    const sub = s ? `${fmtCount(s.spans)} spans · ${fmtRate(s.error_rate)} err · p99 ${fmtDuration(s.p99_us)}` : "";
    const label = `${n}${s ? `: ${sub}` : ""}. Explore its traces.`;
    return h("svg:a", { href: `#/explore?${toQuery({ service: n })}`, class: `node ${s && s.errors ? "node-errors" : ""}`, "aria-label": label, dataset: { service: n } },
      h("svg:title", {}, label),
      h("svg:rect", { x, y, width: NODE_W, height: NODE_H, rx: 8 }),
      h("svg:rect", { x: x + 1.5, y: y + 1.5, width: 6, height: NODE_H - 3, rx: 2, fill: serviceColor(n), class: "stripe" }),
      h("svg:text", { x: x + 16, y: y + 22, class: "name" }, n.length > 24 ? `${n.slice(0, 23)}…` : n),
      h("svg:text", { x: x + 16, y: y + 40, class: "sub" }, sub));
  });
  // Room above for self-calls and below for calls back to an earlier column.
  const backEdges = edges.some((e) => pos.get(e.child).x <= pos.get(e.parent).x);
  const top = backEdges ? 30 : 0;
  const bottom = backEdges ? 50 : 0;
  const svg = h("svg:svg", {
    class: "diagram", viewBox: `0 ${-top} ${width} ${height + top + bottom}`, width, height: height + top + bottom,
    role: "group", "aria-label": `Service diagram: ${names.length} services, ${edges.length} call edges`,
  },
  h("svg:defs", {}, h("svg:marker", { id: "arrow", viewBox: "0 0 10 10", refX: 8, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" },
    h("svg:path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }))),
  edgeEls, nodeEls);

  const rows = [...edges].sort((a, b) => a.parent.localeCompare(b.parent) || a.child.localeCompare(b.child)).map((e) =>
    h("tr", {},
      h("th", { scope: "row" }, h("a", { href: `#/explore?${toQuery({ service: e.parent })}` }, e.parent)),
      h("td", {}, h("a", { href: `#/explore?${toQuery({ service: e.child })}` }, e.child)),
      h("td", { class: "num" }, fmtCount(e.calls))));
  replace(main, heading,
    h("p", { class: "hint" }, "Arrows point from caller to callee, from parent/child span links that cross services. Select a service to explore its traces."),
    h("div", { class: "diagram-wrap" }, svg),
    edges.length
      ? table(`${edges.length} call edge${edges.length === 1 ? "" : "s"}`, [{ label: "Caller" }, { label: "Callee" }, { label: "Calls", num: true }], rows, "edges")
      : h("p", { class: "hint" }, "No calls between services yet: every span's parent is in its own service."));
}
