// Sends spans to cubesat with the real Node Lightstep tracer (npm lightstep-tracer@0.35.0).
//
// Usage: node lightstep_send.js proto|thrift HOST PORT TOKEN
// (with NODE_PATH naming the node_modules that holds lightstep-tracer)
//
// Makes a parent span with tags and a log, and a child span, flushes once, and prints the
// spans it reported as JSON (ids as the tracer's hex strings) plus how many clock samples the
// tracer took from cubesat's answer. Exits 1 if the flush failed.

'use strict';

const lightstep = require('lightstep-tracer');

function main() {
    const [transport, host, port, token] = process.argv.slice(2);
    const tracer = new lightstep.Tracer({
        access_token: token,
        component_name: 'storefront',
        collector_host: host,
        collector_port: Number(port),
        collector_encryption: 'none',
        transport: transport,
        // One explicit flush, so what was sent is exactly what this script made.
        disable_reporting_loop: true,
        disable_report_on_exit: true,
        verbosity: 1,
    });

    const parent = tracer.startSpan('checkout');
    parent.setTag('cart.items', 3);
    parent.setTag('span.kind', 'server');
    parent.log({ event: 'payment authorized', amount: 42 });
    const child = tracer.startSpan('charge card', { childOf: parent.context() });
    child.setTag('error', true);
    child.setTag('card.network', 'visa');
    child.finish();
    parent.finish();

    const describe = (span, parentSpan) => ({
        trace_id: span.context().toTraceId(),
        span_id: span.context().toSpanId(),
        parent_span_id: parentSpan ? parentSpan.context().toSpanId() : null,
        name: span.getOperationName ? span.getOperationName() : span._operationName,
    });
    const sent = [describe(child, parent), describe(parent, null)];

    tracer.flush((err) => {
        const out = {
            spans: sent,
            error: err ? `${err.message || err}` : null,
            clock_samples: tracer._clockState.activeSampleCount(),
        };
        process.stdout.write(`${JSON.stringify(out)}\n`);
        process.exit(err ? 1 : 0);
    });
}

main();
