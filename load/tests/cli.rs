//! The `cubesat-load` binary: `sink` prints where it listens and counts what `run` sends;
//! `run --format json` prints a summary whose figures match the sink's; `ghz-body` writes a
//! message that decodes as the proto in `proto/` says.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use cubesat::proto::collector::ReportRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

const BIN: &str = env!("CARGO_BIN_EXE_cubesat-load");

struct SinkProcess(Child, String);

impl Drop for SinkProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_sink() -> SinkProcess {
    let mut child = Command::new(BIN)
        .args(["sink", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("cubesat-load sink listening: "), "{line}");
    let addr = line.split_whitespace().nth(3).unwrap().to_owned();
    SinkProcess(child, addr)
}

fn stats(addr: &str) -> serde_json::Value {
    let out = Command::new("curl")
        .args(["-sf", &format!("http://{addr}/stats")])
        .output();
    match out {
        Ok(out) if out.status.success() => serde_json::from_slice(&out.stdout).unwrap(),
        // No curl: ask with a raw HTTP/1.1 request instead.
        _ => {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            write!(
                s,
                "GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut text = String::new();
            s.read_to_string(&mut text).unwrap();
            serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap()
        }
    }
}

#[test]
fn run_against_the_sink_prints_a_json_summary_that_matches_its_counts() {
    let sink = start_sink();
    let out = Command::new(BIN)
        .args([
            "run",
            &sink.1,
            "--protocol",
            "lightstep-grpc",
            "--spans",
            "10",
            "--reporters",
            "3",
            "-c",
            "2",
            "-n",
            "30",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["count"], 30);
    assert_eq!(summary["ok"], 30);
    assert_eq!(summary["spans_ok"], 300);
    assert_eq!(summary["statuses"]["Ok"], 30);
    for p in ["p50_ms", "p90_ms", "p99_ms", "p999_ms"] {
        assert!(summary["latency"][p].as_f64().unwrap() > 0.0, "{p}");
    }
    let stats = stats(&sink.1);
    assert_eq!(stats["spans"], 300);
    assert_eq!(stats["lightstep_spans"], 300);
    assert_eq!(stats["requests"], 30);
}

#[test]
fn a_target_that_is_not_there_fails_the_run_with_a_message() {
    let out = Command::new(BIN)
        .args(["run", "127.0.0.1:1", "-n", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("connect"), "{stderr}");
    let out = Command::new(BIN)
        .args(["run", "localhost", "-n", "1"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no port"));
}

#[test]
fn ghz_bodies_decode_as_the_proto_messages() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.bin");
    let status = Command::new(BIN)
        .args(["ghz-body", "--protocol", "lightstep-grpc", "--spans", "12"])
        .args(["--token", "tok", "--reporter", "4", "-o"])
        .arg(&report)
        .status()
        .unwrap();
    assert!(status.success());
    let decoded = ReportRequest::decode(&std::fs::read(&report).unwrap()[..]).unwrap();
    assert_eq!(decoded.spans.len(), 12);
    assert_eq!(decoded.auth.unwrap().access_token, "tok");
    assert_ne!(decoded.reporter.unwrap().reporter_id, 0);
    // What ghz does with reflection: decode with the descriptors cubesat serves.
    let pool =
        prost_reflect::DescriptorPool::decode(cubesat::proto::COLLECTOR_DESCRIPTOR_SET).unwrap();
    let descriptor = pool
        .get_message_by_name("lightstep.collector.ReportRequest")
        .unwrap();
    let dynamic =
        prost_reflect::DynamicMessage::decode(descriptor, &std::fs::read(&report).unwrap()[..])
            .unwrap();
    assert_eq!(
        dynamic
            .get_field_by_name("spans")
            .unwrap()
            .as_list()
            .unwrap()
            .len(),
        12
    );

    let export = dir.path().join("export.bin");
    let status = Command::new(BIN)
        .args(["ghz-body", "--protocol", "otlp-grpc", "--spans", "5", "-o"])
        .arg(&export)
        .status()
        .unwrap();
    assert!(status.success());
    let decoded = ExportTraceServiceRequest::decode(&std::fs::read(&export).unwrap()[..]).unwrap();
    assert_eq!(decoded.resource_spans[0].scope_spans[0].spans.len(), 5);
}
