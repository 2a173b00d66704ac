"""A small traced shop for cubesat's docker-compose.yml: every couple of seconds one request
goes frontend -> checkout -> payments, traced with a real tracer, and sent to a satellite.

Usage:
  app.py otel HOST:PORT [--ca FILE] [--count N]   OpenTelemetry SDK, OTLP/gRPC (TLS with --ca)
  app.py lightstep HOST:PORT [--count N]          Lightstep tracer (lightstep==4.4.8), HTTP

Runs until stopped, or for N traces with --count (then flushes and exits 0 if the tracer
reported no failure). Prints one line per trace: its service, trace id and root span name.
"""

import argparse
import random
import sys
import time

TOKEN = "developer"  # A placeholder: the satellite attaches the project's token.


def otel(endpoint, ca, count):
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import SpanKind, Status, StatusCode

    if ca:
        import grpc

        with open(ca, "rb") as f:
            credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
        exporter = OTLPSpanExporter(endpoint=endpoint, credentials=credentials,
                                    headers={"lightstep-access-token": TOKEN})
    else:
        exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True,
                                    headers={"lightstep-access-token": TOKEN})
    providers = {}
    for service in ("frontend", "checkout", "payments"):
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
        providers[service] = provider
    tracer = {name: p.get_tracer("cubesat-sample-app", "1.0") for name, p in providers.items()}

    def one(n):
        with tracer["frontend"].start_as_current_span("GET /checkout", kind=SpanKind.SERVER) as root:
            root.set_attribute("http.method", "GET")
            root.set_attribute("http.route", "/checkout")
            with tracer["checkout"].start_as_current_span("PlaceOrder", kind=SpanKind.SERVER):
                time.sleep(random.uniform(0.005, 0.02))
                with tracer["payments"].start_as_current_span("Charge", kind=SpanKind.SERVER) as charge:
                    time.sleep(random.uniform(0.002, 0.01))
                    if n % 10 == 9:
                        charge.set_status(Status(StatusCode.ERROR, "card declined"))
            root.set_attribute("http.status_code", 200)
            return format(root.get_span_context().trace_id, "032x")

    ok = run(one, "frontend", count)
    for provider in providers.values():
        ok = provider.force_flush(10_000) and ok
        provider.shutdown()
    return ok


def lightstep_tracer(endpoint, count):
    import lightstep

    host, _, port = endpoint.rpartition(":")
    tracer = lightstep.Tracer(component_name="inventory", access_token=TOKEN,
                              collector_host=host, collector_port=int(port),
                              collector_encryption="none", use_http=True,
                              periodic_flush_seconds=1)

    def one(n):
        with tracer.start_active_span("reserve stock") as scope:
            scope.span.set_tag("span.kind", "server")
            scope.span.set_tag("sku", f"A-{n}")
            with tracer.start_active_span("UPDATE stock") as child:
                child.span.set_tag("db.type", "sql")
                time.sleep(random.uniform(0.002, 0.01))
            return format(scope.span.context.trace_id, "016x")

    run(one, "inventory", count)
    tracer.flush()
    time.sleep(0.5)
    return not tracer.recorder._span_records  # Spans left = the last report failed.


def run(one, service, count):
    n = 0
    while count is None or n < count:
        trace_id = one(n)
        print(f"{service} trace {trace_id}", flush=True)
        n += 1
        if count is None or n < count:
            time.sleep(2)
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tracer", choices=["otel", "lightstep"])
    parser.add_argument("endpoint", help="the satellite's HOST:PORT")
    parser.add_argument("--ca", help="PEM CA to verify a TLS satellite (otel only)")
    parser.add_argument("--count", type=int, help="send this many traces, then exit")
    args = parser.parse_args()
    if args.tracer == "otel":
        ok = otel(args.endpoint, args.ca, args.count)
    else:
        ok = lightstep_tracer(args.endpoint, args.count)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
