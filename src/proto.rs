//! Generated protobuf types: the Lightstep collector schema from `proto/`.
//!
//! The hot path never decodes these; they serve replies (`ReportResponse`), reflection,
//! translation and tests.

/// `lightstep.collector`: the collector schema, its client and server.
#[allow(missing_docs, clippy::all)]
pub mod collector {
    tonic::include_proto!("lightstep.collector");
}

/// Encoded `FileDescriptorSet` of `proto/` (with its imports), served by gRPC reflection.
pub const COLLECTOR_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/collector_descriptor.bin"));
