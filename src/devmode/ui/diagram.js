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

const DUMMY_H = 10;
const DUMMY_GAP = 8;

/**
 * A layered layout: columns by call depth, an edge that skips columns passes through a slot of
 * its own in every column it crosses (so it never runs through a node), and each column is
 * ordered by the mean position of what feeds it, twice over, so edges cross less.
 * Returns node boxes and, per edge, the points it passes through.
 */
export function layout(names, edges) {
  const depth = layers(names, edges);
  const columns = [];
  const items = new Map(); // id -> {id, col, node: name | null, h}
  const add = (id, col, node) => {
    const item = { id, col, node, h: node ? NODE_H : DUMMY_H, order: 0, y: 0 };
    items.set(id, item);
    (columns[col] ||= []).push(item);
    return item;
  };
  for (const n of names) add(`n:${n}`, depth.get(n), n);
  for (let c = 0; c < columns.length; c++) columns[c] ||= [];
  const links = []; // [from id, to id]
  const routes = edges.map((e, i) => {
    const a = depth.get(e.parent);
    const b = depth.get(e.child);
    if (e.parent === e.child || b <= a) return { edge: e, chain: null };
    const chain = [`n:${e.parent}`];
    for (let c = a + 1; c < b; c++) chain.push(add(`d:${i}:${c}`, c, null).id);
    chain.push(`n:${e.child}`);
    for (let k = 1; k < chain.length; k++) links.push([chain[k - 1], chain[k]]);
    return { edge: e, chain };
  });
  const preds = new Map([...items.keys()].map((k) => [k, []]));
  for (const [from, to] of links) preds.get(to).push(from);
  columns.forEach((col) => col.sort((x, y) => (x.node || "~").localeCompare(y.node || "~")).forEach((it, r) => (it.order = r)));
  for (let pass = 0; pass < 2; pass++) {
    for (let c = 1; c < columns.length; c++) {
      const bary = (it) => {
        const p = preds.get(it.id).map((id) => items.get(id).order);
        return p.length ? p.reduce((s, v) => s + v, 0) / p.length : it.order;
      };
      columns[c].sort((x, y) => bary(x) - bary(y) || x.order - y.order);
      columns[c].forEach((it, r) => (it.order = r));
    }
  }
  const colHeight = (col) => col.reduce((s, it) => s + it.h, 0) + col.reduce((s, it, i) => s + (i ? (it.node && col[i - 1].node ? ROW_GAP : DUMMY_GAP) : 0), 0);
  const tallest = Math.max(...columns.map(colHeight));
  columns.forEach((col) => {
    let y = PAD + (tallest - colHeight(col)) / 2;
    col.forEach((it, i) => {
      if (i) y += it.node && col[i - 1].node ? ROW_GAP : DUMMY_GAP;
      it.y = y;
      y += it.h;
    });
  });
  const colX = (c) => PAD + c * (NODE_W + COL_GAP);
  const pos = new Map(names.map((n) => {
    const it = items.get(`n:${n}`);
    return [n, { x: colX(it.col), y: it.y }];
  }));
  for (const r of routes) {
    if (!r.chain) continue;
    r.points = r.chain.map((id) => {
      const it = items.get(id);
      return { x0: colX(it.col), x1: colX(it.col) + NODE_W, y: it.y + it.h / 2, node: !!it.node };
    });
  }
  return {
    pos, routes, width: PAD * 2 + columns.length * NODE_W + (columns.length - 1) * COL_GAP,
    height: PAD * 2 + tallest,
  };
}

/** Renders the diagram into `main`. */
export async function render(main, { params, signal }) {
  const [{ edges: allEdges }, { services }] = await Promise.all([api.dependencies(), api.services()]);
  if (signal.aborted) return;
  const minCalls = Math.max(1, Number(params.get("min_calls")) || 1);
  const edges = allEdges.filter((e) => e.calls >= minCalls);
  const stats = new Map(services.map((s) => [s.name, s]));
  const names = [...new Set([...services.map((s) => s.name), ...allEdges.flatMap((e) => [e.parent, e.child])])].sort();
  const heading = h("h1", {}, "Service diagram");
  if (!names.length) {
    replace(main, heading, h("p", { class: "empty" }, "No spans yet, so no services to draw."));
    return;
  }
  const { pos, routes, width, height } = layout(names, edges);

  const maxCalls = Math.max(1, ...edges.map((e) => e.calls));
  const edgeEls = routes.map(({ edge: e, points }) => {
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
    } else if (points) {
      // Through its own slot in every column it crosses: a curve per gap, straight across.
      const first = points[0];
      d = `M${first.x1},${first.y}`;
      for (let k = 1; k < points.length; k++) {
        const p = points[k - 1];
        const q = points[k];
        const mx = (p.x1 + q.x0) / 2;
        d += ` C${mx},${p.y} ${mx},${q.y} ${q.node ? q.x0 - 6 : q.x0},${q.y}`;
        if (!q.node) d += ` L${q.x1},${q.y}`;
      }
      // The label in the middle gap of the route, so the labels of one caller's edges spread.
      const k = Math.floor((points.length - 1) / 2);
      const p = points[k];
      const q = points[k + 1];
      lx = (p.x1 + q.x0) / 2;
      ly = (p.y + q.y) / 2 - 4;
    } else {
      // A call back to an earlier column (a cycle): arc under the nodes.
      const x1 = a.x + NODE_W / 2;
      const y1 = a.y + NODE_H;
      const x2 = b.x + NODE_W / 2;
      const y2 = b.y + NODE_H + 6;
      const dip = height + 20;
      d = `M${x1},${y1} C${x1},${dip} ${x2},${dip} ${x2},${y2}`;
      lx = (x1 + x2) / 2;
      ly = dip - 8;
    }
    return h("svg:g", { class: "edge", dataset: { parent: e.parent, child: e.child } },
      h("svg:title", {}, `${e.parent} → ${e.child}: ${fmtCount(e.calls)} calls`),
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
  const backEdges = routes.some((r) => !r.points && r.edge.parent !== r.edge.child);
  const top = 30;
  const bottom = backEdges ? 50 : 0;
  const fullH = height + top + bottom;
  const svg = h("svg:svg", {
    class: "diagram", viewBox: `0 ${-top} ${width} ${fullH}`,
    role: "group", "aria-label": `Service diagram: ${names.length} services, ${edges.length} call edges`,
  },
  h("svg:defs", {}, h("svg:marker", { id: "arrow", viewBox: "0 0 10 10", refX: 8, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" },
    h("svg:path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }))),
  edgeEls, nodeEls);

  // Zoom: the drawing keeps its natural size at 100% (text stays readable) and the frame
  // scrolls; drag to pan, Ctrl+wheel or the buttons to zoom, "Fit" to see it whole.
  const wrap = h("div", { class: "diagram-wrap", tabindex: "0", "aria-label": "Service diagram; scroll or drag to pan" }, svg);
  const zoomText = h("span", { class: "hint", id: "diagram-zoom", "aria-live": "polite" });
  let scale = 1;
  const setScale = (s, cx, cy) => {
    const old = scale;
    scale = Math.min(3, Math.max(0.2, s));
    const fx = cx ?? wrap.clientWidth / 2;
    const fy = cy ?? wrap.clientHeight / 2;
    const px = (wrap.scrollLeft + fx) / old;
    const py = (wrap.scrollTop + fy) / old;
    svg.setAttribute("width", String(Math.round(width * scale)));
    svg.setAttribute("height", String(Math.round(fullH * scale)));
    wrap.scrollLeft = px * scale - fx;
    wrap.scrollTop = py * scale - fy;
    zoomText.textContent = `${Math.round(scale * 100)}%`;
  };
  const fit = () => setScale(Math.min(1, (wrap.clientWidth - 20) / width, (wrap.clientHeight - 20) / fullH));
  wrap.addEventListener("wheel", (e) => {
    if (!e.ctrlKey && !e.metaKey) return;
    e.preventDefault();
    const r = wrap.getBoundingClientRect();
    setScale(scale * (e.deltaY < 0 ? 1.15 : 1 / 1.15), e.clientX - r.left, e.clientY - r.top);
  }, { passive: false });
  wrap.addEventListener("pointerdown", (e) => {
    if (e.target.closest("a") || e.button !== 0) return;
    const sx = e.clientX + wrap.scrollLeft;
    const sy = e.clientY + wrap.scrollTop;
    wrap.classList.add("panning");
    const move = (ev) => {
      wrap.scrollLeft = sx - ev.clientX;
      wrap.scrollTop = sy - ev.clientY;
    };
    const up = () => {
      wrap.classList.remove("panning");
      window.removeEventListener("pointermove", move);
      window.removeEventListener("pointerup", up);
    };
    window.addEventListener("pointermove", move);
    window.addEventListener("pointerup", up);
  });
  const minInput = h("input", { id: "min-calls", type: "number", min: "1", value: String(minCalls), "aria-describedby": "min-calls-hint", style: { width: "6rem" } });
  const filterForm = h("form", { class: "diagram-tools", role: "toolbar", "aria-label": "Diagram tools" },
    h("label", { for: "min-calls" }, "Minimum calls per edge"), minInput,
    h("button", { type: "submit" }, "Apply"),
    h("small", { id: "min-calls-hint", class: "hint" }, edges.length < allEdges.length ? `${allEdges.length - edges.length} of ${allEdges.length} edges hidden` : "all edges shown"),
    h("span", { class: "spacer" }),
    h("button", { type: "button", "aria-label": "Zoom out", onclick: () => setScale(scale / 1.25) }, "−"),
    zoomText,
    h("button", { type: "button", "aria-label": "Zoom in", onclick: () => setScale(scale * 1.25) }, "+"),
    h("button", { type: "button", onclick: () => setScale(1) }, "100%"),
    h("button", { type: "button", id: "diagram-fit", onclick: fit }, "Fit"));
  filterForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const n = Math.max(1, Math.floor(Number(minInput.value) || 1));
    const next = new URLSearchParams(params);
    if (n > 1) next.set("min_calls", String(n));
    else next.delete("min_calls");
    location.hash = `#/diagram${next.toString() ? `?${next}` : ""}`;
  });

  const rows = [...edges].sort((a, b) => a.parent.localeCompare(b.parent) || a.child.localeCompare(b.child)).map((e) =>
    h("tr", {},
      h("th", { scope: "row" }, h("a", { href: `#/explore?${toQuery({ service: e.parent })}` }, e.parent)),
      h("td", {}, h("a", { href: `#/explore?${toQuery({ service: e.child })}` }, e.child)),
      h("td", { class: "num" }, fmtCount(e.calls))));
  replace(main, heading,
    h("p", { class: "hint" }, "Arrows point from caller to callee, from parent/child span links that cross services. Select a service to explore its traces."),
    filterForm,
    wrap,
    edges.length
      ? table(`${edges.length} call edge${edges.length === 1 ? "" : "s"}`, [{ label: "Caller" }, { label: "Callee" }, { label: "Calls", num: true }], rows, "edges")
      : h("p", { class: "hint" }, "No calls between services yet: every span's parent is in its own service."));
  setScale(1);
  // Start fitted when that stays readable, else at 100% from the left.
  if (wrap.clientWidth / width >= 0.75) fit();
}
