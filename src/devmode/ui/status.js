// Status and setup: the satellite's own state from /api/status (listeners, spans received,
// dropped and evicted, store use, upstream) and copy-paste snippets that point common tracers
// at this cubesat's ingest address.

import * as api from "./api.js";
import { h, replace, fmtCount, copyButton } from "./dom.js";

function bytes(n) {
  if (typeof n !== "number") return "–";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

/** Host and port of an "ip:port" or "[v6]:port" listener address. */
function hostPort(addr, fallbackPort) {
  const m = /^(.*):(\d+)$/.exec(addr || "");
  let host = m ? m[1] : location.hostname;
  const port = m ? m[2] : fallbackPort;
  if (host === "0.0.0.0" || host === "[::]") host = "127.0.0.1";
  return { host, port, addr: `${host}:${port}` };
}

/** Renders the status page into `main`. */
export async function render(main, { signal }) {
  const s = await api.status();
  if (signal.aborted) return;
  const ingest = hostPort(s.listeners?.ingest, "8360");
  const kv = (label, value, id) => h("div", {}, h("dt", {}, label), h("dd", { id }, value));
  const spans = s.spans || {};
  const store = s.store || {};
  const used = typeof store.used_bytes === "number" && store.limit_bytes ? store.used_bytes / store.limit_bytes : null;
  const meter = used === null ? null
    : h("meter", { min: 0, max: 1, value: used.toFixed(4), high: 0.9, "aria-label": "Store use" });

  const cards = h("div", { class: "cards" },
    h("section", { class: "card", "aria-labelledby": "st-listeners" },
      h("h2", { id: "st-listeners" }, "Listeners"),
      h("dl", {},
        kv("Ingest (plain, every protocol)", s.listeners?.ingest || "–", "status-ingest"),
        kv("Ingest TLS", s.listeners?.tls || "off"),
        kv("Admin + this UI", s.listeners?.admin || location.host),
        kv("Version", s.version || "–"),
        kv("Mode", s.mode || "–"))),
    h("section", { class: "card", "aria-labelledby": "st-spans" },
      h("h2", { id: "st-spans" }, "Spans"),
      h("dl", {},
        kv("Received", fmtCount(spans.received), "status-received"),
        kv("Stored", fmtCount(spans.stored)),
        kv("Dropped before storing", fmtCount(spans.dropped), "status-dropped"),
        kv("Evicted (oldest traces)", fmtCount(spans.evicted)),
        kv("Traces stored", fmtCount(s.traces?.stored)))),
    h("section", { class: "card", "aria-labelledby": "st-store" },
      h("h2", { id: "st-store" }, "Store"),
      h("dl", {},
        kv("Memory used", [`${bytes(store.used_bytes)} of ${bytes(store.limit_bytes)}`,
          meter ? h("br") : null, meter, meter ? ` ${(100 * used).toFixed(1)}%` : null]),
        kv("Forwarding", s.upstream ? `${s.upstream.url} (${s.upstream.reachable ? "reachable" : "unreachable"})` : "off (no --upstream)"))));

  const snippet = (id, title, intro, code) => {
    const pre = h("pre", { id: `snippet-${id}`, tabindex: "0", "aria-label": `${title} snippet` }, h("code", {}, code));
    return h("section", { class: "snippet", "aria-labelledby": `sn-${id}` },
      h("div", { class: "snippet-head" }, h("h3", { id: `sn-${id}` }, title), copyButton(pre, `${title} snippet`)),
      intro ? h("p", {}, intro) : null,
      pre);
  };
  const { host, port, addr } = ingest;
  const snippets = [
    snippet("otel-grpc", "OpenTelemetry SDK, OTLP/gRPC",
      "Any OTel SDK reads these variables (Java agent, Python, Go, Node, .NET). The token is optional in developer mode.",
      `export OTEL_SERVICE_NAME=my-service
export OTEL_TRACES_EXPORTER=otlp
export OTEL_EXPORTER_OTLP_PROTOCOL=grpc
export OTEL_EXPORTER_OTLP_ENDPOINT=http://${addr}
export OTEL_EXPORTER_OTLP_HEADERS=lightstep-access-token=developer`),
    snippet("otel-http", "OpenTelemetry SDK, OTLP/HTTP",
      "The same over HTTP (the SDK appends /v1/traces):",
      `export OTEL_SERVICE_NAME=my-service
export OTEL_TRACES_EXPORTER=otlp
export OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf
export OTEL_EXPORTER_OTLP_ENDPOINT=http://${addr}`),
    snippet("envoy", "Envoy (OpenTelemetry tracer)",
      "In the http_connection_manager, plus a cluster speaking HTTP/2 to cubesat:",
      `tracing:
  random_sampling: {value: 100}
  provider:
    name: envoy.tracers.opentelemetry
    typed_config:
      "@type": type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig
      service_name: my-envoy
      grpc_service:
        envoy_grpc: {cluster_name: cubesat}
# under static_resources.clusters:
- name: cubesat
  type: STRICT_DNS
  typed_extension_protocol_options:
    envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
      "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
      explicit_http_config: {http2_protocol_options: {}}
  load_assignment:
    cluster_name: cubesat
    endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: ${host}, port_value: ${port}}}}}]}]`),
    snippet("istio", "Istio >= 1.16",
      "Sidecars export OTLP through the lightstep extension provider. Run cubesat where the mesh can reach it (e.g. --listen 0.0.0.0:8360) and use that address:",
      `meshConfig:
  extensionProviders:
  - name: cubesat
    lightstep:
      service: cubesat.istio-system.svc.cluster.local   # or the host running cubesat
      port: ${port}
      accessToken: developer
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  tracing:
  - providers: [{name: cubesat}]
    randomSamplingPercentage: 100`),
    snippet("ls-python", "Lightstep tracer, Python",
      null,
      `import lightstep
tracer = lightstep.Tracer(
    component_name="my-service",
    access_token="developer",
    collector_host="${host}",
    collector_port=${port},
    collector_encryption="none",
    use_http=True,
)`),
    snippet("ls-go", "Lightstep tracer, Go",
      null,
      `tracer := lightstep.NewTracer(lightstep.Options{
    AccessToken: "developer",
    Collector:   lightstep.Endpoint{Host: "${host}", Port: ${port}, Plaintext: true},
    Tags:        opentracing.Tags{lightstep.ComponentNameKey: "my-service"},
    UseGRPC:     true,
})`),
    snippet("ls-js", "Lightstep tracer, JavaScript (Node)",
      null,
      `const tracer = new lightstep.Tracer({
  access_token: "developer",
  component_name: "my-service",
  collector_host: "${host}",
  collector_port: ${port},
  collector_encryption: "none",
});`),
  ];

  replace(main,
    h("h1", {}, "Status & setup"),
    cards,
    h("h2", {}, "Point a tracer at this cubesat"),
    h("p", {}, "One ingest port takes every protocol: OTLP over gRPC or HTTP, and Lightstep tracer reports. Ingest address: ",
      h("code", {}, addr), "."),
    h("div", { class: "snippets" }, snippets));
}
