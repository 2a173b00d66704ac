//! Envoy-like clients: HTTP/2 channels and reports built the way Envoy's Lightstep tracer
//! builds them.

use super::*;

/// A channel the way Envoy's Lightstep tracer opens it: HTTP/2, `:authority` = cluster name.
pub async fn envoy_channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .origin("http://lightstep".parse().unwrap())
        .connect()
        .await
        .expect("connect to cubesat")
}

/// A TLS channel trusting `ca` (PEM), with `localhost` as the server name.
pub async fn tls_channel(addr: SocketAddr, ca: &Path) -> Channel {
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(
            std::fs::read(ca).unwrap(),
        ))
        .domain_name("localhost");
    Endpoint::from_shared(format!("https://localhost:{}", addr.port()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("TLS connect to cubesat")
}

/// Posts raw `body` to `Report` (optionally gzip), with `grpc-timeout` and no token header,
/// as Envoy does.
pub async fn send_raw(
    channel: &Channel,
    body: Bytes,
    gzip: bool,
) -> Result<pb::ReportResponse, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone()).max_decoding_message_size(64 << 20);
    if gzip {
        grpc = grpc.send_compressed(tonic::codec::CompressionEncoding::Gzip);
    }
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let mut req = Request::new(body);
    req.set_timeout(Duration::from_secs(5));
    let reply = grpc
        .unary(
            req,
            http::uri::PathAndQuery::from_static(REPORT_PATH),
            RawCodec::<Bytes>::default(),
        )
        .await?
        .into_inner();
    pb::ReportResponse::decode(reply).map_err(|e| Status::internal(e.to_string()))
}

/// An Envoy-like reporter for `cluster` (node.cluster becomes the component name).
pub fn envoy_reporter(cluster: &str, reporter_id: u64) -> pb::Reporter {
    let tag = |k: &str, v: &str| pb::KeyValue {
        key: k.into(),
        value: Some(pb::key_value::Value::StringValue(v.into())),
    };
    pb::Reporter {
        reporter_id,
        tags: vec![
            tag("lightstep.component_name", cluster),
            tag("lightstep.tracer_platform", "envoy"),
            tag("lightstep.tracer_platform_version", "1.23.0"),
            tag("lightstep.tracer_version", "0.19"),
            tag("lightstep.hostname", "productpage-v1-6b746f74dc-9stvs"),
        ],
    }
}

/// The encoded `0x1A` field of one Envoy-like span, with its fields out of numeric order
/// (span_context last, as the C++ tracer writes them) so byte equality means "untouched".
pub fn envoy_span_field(trace_id: u64, span_id: u64, parent: u64) -> Vec<u8> {
    let tag = |k: &str, v: &str| pb::KeyValue {
        key: k.into(),
        value: Some(pb::key_value::Value::StringValue(v.into())),
    };
    let body = pb::Span {
        operation_name: "productpage.default.svc.cluster.local:9080/*".into(),
        start_timestamp: Some(SystemTime::now().into()),
        duration_micros: 1234 + span_id % 100,
        tags: vec![
            tag("guid:x-request-id", &format!("{span_id:x}-req")),
            tag(
                "node_id",
                "sidecar~10.1.1.7~productpage-v1.default~default.svc.cluster.local",
            ),
            tag("http.url", "http://productpage:9080/productpage"),
            tag("http.method", "GET"),
            tag("http.status_code", "200"),
            tag("component", "proxy"),
            tag("span.kind", "server"),
        ],
        references: vec![pb::Reference {
            relationship: 0,
            span_context: Some(pb::SpanContext {
                trace_id,
                span_id: parent,
                baggage: Default::default(),
            }),
        }],
        ..Default::default()
    }
    .encode_to_vec();
    let context = pb::Span {
        span_context: Some(pb::SpanContext {
            trace_id,
            span_id,
            baggage: Default::default(),
        }),
        ..Default::default()
    }
    .encode_to_vec();
    let mut span = body;
    span.extend_from_slice(&context);
    let mut field = vec![0x1a];
    prost::encoding::encode_varint(span.len() as u64, &mut field);
    field.extend_from_slice(&span);
    field
}

/// An Envoy-like `ReportRequest` (token only in the body) and the encoded span fields in it.
pub fn envoy_report(
    reporter: &pb::Reporter,
    token: &str,
    trace_id: u64,
    span_ids: std::ops::Range<u64>,
) -> (Bytes, Vec<Vec<u8>>) {
    let mut buf = pb::ReportRequest {
        reporter: Some(reporter.clone()),
        auth: Some(pb::Auth {
            access_token: token.into(),
        }),
        ..Default::default()
    }
    .encode_to_vec();
    let spans: Vec<Vec<u8>> = span_ids
        .map(|id| envoy_span_field(trace_id, id, id.saturating_sub(1)))
        .collect();
    for span in &spans {
        buf.extend_from_slice(span);
    }
    (Bytes::from(buf), spans)
}

/// Where `needle` occurs in `haystack`, counting every occurrence.
pub fn occurrences(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

/// Sends a well-behaved Envoy report (50 spans of `trace`) and checks every span of it reached
/// the upstream: the promise that a hostile client beside it costs the good one nothing.
pub async fn well_behaved_client_loses_nothing(ingest: SocketAddr, capture: &Capture, trace: u64) {
    let channel = envoy_channel(ingest).await;
    let (body, _) = envoy_report(&envoy_reporter("good", 7), "tok", trace, 1..51);
    send_raw(&channel, body, false).await.expect("accepted");
    capture
        .wait_for_trace(trace, 1..51, Duration::from_secs(20))
        .await;
}
