"""Sends spans to cubesat with the real C++ streaming recorder (PyPI lightstep-streaming==0.14.0).

Usage: streaming_send.py HOST PORT TOKEN SECONDS

Needs the shim in tests/shim preloaded (LD_PRELOAD) on Python >= 3.10: the 2020 wheel parses
its string arguments with `s#` and int lengths, which newer interpreters refuse.

Makes a root span with typed tags, a structured log and a baggage item, a child of it
(CHILD_OF through the active scope), a span started with an explicit `child_of`, one with a
FOLLOWS_FROM reference, one renamed after its start and one continued from the root's
injected text-map context (as a remote service would); then, for SECONDS seconds, one "tick" child span every 100 ms, so that the spans
are spread over the recorder's periodic reconnects (8 streams, each replaced after 5-7 s).
Flushes, closes the tracer and prints the spans it made as JSON: ids as decimal strings (as
the C++ tracer writes them into ot-tracer-* headers, hex, converted here), references, tags
with their Python types, log fields and baggage. Together these pass through every `s#`
parser of the extension (the shim's whole surface). Exits 1 if the recorder reports dropped spans or fewer
sent spans than were made.
"""

import json
import sys
import time

import opentracing

import lightstep_streaming


def context_ids(tracer, context):
    """The (trace_id, span_id) of a span context, read back through text-map injection."""
    carrier = {}
    tracer.inject(context, opentracing.Format.TEXT_MAP, carrier)
    return (
        str(int(carrier["ot-tracer-traceid"], 16)),
        str(int(carrier["ot-tracer-spanid"], 16)),
    )


def main() -> int:
    host, port, token, seconds = sys.argv[1:5]
    tracer = lightstep_streaming.Tracer(
        component_name="checkout",
        access_token=token,
        use_stream_recorder=True,
        collector_plaintext=True,
        satellite_endpoints=[{"host": host, "port": int(port)}],
        tags={"deployment": "canary"},
        verbose=False,
    )
    made = []

    def record(span, name, tags, parents=(), logs=()):
        trace_id, span_id = context_ids(tracer, span.context)
        made.append(
            {
                "name": name,
                "trace_id": trace_id,
                "span_id": span_id,
                # (relationship, trace_id, span_id); 0 = CHILD_OF, 1 = FOLLOWS_FROM.
                "references": [
                    [rel, *context_ids(tracer, ctx)] for rel, ctx in parents
                ],
                "tags": tags,
                "logs": list(logs),
                "baggage": dict(span.context.baggage),
            }
        )

    root_tags = {"order.id": "o-1001", "items": 3, "total": 42.5, "express": True}
    root_log = {"event": "cart loaded", "cart.size": 3}
    with tracer.start_active_span("checkout") as root:
        root.span.set_baggage_item("tenant", "acme")
        if root.span.get_baggage_item("tenant") != "acme":
            print("baggage item not readable", file=sys.stderr)
            return 1
        for key, value in root_tags.items():
            root.span.set_tag(key, value)
        root.span.log_kv(root_log)
        with tracer.start_active_span("reserve stock") as child:
            child.span.set_tag("db.type", "sql")
            record(child.span, "reserve stock", {"db.type": "sql"},
                   [(0, root.span.context)])
        # Without ignore_active_span the bridge adds the active span as a second, identical
        # CHILD_OF reference beside the explicit child_of.
        charge = tracer.start_span(
            "charge card",
            child_of=root.span,
            tags={"amount": 4250, "error": False},
            ignore_active_span=True,
        )
        charge.finish()
        record(charge, "charge card", {"amount": 4250, "error": False},
               [(0, root.span.context)])
        email = tracer.start_span(
            "send receipt",
            references=[opentracing.follows_from(root.span.context)],
            ignore_active_span=True,
        )
        email.finish()
        record(email, "send receipt", {}, [(1, root.span.context)])
        coupon = tracer.start_span("draft", ignore_active_span=True)
        coupon.set_operation_name("apply coupon")
        coupon.finish()
        record(coupon, "apply coupon", {})
        carrier = {}
        tracer.inject(root.span.context, opentracing.Format.TEXT_MAP, carrier)
        incoming = tracer.extract(opentracing.Format.TEXT_MAP, carrier)
        remote = tracer.start_span("remote audit", child_of=incoming, ignore_active_span=True)
        remote.finish()
        record(remote, "remote audit", {}, [(0, incoming)])
        record(root.span, "checkout", root_tags, logs=[root_log])

        deadline = time.monotonic() + float(seconds)
        tick = 0
        while time.monotonic() < deadline:
            with tracer.start_active_span("tick") as span:
                span.span.set_tag("tick", tick)
                record(span.span, "tick", {"tick": tick}, [(0, root.span.context)])
            tick += 1
            time.sleep(0.1)

    tracer.flush(5.0)
    sent, dropped = tracer.num_spans_sent, tracer.num_spans_dropped
    tracer.close()
    print(json.dumps(made))
    if dropped or sent < len(made):
        print(f"recorder sent {sent} and dropped {dropped} of {len(made)} spans", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
