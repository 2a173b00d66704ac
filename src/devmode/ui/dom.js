// Small DOM and formatting helpers shared by every screen. Elements are built with `h`, never
// from HTML strings, so span names, tags and log fields (all sent by tracers) are always text.

/** Creates an element: h("a", {href: "#/x", class: "y", onclick: fn}, "text", child, [more]). */
export function h(tag, attrs = {}, ...children) {
  const svg = tag.startsWith("svg:");
  const el = svg
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "style" && typeof value === "object") {
      Object.assign(el.style, value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

/** Replaces the children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Formats microseconds for people: 850µs, 12.3ms, 1.52s, 2m 03s. */
export function fmtDuration(us) {
  if (us === null || us === undefined || Number.isNaN(us)) return "–";
  if (us < 1000) return `${Math.round(us)}µs`;
  if (us < 1e6) return `${trim(us / 1000)}ms`;
  if (us < 60e6) return `${trim(us / 1e6)}s`;
  const s = Math.round(us / 1e6);
  return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
}

function trim(x) {
  return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
}

/** Wall-clock time of a microsecond Unix timestamp, to the millisecond, local time zone. */
export function fmtTime(us) {
  if (!us && us !== 0) return "–";
  const d = new Date(us / 1000);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  const today = new Date();
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  return d.toDateString() === today.toDateString() ? time : `${d.toLocaleDateString()} ${time}`;
}

/** An error rate (0..1) as a percentage. */
export function fmtRate(rate) {
  if (rate === null || rate === undefined) return "–";
  if (rate === 0) return "0%";
  const p = rate * 100;
  return `${p < 1 ? p.toFixed(2) : p < 10 ? p.toFixed(1) : p.toFixed(0)}%`;
}

/** Thousands separators. */
export function fmtCount(n) {
  return typeof n === "number" ? n.toLocaleString("en-US") : "–";
}

/**
 * A trace id as people know it: a 64-bit id (the API pads it to 32 hex digits with zeros on
 * the left) as its 16 digits, a 128-bit id whole.
 */
export function traceIdText(id) {
  const s = String(id || "");
  return s.length === 32 && s.startsWith("0000000000000000") ? s.slice(16) : s;
}

/** A stable colour per service name, so a service looks the same on every screen. */
export function serviceColor(name) {
  let hash = 0;
  for (const c of String(name)) hash = (hash * 31 + c.codePointAt(0)) >>> 0;
  return `hsl(${hash % 360} 60% 48%)`;
}

/** Makes a table row act as a link: focusable, Enter/Space or click runs `go`. */
export function linkRow(tr, label, go) {
  tr.tabIndex = 0;
  tr.classList.add("link-row");
  tr.setAttribute("aria-label", label);
  tr.addEventListener("click", (e) => {
    if (e.target.closest("a, button")) return;
    go();
  });
  tr.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      go();
    } else if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      const next = e.key === "ArrowDown" ? tr.nextElementSibling : tr.previousElementSibling;
      if (next && next.tabIndex === 0) {
        e.preventDefault();
        next.focus();
      }
    }
  });
  return tr;
}

/**
 * A table with a caption and column headers; `cols` is [{label, num?, sort?, onSort?}] where
 * `sort` is "ascending" / "descending" for the sorted column and `onSort` makes the header a
 * button that sorts by that column.
 */
export function table(caption, cols, rows, extraClass = "") {
  const header = (c) => {
    const attrs = { scope: "col", class: c.num ? "num" : "" };
    if (!c.onSort) return h("th", attrs, c.label);
    attrs["aria-sort"] = c.sort || "none";
    const arrow = c.sort === "ascending" ? " ▲" : c.sort === "descending" ? " ▼" : "";
    return h("th", attrs, h("button", { type: "button", class: "sort", onclick: c.onSort }, c.label,
      h("span", { "aria-hidden": "true" }, arrow)));
  };
  return h("table", { class: `data ${extraClass}`.trim() },
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, cols.map(header))),
    h("tbody", {}, rows));
}

/** Announces `text` to screen readers through the page's polite live region. */
export function announce(text) {
  const el = document.getElementById("announce");
  if (el) el.textContent = text;
}

/** A copy-to-clipboard button for the text of `pre`. */
export function copyButton(pre, what) {
  const button = h("button", { type: "button", class: "copy", "aria-label": `Copy ${what}` }, "Copy");
  button.addEventListener("click", async () => {
    const text = pre.textContent;
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      // Clipboard API needs a secure context; 127.0.0.1 is one, other hosts may not be.
      const range = document.createRange();
      range.selectNodeContents(pre);
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      document.execCommand("copy");
    }
    button.textContent = "Copied";
    announce(`${what} copied to the clipboard`);
    setTimeout(() => (button.textContent = "Copy"), 1500);
  });
  return button;
}
