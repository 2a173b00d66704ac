use std::collections::HashSet;
use std::io::Read as _;

use super::*;

fn spec(protocol: Protocol) -> BodySpec {
    BodySpec {
        protocol,
        spans: 7,
        tags: 12,
        reporters: 5,
        token: Some("tok".into()),
        gzip: false,
    }
}

/// The message inside a payload: the gRPC prefix checked and removed, gzip undone.
fn unwrap(spec: &BodySpec, payload: &Payload) -> Vec<u8> {
    let body = if spec.protocol.is_grpc() {
        assert_eq!(payload.wire[0], u8::from(spec.gzip), "compressed flag");
        let len = u32::from_be_bytes(payload.wire[1..5].try_into().unwrap()) as usize;
        assert_eq!(len, payload.wire.len() - 5, "gRPC length prefix");
        payload.wire[5..].to_vec()
    } else {
        payload.wire.to_vec()
    };
    if spec.gzip {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        body
    }
}

#[test]
fn lightstep_bodies_decode_as_reports_of_distinct_sidecars() {
    for protocol in [Protocol::LightstepGrpc, Protocol::LightstepHttp] {
        let spec = spec(protocol);
        let payloads = payloads(&spec).unwrap();
        assert_eq!(payloads.len(), 5);
        let mut ids = HashSet::new();
        let mut hosts = HashSet::new();
        for payload in &payloads {
            let report = pb::ReportRequest::decode(&unwrap(&spec, payload)[..]).unwrap();
            assert_eq!(payload.spans, 7);
            assert_eq!(report.spans.len(), 7);
            assert_eq!(report.auth.unwrap().access_token, "tok");
            let reporter = report.reporter.unwrap();
            ids.insert(reporter.reporter_id);
            let host = reporter
                .tags
                .iter()
                .find(|t| t.key == "lightstep.hostname")
                .unwrap();
            hosts.insert(format!("{:?}", host.value));
            for span in &report.spans {
                // 12 Envoy tags plus span.kind.
                assert_eq!(span.tags.len(), 13);
                assert_eq!(span.tags[0].key, "component");
                assert_eq!(span.references.len(), 1);
                let context = span.span_context.as_ref().unwrap();
                assert_ne!(context.trace_id, 0);
                assert_ne!(context.span_id, 0);
            }
        }
        assert_eq!(ids.len(), 5, "one reporter id per sidecar");
        assert_eq!(hosts.len(), 5, "one host name per sidecar");
    }
}

#[test]
fn otlp_bodies_decode_as_exports_of_distinct_instances() {
    for protocol in [Protocol::OtlpGrpc, Protocol::OtlpHttp] {
        let spec = spec(protocol);
        let mut instances = HashSet::new();
        for payload in payloads(&spec).unwrap() {
            let export = ExportTraceServiceRequest::decode(&unwrap(&spec, &payload)[..]).unwrap();
            assert_eq!(export.resource_spans.len(), 1);
            let rs = &export.resource_spans[0];
            let instance = rs
                .resource
                .as_ref()
                .unwrap()
                .attributes
                .iter()
                .find(|a| a.key == "service.instance.id")
                .unwrap();
            instances.insert(format!("{:?}", instance.value));
            let spans = &rs.scope_spans[0].spans;
            assert_eq!(spans.len(), 7);
            for span in spans {
                assert_eq!(span.trace_id.len(), 16);
                assert_eq!(span.span_id.len(), 8);
                assert_eq!(span.parent_span_id.len(), 8);
                assert_eq!(span.attributes.len(), 12);
            }
        }
        assert_eq!(instances.len(), 5, "one service.instance.id per sidecar");
    }
}

#[test]
fn gzip_bodies_inflate_to_the_same_message_size() {
    for protocol in [Protocol::OtlpGrpc, Protocol::LightstepHttp] {
        let plain = spec(protocol);
        let gzip = BodySpec {
            gzip: true,
            ..plain.clone()
        };
        let a = payloads(&plain).unwrap();
        let b = payloads(&gzip).unwrap();
        let inflated = unwrap(&gzip, &b[0]);
        assert_eq!(inflated.len(), unwrap(&plain, &a[0]).len());
        assert!(
            b[0].wire.len() < a[0].wire.len(),
            "gzip shrinks Envoy spans"
        );
    }
}

#[test]
fn tags_past_envoys_list_are_numbered() {
    let car = Sidecar::new(3);
    let tags = envoy_tags(&car, 1, 23);
    assert_eq!(tags.len(), 23);
    assert_eq!(tags[22].0, "tag.22");
    assert_eq!(envoy_tags(&car, 1, 0).len(), 0);
}

#[test]
fn bodies_scan_with_cubesats_wire_scanner() {
    let mut ls = spec(Protocol::LightstepHttp);
    ls.spans = 100;
    let body = Bytes::from(message(&ls, &Sidecar::new(0)));
    let scan = cubesat::wire::report::scan_report(&body, usize::MAX).unwrap();
    assert_eq!(scan.spans.count, 100);
    let mut otlp = spec(Protocol::OtlpHttp);
    otlp.spans = 100;
    let body = Bytes::from(message(&otlp, &Sidecar::new(0)));
    let runs = cubesat::wire::otlp::scan_export(&body, usize::MAX).unwrap();
    assert_eq!(runs.count, 100);
}
