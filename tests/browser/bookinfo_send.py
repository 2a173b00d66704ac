"""Sends Bookinfo-like traces to cubesat with the real OpenTelemetry Python SDK over OTLP/gRPC.

Usage: bookinfo_send.py ENDPOINT TRACES [ERROR_INDEX]

Each trace is one page load the way Istio's Bookinfo sample makes it, with a client span on the
caller's side and a server span on the callee's side of every call, each service with its own
resource (service.name):

  productpage  GET /productpage (server)
  ├─ productpage GET details (client) ─ details GET /details (server)
  └─ productpage GET reviews (client) ─ reviews GET /reviews (server)
                                        └─ reviews GET ratings (client) ─ ratings GET /ratings (server)

Trace number ERROR_INDEX (default 1) fails in ratings: its server span has status ERROR.
Prints, as JSON on stdout, every span sent (hex ids, parent, service, name, attributes).
Exits 1 if an export fails.
"""

import json
import sys
import time

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

SERVICES = ["productpage", "details", "reviews", "ratings"]


def main() -> int:
    endpoint = sys.argv[1]
    count = int(sys.argv[2])
    error_index = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    memory = InMemorySpanExporter()
    tracers = {}
    providers = []
    for name in SERVICES:
        provider = TracerProvider(
            resource=Resource.create({"service.name": name, "service.version": "v1"})
        )
        provider.add_span_processor(SimpleSpanProcessor(memory))
        providers.append(provider)
        tracers[name] = provider.get_tracer("bookinfo", "1.0")

    def pause(ms):
        time.sleep(ms / 1000.0)

    def call(caller, callee, path, server_work):
        """A client span in `caller` around a server span in `callee` (proxy-style pair)."""
        with tracers[caller].start_as_current_span(
            f"GET {callee}", kind=SpanKind.CLIENT,
            attributes={"http.method": "GET", "http.url": f"http://{callee}:9080{path}",
                        "upstream_cluster": f"outbound|9080||{callee}.default.svc.cluster.local"},
        ):
            pause(1)
            with tracers[callee].start_as_current_span(
                f"GET /{callee}", kind=SpanKind.SERVER,
                attributes={"http.method": "GET", "http.target": path, "node_id": f"{callee}-v1-0"},
            ) as server:
                server_work(server)
            pause(1)

    for i in range(count):
        failing = i == error_index

        def ratings(span):
            pause(3 + i % 3)
            if failing:
                span.set_attribute("http.status_code", 503)
                span.set_status(Status(StatusCode.ERROR, "ratings unavailable"))
                span.add_event("upstream reset", {"reason": "connection refused", "attempt": 1})
            else:
                span.set_attribute("http.status_code", 200)

        def reviews(span):
            span.set_attribute("reviews.version", "v2")
            span.add_event("cache miss", {"key": f"reviews:{i}"})
            call("reviews", "ratings", f"/ratings/{i}", ratings)
            span.set_attribute("http.status_code", 200)

        def details(span):
            pause(2)
            span.set_attribute("http.status_code", 200)

        with tracers["productpage"].start_as_current_span(
            "GET /productpage", kind=SpanKind.SERVER,
            attributes={"http.method": "GET", "http.target": "/productpage", "user_agent": "curl"},
        ) as root:
            call("productpage", "details", f"/details/{i}", details)
            call("productpage", "reviews", f"/reviews/{i}", reviews)
            root.set_attribute("http.status_code", 200)

    spans = memory.get_finished_spans()
    exporter = OTLPSpanExporter(
        endpoint=endpoint, insecure=True, headers={"lightstep-access-token": "developer"}
    )
    result = exporter.export(spans)
    exporter.shutdown()
    for provider in providers:
        provider.shutdown()
    out = []
    for s in spans:
        out.append(
            {
                "trace_id": format(s.context.trace_id, "032x"),
                "span_id": format(s.context.span_id, "016x"),
                "parent_span_id": format(s.parent.span_id, "016x") if s.parent else None,
                "service": s.resource.attributes["service.name"],
                "name": s.name,
                "kind": s.kind.name.lower(),
                "error": s.status.status_code == StatusCode.ERROR,
                "attributes": {k: v for k, v in s.attributes.items()},
            }
        )
    print(json.dumps(out))
    return 0 if result == SpanExportResult.SUCCESS else 1


if __name__ == "__main__":
    sys.exit(main())
