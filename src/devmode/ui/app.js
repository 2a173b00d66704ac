// The single-page app: hash routing between the screens, and the header summary line.
//   #/services            service directory (default)
//   #/explore?service=..  explorer: query bar, latency histogram, example traces
//   #/trace/<trace id>    trace view: waterfall, critical path, span details
//   #/diagram             service diagram
//   #/live                live tail
//   #/status              satellite status and tracer setup snippets

import * as api from "./api.js";
import { h, replace, fmtCount } from "./dom.js";
import * as servicesView from "./services.js";
import * as exploreView from "./explore.js";
import * as traceView from "./trace.js";
import * as diagramView from "./diagram.js";
import * as liveView from "./live.js";
import * as statusView from "./status.js";

const routes = {
  services: { view: servicesView, title: "Services", nav: "services" },
  explore: { view: exploreView, title: "Explorer", nav: "explore" },
  trace: { view: traceView, title: "Trace", nav: "explore" },
  diagram: { view: diagramView, title: "Service diagram", nav: "diagram" },
  live: { view: liveView, title: "Live tail", nav: "live" },
  status: { view: statusView, title: "Status & setup", nav: "status" },
};

/** Splits the hash into a route name, a path argument and query parameters. */
export function parseHash(hash) {
  const raw = hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?", 2);
  const [name, ...rest] = path.split("/");
  return {
    name: routes[name] ? name : "services",
    arg: rest.length ? decodeURIComponent(rest.join("/")) : "",
    params: new URLSearchParams(query),
  };
}

let current = null; // { controller, cleanup }
let firstRender = true;
// Scroll positions by hash, so Back returns to where the list was read, not to its top.
const scrolls = new Map();
let shownHash = location.hash;

async function render() {
  const main = document.getElementById("main");
  const { name, arg, params } = parseHash(location.hash);
  const route = routes[name];
  if (current) {
    current.controller.abort();
    if (typeof current.cleanup === "function") current.cleanup();
  }
  scrolls.set(shownHash, window.scrollY);
  shownHash = location.hash;
  const controller = new AbortController();
  current = { controller, cleanup: null };
  for (const a of document.querySelectorAll("nav a[data-route]")) {
    if (a.dataset.route === route.nav) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.title = `${route.title} · cubesat`;
  document.body.dataset.route = name;
  replace(main, h("p", { class: "loading" }, "Loading…"));
  if (!firstRender) main.focus({ preventScroll: true });
  firstRender = false;
  try {
    const cleanup = await route.view.render(main, { arg, params, signal: controller.signal });
    if (controller.signal.aborted) {
      if (typeof cleanup === "function") cleanup();
    } else {
      current.cleanup = cleanup;
      const y = scrolls.get(location.hash);
      if (y) window.scrollTo(0, y);
    }
  } catch (e) {
    if (controller.signal.aborted) return;
    replace(main,
      h("h1", {}, route.title),
      h("p", { class: "error", role: "alert" }, e.message || String(e)));
  }
}

async function refreshSummary() {
  const el = document.getElementById("summary");
  try {
    // The status answer is O(services): no percentiles computed for a header line.
    const st = await api.status();
    replace(el, `${fmtCount(st.spans.stored)} spans · ${fmtCount(st.services)} services · ${fmtCount(st.spans.errors)} errors`);
    el.classList.remove("offline");
  } catch {
    replace(el, "cubesat unreachable");
    el.classList.add("offline");
  }
}

// The header's box: a trace id (16 or 32 hex digits, as any tool prints it) opens that trace.
document.getElementById("open-trace")?.addEventListener("submit", (e) => {
  e.preventDefault();
  const input = document.getElementById("open-trace-id");
  const id = input.value.trim().toLowerCase().replace(/^0x/, "");
  if (!/^([0-9a-f]{16}|[0-9a-f]{32})$/.test(id)) {
    input.setAttribute("aria-invalid", "true");
    input.title = "A trace id is 16 or 32 hex digits";
    return;
  }
  input.removeAttribute("aria-invalid");
  input.value = "";
  location.hash = `#/trace/${id.padStart(32, "0")}`;
});

// Choosing the screen already shown reloads its data (no hashchange fires for it).
document.addEventListener("click", (e) => {
  const link = e.target.closest("a[href^='#/']");
  if (link && link.getAttribute("href") === location.hash && !e.defaultPrevented) {
    render();
    refreshSummary();
  }
});
window.addEventListener("hashchange", () => {
  render();
  refreshSummary();
});
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) refreshSummary();
});
setInterval(() => {
  if (!document.hidden) refreshSummary();
}, 5000);
render();
refreshSummary();
