// Service directory: every service with its span count, error rate and latency percentiles;
// selecting one lists its operations. After Lightstep's service directory.

import * as api from "./api.js";
import { h, replace, table, linkRow, fmtCount, fmtDuration, fmtRate, serviceColor } from "./dom.js";
import { toQuery } from "./api.js";

const SORT_KEYS = ["name", "operations", "spans", "errors", "error_rate", "p50_us", "p95_us", "p99_us"];

const latencyCols = [
  { label: "p50", num: true },
  { label: "p95", num: true },
  { label: "p99", num: true },
];

function latencyCells(x) {
  return [
    h("td", { class: "num" }, fmtDuration(x.p50_us)),
    h("td", { class: "num" }, fmtDuration(x.p95_us)),
    h("td", { class: "num" }, fmtDuration(x.p99_us)),
  ];
}

/** Renders the directory into `main`; `?service=` selects a service. */
export async function render(main, { params, signal }) {
  const { services } = await api.services();
  if (signal.aborted) return;
  const selected = params.get("service") || "";
  const heading = h("h1", {}, "Services");
  if (!services.length) {
    replace(main, heading, emptyState());
    return;
  }
  // Sorting lives in the hash (?sort=p99_us&dir=desc) so Back and bookmarks keep it.
  const sortKey = SORT_KEYS.includes(params.get("sort")) ? params.get("sort") : "name";
  const dir = params.get("dir") === "desc" ? -1 : 1;
  services.sort((a, b) => {
    const x = a[sortKey];
    const y = b[sortKey];
    const c = typeof x === "string" ? x.localeCompare(y) : (x ?? -1) - (y ?? -1);
    return dir * c || a.name.localeCompare(b.name);
  });
  const sortable = (label, key, num) => ({
    label, num, sort: key === sortKey ? (dir === 1 ? "ascending" : "descending") : undefined,
    onSort: () => {
      const next = new URLSearchParams(params);
      next.set("sort", key);
      // Numbers start largest first (the busiest, slowest, most failing service on top).
      const first = num ? "desc" : "asc";
      next.set("dir", key === sortKey ? (dir === 1 ? "desc" : "asc") : first);
      location.hash = `#/services?${next}`;
    },
  });
  const rows = services.map((s) => {
    const select = `#/services?${toQuery({ service: s.name, sort: params.get("sort"), dir: params.get("dir") })}`;
    const go = () => (location.hash = select);
    const tr = h("tr", { class: s.name === selected ? "selected" : "", "aria-current": s.name === selected ? "true" : undefined, dataset: { service: s.name } },
      h("th", { scope: "row" },
        h("span", { class: "swatch", style: { background: serviceColor(s.name) }, "aria-hidden": "true" }),
        h("a", { href: select }, s.name)),
      h("td", { class: "num" }, fmtCount(s.operations)),
      h("td", { class: "num" }, fmtCount(s.spans)),
      h("td", { class: `num ${s.errors ? "has-errors" : ""}` }, fmtCount(s.errors)),
      h("td", { class: `num ${s.errors ? "has-errors" : ""}` }, fmtRate(s.error_rate)),
      latencyCells(s),
      h("td", {}, h("a", { href: `#/explore?${toQuery({ service: s.name })}`, "aria-label": `Explore traces of ${s.name}` }, "Explore →")));
    return linkRow(tr, `${s.name}: ${fmtCount(s.spans)} spans, ${fmtRate(s.error_rate)} errors, p99 ${fmtDuration(s.p99_us)}`, go);
  });
  const directory = table(`${services.length} services seen since start`, [
    sortable("Service", "name", false),
    sortable("Operations", "operations", true),
    sortable("Spans", "spans", true),
    sortable("Errors", "errors", true),
    sortable("Error rate", "error_rate", true),
    sortable("p50", "p50_us", true),
    sortable("p95", "p95_us", true),
    sortable("p99", "p99_us", true),
    { label: "Explore" },
  ], rows, "services");
  directory.id = "service-directory";

  const panel = h("section", { class: "operations", "aria-labelledby": "ops-heading" });
  replace(main, heading, h("div", { class: "directory" }, h("section", { "aria-label": "Service list" }, directory), panel));
  if (selected) {
    await renderOperations(panel, selected, signal);
  } else {
    replace(panel, h("h2", { id: "ops-heading" }, "Operations"),
      h("p", { class: "hint" }, "Select a service to see its operations."));
  }
}

async function renderOperations(panel, service, signal) {
  replace(panel, h("h2", { id: "ops-heading" }, "Operations of ", h("span", { class: "svc" }, service)), h("p", { class: "loading" }, "Loading…"));
  let operations;
  try {
    ({ operations } = await api.operations(service));
  } catch (e) {
    if (!signal.aborted) replace(panel, h("h2", { id: "ops-heading" }, service), h("p", { class: "error", role: "alert" }, e.message));
    return;
  }
  if (signal.aborted) return;
  operations.sort((a, b) => b.spans - a.spans || a.name.localeCompare(b.name));
  const rows = operations.map((op) => {
    const href = `#/explore?${toQuery({ service, operation: op.name })}`;
    const tr = h("tr", { dataset: { operation: op.name } },
      h("th", { scope: "row" }, h("a", { href }, op.name)),
      h("td", { class: "num" }, fmtCount(op.spans)),
      h("td", { class: `num ${op.errors ? "has-errors" : ""}` }, fmtCount(op.errors)),
      h("td", { class: `num ${op.errors ? "has-errors" : ""}` }, fmtRate(op.spans ? op.errors / op.spans : 0)),
      latencyCells(op));
    return linkRow(tr, `${op.name}: ${fmtCount(op.spans)} spans, p99 ${fmtDuration(op.p99_us)}; open in explorer`, () => (location.hash = href));
  });
  replace(panel,
    h("h2", { id: "ops-heading" }, "Operations of ", h("span", { class: "svc" }, service)),
    h("p", {}, h("a", { href: `#/explore?${toQuery({ service })}` }, `Explore all traces of ${service} →`)),
    table(`${operations.length} operations`, [
      { label: "Operation" },
      { label: "Spans", num: true },
      { label: "Errors", num: true },
      { label: "Error rate", num: true },
      ...latencyCols,
    ], rows, "operations-table"));
}

function emptyState() {
  return h("div", { class: "empty" },
    h("p", {}, "No spans yet. Point a tracer at this cubesat's ingest port and they appear here."),
    h("p", {}, h("a", { href: "#/status" }, "Setup snippets for the OTel SDK, Envoy/Istio and Lightstep tracers →")));
}
