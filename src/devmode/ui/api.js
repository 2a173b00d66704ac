// The JSON API client: one function per endpoint under /api/ (the contract is in devmode.md /
// src/devmode/api.rs). Errors carry the server's `{"error": "..."}` message.

/** An API call that failed; `message` is what the server said. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function get(path, params, method = "GET") {
  const qs = params ? toQuery(params) : "";
  let response;
  try {
    response = await fetch(qs ? `${path}?${qs}` : path, { method, headers: { accept: "application/json" } });
  } catch (e) {
    throw new ApiError(0, `cubesat is not reachable (${e.message}); is it still running?`);
  }
  const text = await response.text();
  let body;
  try {
    body = text ? JSON.parse(text) : {};
  } catch {
    throw new ApiError(response.status, `${path}: answer is not JSON (HTTP ${response.status})`);
  }
  if (!response.ok) {
    throw new ApiError(response.status, body.error || `${path}: HTTP ${response.status}`);
  }
  return body;
}

/**
 * Query string from an object; arrays repeat the key (tag=a=b&tag=c=d); empty values are left
 * out so the server sees only the filters the user set.
 */
export function toQuery(params) {
  const qs = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "" || value === false) continue;
    for (const v of Array.isArray(value) ? value : [value]) qs.append(key, String(v));
  }
  return qs.toString();
}

export const services = () => get("/api/services");
export const operations = (service) => get(`/api/services/${encodeURIComponent(service)}/operations`);
export const traces = (filters) => get("/api/traces", filters);
export const trace = (id, fields) => get(`/api/traces/${encodeURIComponent(id)}`, fields ? { fields } : null);
export const pin = (id) => get(`/api/traces/${encodeURIComponent(id)}/pin`, null, "PUT");
export const unpin = (id) => get(`/api/traces/${encodeURIComponent(id)}/pin`, null, "DELETE");
export const latency = (filters, buckets) => get("/api/latency", { ...filters, buckets, scale: "log" });
export const dependencies = () => get("/api/dependencies");
export const status = () => get("/api/status");

/** Opens the live span stream; returns the EventSource (close it when leaving the screen). */
export function live(onSpan, onLagged, onState) {
  const source = new EventSource("/api/live");
  source.addEventListener("message", (e) => {
    try {
      onSpan(JSON.parse(e.data));
    } catch {
      // A malformed event is skipped; the next one is independent.
    }
  });
  // The server skips spans for a client that falls behind and says how many.
  source.addEventListener("lagged", (e) => {
    try {
      onLagged(JSON.parse(e.data).skipped);
    } catch {
      onLagged(NaN);
    }
  });
  source.addEventListener("open", () => onState("open"));
  source.addEventListener("error", () =>
    onState(source.readyState === EventSource.CLOSED ? "closed" : "reconnecting"));
  return source;
}
