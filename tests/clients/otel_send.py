"""Sends a small nested trace to cubesat with the real OpenTelemetry Python SDK.

Usage: otel_send.py grpc|http ENDPOINT TOKEN [CA_FILE]

With CA_FILE the endpoint is https:// and the exporter trusts that CA (gRPC over TLS
negotiates h2 by ALPN; the HTTP exporter negotiates HTTP/1.1).

Prints, as JSON on stdout, every span it sent (hex ids, kind, status, attributes, events),
so the Rust test can check what the upstream received field by field. Exits 1 if the
exporter reports a failure.
"""

import json
import sys

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode


def main() -> int:
    protocol, endpoint, token = sys.argv[1:4]
    ca_file = sys.argv[4] if len(sys.argv) > 4 else None
    headers = {"lightstep-access-token": token}
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        if ca_file:
            import grpc

            with open(ca_file, "rb") as f:
                credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
            exporter = OTLPSpanExporter(endpoint=endpoint, credentials=credentials, headers=headers)
        else:
            exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True, headers=headers)
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=endpoint, headers=headers, certificate_file=ca_file)

    memory = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "checkout", "deployment.environment": "test"})
    )
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("cubesat-e2e", "1.0")

    with tracer.start_as_current_span("GET /checkout", kind=SpanKind.SERVER) as root:
        root.set_attribute("http.method", "GET")
        root.set_attribute("http.status_code", 200)
        root.set_attribute("retry", True)
        root.set_attribute("ratio", 0.25)
        root.add_event("cache miss", {"key": "cart:42", "attempt": 2})
        with tracer.start_as_current_span("SELECT orders", kind=SpanKind.CLIENT) as db:
            db.set_attribute("db.system", "postgresql")
            db.set_status(Status(StatusCode.ERROR, "timeout"))
            with tracer.start_as_current_span("decode rows", kind=SpanKind.INTERNAL):
                pass

    spans = memory.get_finished_spans()
    result = exporter.export(spans)
    exporter.shutdown()
    out = []
    for s in spans:
        out.append(
            {
                "trace_id": format(s.context.trace_id, "032x"),
                "span_id": format(s.context.span_id, "016x"),
                "parent_span_id": format(s.parent.span_id, "016x") if s.parent else "",
                "name": s.name,
                "kind": s.kind.value + 1,  # SDK 0-based SpanKind -> OTLP enum
                "status_code": {StatusCode.UNSET: 0, StatusCode.OK: 1, StatusCode.ERROR: 2}[
                    s.status.status_code
                ],
                "status_message": s.status.description or "",
                "start": s.start_time,
                "end": s.end_time,
                "attributes": dict(s.attributes),
                "events": [{"name": e.name, "attributes": dict(e.attributes)} for e in s.events],
            }
        )
    print(json.dumps(out))
    return 0 if result == SpanExportResult.SUCCESS else 1


if __name__ == "__main__":
    sys.exit(main())
