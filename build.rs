//! Generates the Lightstep collector types and their descriptor set from `proto/` with
//! `protox` (pure Rust), so a fresh machine needs no system `protoc`.
//!
//! Next to them it generates *lenient* twins of the collector schema and of the OTLP trace
//! schema (`proto/opentelemetry`, copied from opentelemetry-proto 0.33.1) under the package
//! prefix `lenient.`: the same messages and field numbers with every `string` turned into
//! `bytes` (and maps into their repeated entry messages, whose keys may then be bytes too).
//! Real tracers send non-UTF-8 strings; translation decodes with these twins so it never
//! rejects a report the zero-copy path accepted. They are derived from the same descriptors,
//! so the two copies cannot drift apart.

use std::{env, fs, path::PathBuf};

use prost::Message as _;
use prost_types::field_descriptor_proto::Type;
use prost_types::{DescriptorProto, FileDescriptorProto};

const LENIENT: &str = "lenient";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/lightstep/collector/collector.proto"];
    let lenient_protos = [
        "proto/lightstep/collector/collector.proto",
        "proto/opentelemetry/proto/trace/v1/trace.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(protos, ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    // Reflection serves this set; it includes google/protobuf/timestamp.proto.
    fs::write(out.join("collector_descriptor.bin"), fds.encode_to_vec())?;

    let mut all = fds.clone();
    let lenient = protox::compile(lenient_protos, ["proto"])?;
    all.file.extend(
        lenient
            .file
            .into_iter()
            .filter(|f| !f.package().starts_with("google.protobuf"))
            .map(lenient_file),
    );
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(all)?;
    Ok(())
}

/// The lenient twin of one file: package `lenient.<package>`, strings as bytes, no services.
fn lenient_file(mut file: FileDescriptorProto) -> FileDescriptorProto {
    file.name = Some(format!("{LENIENT}/{}", file.name()));
    file.package = Some(format!("{LENIENT}.{}", file.package()));
    file.dependency = file
        .dependency
        .iter()
        .map(|d| {
            if d.starts_with("google/protobuf/") {
                d.clone()
            } else {
                format!("{LENIENT}/{d}")
            }
        })
        .collect();
    file.service.clear();
    // Comments would point at the removed services; the strict types carry the docs.
    file.source_code_info = None;
    file.options = None;
    for message in &mut file.message_type {
        lenient_message(message);
    }
    file
}

fn lenient_message(message: &mut DescriptorProto) {
    // A map entry without its option is an ordinary repeated message on the same wire bytes.
    message.options = None;
    for field in &mut message.field {
        if field.r#type() == Type::String {
            field.set_type(Type::Bytes);
        }
        if let Some(name) = &field.type_name
            && !name.starts_with(".google.protobuf.")
        {
            field.type_name = Some(format!(".{LENIENT}{name}"));
        }
        field.json_name = None;
    }
    for nested in &mut message.nested_type {
        lenient_message(nested);
    }
}
