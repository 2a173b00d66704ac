"""Sends exactly the spans described on stdin with the real OpenTelemetry Python SDK.

Usage: otel_spans.py grpc|http ENDPOINT < spec.json

spec.json is a list of spans, parents before children:
  {"label": "a", "parent": null | "<label>", "service": "productpage", "name": "GET /x",
   "kind": "server", "start_us": 0, "duration_us": 5000, "attributes": {...},
   "error": false, "events": [{"name": "retry", "offset_us": 10, "attributes": {...}}]}
A span without a parent starts a new trace. `start_us` is relative to a base time one minute
ago, so the test controls every duration and ordering exactly. Each service gets its own
resource (service.name). Each trace is exported in its own request, in the order the spec
starts them.

Prints, as JSON on stdout, {label: {"trace_id", "span_id", "start_us"}} (hex ids, absolute
start in microseconds since the epoch). Exits 1 if the exporter reports a failure.
"""

import json
import sys
import time

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

KINDS = {
    "internal": SpanKind.INTERNAL,
    "server": SpanKind.SERVER,
    "client": SpanKind.CLIENT,
    "producer": SpanKind.PRODUCER,
    "consumer": SpanKind.CONSUMER,
}


def main() -> int:
    protocol, endpoint = sys.argv[1:3]
    spec = json.load(sys.stdin)
    headers = {"lightstep-access-token": "developer"}
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True, headers=headers)
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=endpoint, headers=headers)

    memory = InMemorySpanExporter()
    providers = {}

    def tracer(service):
        if service not in providers:
            provider = TracerProvider(resource=Resource.create({"service.name": service}))
            provider.add_span_processor(SimpleSpanProcessor(memory))
            providers[service] = provider
        return providers[service].get_tracer("cubesat-devmode-test", "1.0")

    base_ns = (time.time_ns() // 1000 - 60_000_000) * 1000
    made = {}
    for s in spec:
        parent = made[s["parent"]] if s.get("parent") else None
        ctx = trace.set_span_in_context(parent) if parent else otel_context.Context()
        start = base_ns + s["start_us"] * 1000
        span = tracer(s["service"]).start_span(
            s["name"],
            context=ctx,
            kind=KINDS[s.get("kind", "internal")],
            attributes=s.get("attributes", {}),
            start_time=start,
        )
        for event in s.get("events", []):
            span.add_event(
                event["name"], event.get("attributes", {}), start + event["offset_us"] * 1000
            )
        if s.get("error"):
            span.set_status(Status(StatusCode.ERROR, s.get("status_message", "failed")))
        span.end(end_time=start + s["duration_us"] * 1000)
        made[s["label"]] = span

    finished = memory.get_finished_spans()
    traces = []
    for span in finished:
        if span.context.trace_id not in traces:
            traces.append(span.context.trace_id)
    ok = True
    for trace_id in sorted(traces, key=lambda t: min(
            s.start_time for s in finished if s.context.trace_id == t)):
        batch = [s for s in finished if s.context.trace_id == trace_id]
        ok = exporter.export(batch) == SpanExportResult.SUCCESS and ok
    exporter.shutdown()
    out = {
        label: {
            "trace_id": format(span.context.trace_id, "032x"),
            "span_id": format(span.context.span_id, "016x"),
            "start_us": span.start_time // 1000,
        }
        for label, span in made.items()
    }
    print(json.dumps(out))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
