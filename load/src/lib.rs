//! cubesat-load: load tests for cubesat that send the way a fleet of Envoy sidecars does.
//!
//! ```text
//!  body (Envoy-shaped reports, one per sidecar, encoded once)
//!    └─► run (workers, closed or open loop) ─► client (h2 / HTTP/1.1, TLS) ─► target
//!                                                    target = cubesat, a collector, or the sink
//!  sink (counting upstream: scans with cubesat::wire, never decodes, GET /stats)
//! ```
//!
//! | module | owns |
//! |---|---|
//! | [`body`] | Envoy-like Lightstep reports and OTLP exports, framed and compressed before a run |
//! | [`client`] | targets, connections, one request and its outcome |
//! | [`run`] | workers, pacing, latency and status tallies |
//! | [`summary`] | the ghz-like summary, text and JSON |
//! | [`sink`] | the counting upstream |

pub mod body;
pub mod client;
pub mod run;
pub mod sink;
pub mod summary;
