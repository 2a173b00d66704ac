"""Sends spans to cubesat with the real Python Lightstep tracer (PyPI lightstep==4.4.8).

Usage: lightstep_send.py http|thrift HOST PORT TOKEN none|tls

Makes a parent span with tags and logs and a child span, flushes, and prints the spans it
reported as JSON (ids as decimal strings, tags and logs as the tracer sends them: strings).
Exits 1 if the tracer reports that the flush failed.
"""

import json
import sys
import time

import lightstep


def main() -> int:
    transport, host, port, token, encryption = sys.argv[1:6]
    tracer = lightstep.Tracer(
        component_name="inventory",
        access_token=token,
        collector_host=host,
        collector_port=int(port),
        collector_encryption=encryption,
        use_thrift=transport == "thrift",
        use_http=transport == "http",
        # The tracer opens its connection only together with its periodic flush thread.
        periodic_flush_seconds=60,
    )
    sent = []
    with tracer.start_active_span("reserve stock") as parent:
        parent.span.set_tag("sku", "A-42")
        parent.span.set_tag("quantity", 3)
        parent.span.set_tag("span.kind", "server")
        parent.span.log_kv({"event": "cache miss", "key": "stock:A-42"})
        with tracer.start_active_span("UPDATE stock") as child:
            child.span.set_tag("db.type", "sql")
            child.span.set_tag("error", True)
            sent.append(describe(child.span, parent.span))
        sent.append(describe(parent.span, None))
    tracer.flush()
    # On a failed report the tracer puts the spans back to retry them: none left = delivered
    # (by this flush or by the flush thread's first run, whichever took them).
    time.sleep(0.5)
    ok = not tracer.recorder._span_records
    print(json.dumps(sent))
    return 0 if ok else 1


def describe(span, parent):
    return {
        "trace_id": str(span.context.trace_id),
        "span_id": str(span.context.span_id),
        "parent_span_id": str(parent.context.span_id) if parent else None,
        "name": span.operation_name,
    }


if __name__ == "__main__":
    sys.exit(main())
