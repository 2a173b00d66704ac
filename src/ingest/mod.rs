//! Ingest: every way a tracer can hand spans to cubesat, on one port per listener.
//!
//! One folder per protocol family, `lightstep/` and `otlp/`, one file per transport. Each
//! handler parses its envelope, hands the body to the shared [`Intake`] (which scans it into a
//! `Report` for the pipeline) and answers the client, or returns a [`Refused`]. Shared
//! plumbing stays here: [`conn`] picks HTTP/1.1 or HTTP/2 per connection, `http` reads
//! bodies, `json` bounds what JSON bodies decode into, `grpc` serves unary raw-bytes
//! methods, [`auth`] resolves tokens, and [`router`] puts every service on one port. No
//! forwarding logic lives here, and nothing here names developer mode: it receives accepted
//! requests through the [`Tee`] trait.

pub mod auth;
pub(crate) mod blocking;
pub(crate) mod conn;
pub(crate) mod grpc;
pub(crate) mod http;
pub(crate) mod intake;
pub(crate) mod json;
pub(crate) mod lightstep;
pub(crate) mod otlp;
pub(crate) mod refused;
pub(crate) mod region;

use std::sync::Arc;

use grpc::GrpcIngest;
pub use intake::{Accepted, IngestError, Intake, Tee};
pub use lightstep::{
    parse_lightstep_json, parse_thrift_binary, parse_thrift_json, read_lightstep_stream,
};
pub use otlp::parse_otlp_json;
pub use refused::Refused;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::pipeline::Protocol;
use crate::proto::COLLECTOR_DESCRIPTOR_SET;

/// Why the ingest routes could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// The embedded descriptor sets did not load (a build defect).
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// The ingest services and the health reporter that flips them to NOT_SERVING on shutdown.
pub struct IngestRoutes {
    /// Routes for [`conn::serve`].
    pub router: axum::Router,
    /// The `grpc.health.v1.Health` state.
    pub health: HealthReporter,
}

/// Builds every ingest route: `CollectorService/Report`, OTLP `TraceService/Export`, gRPC
/// health and reflection (v1 and v1alpha, so `grpcurl` and `ghz` need no proto files).
pub async fn router(
    intake: Arc<Intake>,
    max_message_bytes: usize,
    cors: &http::CorsOrigins,
) -> Result<IngestRoutes, RouterError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    for service in Protocol::ALL.map(Protocol::service) {
        health
            .set_service_status(service, ServingStatus::Serving)
            .await;
    }
    // Advertise only what is served: the OTLP descriptors also hold logs and metrics services.
    let reflection = || {
        let builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(COLLECTOR_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(opentelemetry_proto::DESCRIPTORS)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("grpc.health.v1.Health");
        Protocol::ALL
            .map(Protocol::service)
            .into_iter()
            .fold(builder, |builder, service| {
                builder.with_service_name(service)
            })
    };
    let report = GrpcIngest::<lightstep::Report>::new(intake.clone(), max_message_bytes);
    let export = GrpcIngest::<otlp::Export>::new(intake.clone(), max_message_bytes);
    let mut http_routes = axum::Router::new()
        .merge(otlp::http::routes(intake.clone(), max_message_bytes))
        .merge(lightstep::thrift::routes(intake.clone(), max_message_bytes))
        .merge(lightstep::http::routes(intake, max_message_bytes));
    // Browser tracers post cross-origin, from the allowed origins only; gRPC needs no CORS.
    if let Some(cors) = http::cors(cors) {
        http_routes = http_routes.layer(cors);
    }
    let router = tonic::service::Routes::new(report)
        .add_service(export)
        .add_service(health_service)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .prepare()
        .into_axum_router()
        .merge(http_routes)
        // Bodies are limited and charged per route, before and after decompression, in
        // `http::Route::read_body`.
        .layer(axum::extract::DefaultBodyLimit::max(max_message_bytes))
        .fallback(http::fallback);
    Ok(IngestRoutes { router, health })
}

/// Marks every ingest service NOT_SERVING (shutdown has begun).
pub async fn stop_serving(health: &HealthReporter) {
    for service in Protocol::ALL.map(Protocol::service) {
        health
            .set_service_status(service, ServingStatus::NotServing)
            .await;
    }
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
}
