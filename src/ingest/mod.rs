//! Ingest: every way a tracer can hand spans to cubesat, on one port per listener.
//!
//! Each protocol handler parses its envelope, hands the body to the shared [`Intake`] (which
//! scans it into a `Report` for the pipeline) and answers the client. No forwarding logic lives
//! here. [`conn`] picks HTTP/1.1 or HTTP/2 per connection; [`router`] puts every service on it.

pub mod auth;
pub mod conn;
pub mod grpc;
pub mod intake;

use std::sync::Arc;

pub use intake::{Accepted, IngestError, Intake};
use tonic::server::NamedService;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

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

/// Builds every ingest route: `CollectorService/Report`, gRPC health and reflection (v1 and
/// v1alpha, so `grpcurl` and `ghz` need no proto files).
pub async fn router(
    intake: Arc<Intake>,
    max_message_bytes: usize,
) -> Result<IngestRoutes, RouterError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(grpc::CollectorService::NAME, ServingStatus::Serving)
        .await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(COLLECTOR_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let router =
        tonic::service::Routes::new(grpc::CollectorService::new(intake, max_message_bytes))
            .add_service(health_service)
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?)
            .prepare()
            .into_axum_router();
    Ok(IngestRoutes { router, health })
}

/// Marks every ingest service NOT_SERVING (shutdown has begun).
pub async fn stop_serving(health: &HealthReporter) {
    health
        .set_service_status(grpc::CollectorService::NAME, ServingStatus::NotServing)
        .await;
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
}
