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

/// Lenient twins of the collector and OTLP trace schemas: every `string` is `bytes`, maps are
/// repeated entries. Only translation decodes with them (see `build.rs` and [`crate::translate`]).
#[allow(missing_docs, clippy::all)]
pub mod lenient {
    /// `lenient.lightstep.collector`.
    pub mod lightstep {
        /// The collector messages with byte strings.
        pub mod collector {
            tonic::include_proto!("lenient.lightstep.collector");
        }
    }
    /// `lenient.opentelemetry.proto`.
    pub mod opentelemetry {
        /// OTLP trace messages with byte strings.
        pub mod proto {
            /// `common.v1`.
            pub mod common {
                /// Version 1.
                pub mod v1 {
                    tonic::include_proto!("lenient.opentelemetry.proto.common.v1");
                }
            }
            /// `resource.v1`.
            pub mod resource {
                /// Version 1.
                pub mod v1 {
                    tonic::include_proto!("lenient.opentelemetry.proto.resource.v1");
                }
            }
            /// `trace.v1`.
            pub mod trace {
                /// Version 1.
                pub mod v1 {
                    tonic::include_proto!("lenient.opentelemetry.proto.trace.v1");
                }
            }
        }
    }
}
