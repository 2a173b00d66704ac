//! Shared harness for the end-to-end tests: the real `cubesat` binary as a child process, a
//! capturing upstream that records every request's raw bytes and metadata, and clients that
//! send the way Envoy's Lightstep tracer does. Everything binds 127.0.0.1.

#![allow(dead_code, unused_imports)] // Each test binary uses a different part of the harness.

mod browser;
mod capture;
mod clients;
pub mod dataset;
mod envoy;
mod legacy;
mod process;

pub use browser::*;
pub use capture::*;
pub use clients::*;
pub use envoy::*;
pub use legacy::*;
pub use process::*;

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use cubesat::codec::RawCodec;
use cubesat::pipeline::{Protocol, TOKEN_HEADER};
use cubesat::proto::collector as pb;
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Request, Response, Status};

pub const REPORT_PATH: &str = Protocol::Lightstep.grpc_path();
pub const EXPORT_PATH: &str = Protocol::Otlp.grpc_path();

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span as OtlpSpan;
