//! The container image and docker-compose.yml, run with Podman: the image built from this
//! checkout's statically linked binary (`scripts/container-images`, Dockerfile.prebuilt)
//! forwards a real OpenTelemetry SDK's spans to a capturing upstream; in its default
//! configuration (`serve`, non-root, no system CA roots) it verifies TLS upstreams with the
//! compiled-in roots; and `docker-compose.yml` comes up with podman-compose, its UI answering
//! with the sample apps' traces, and the forwarding satellite delivering over TLS to the
//! stand-in upstream.
//!
//! `scripts/test` builds the images first and passes their names in `target/container/env`.
//! Where this machine cannot run containers, that file says why and these tests print the
//! reason and skip; nothing else is skipped.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Capture, Cubesat, http_get, otel_python};
use serde_json::Value;

const TOKEN: &str = "container-project-token";

/// What `scripts/container-images` prepared, or why containers cannot run here.
struct Images {
    vars: HashMap<String, String>,
}

impl Images {
    /// The prepared images; `None` (after printing why) when containers cannot run here.
    fn load(test: &str) -> Option<Images> {
        let path = repo().join("target/container/env");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|_| {
            panic!(
                "{} is missing: run scripts/container-images (scripts/test does) before this test",
                path.display()
            )
        });
        let vars: HashMap<String, String> = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), unquote(v)))
            .collect();
        if let Some(reason) = vars.get("CUBESAT_CONTAINERS_SKIP") {
            eprintln!("SKIPPED {test}: containers cannot run on this machine: {reason}");
            return None;
        }
        Some(Images { vars })
    }

    fn var(&self, name: &str) -> &str {
        self.vars
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing from target/container/env"))
    }

    fn podman(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", self.var("CONTAINERS_CONF"));
        cmd
    }

    /// A container's output, stdout and stderr (where cubesat logs).
    fn logs(&self, name: &str) -> String {
        let out = self
            .podman()
            .args(["logs", name])
            .output()
            .expect("podman runs");
        check(&out, "podman logs");
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    fn podman_ok(&self, args: &[&str]) -> String {
        let out = self.podman().args(args).output().expect("podman runs");
        check(&out, &format!("podman {args:?}"));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

/// `printf %q` output of plain paths and names: strip the quoting it may add.
fn unquote(v: &str) -> String {
    v.trim_matches('\'').replace("\\ ", " ")
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn check(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Removes a container when the test ends, however it ends.
struct Container<'a> {
    images: &'a Images,
    name: String,
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self
            .images
            .podman()
            .args(["rm", "--force", "--time", "0", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn container<'a>(images: &'a Images, role: &str) -> Container<'a> {
    let name = format!("cubesat-test-{role}-{}", std::process::id());
    Container { images, name }
}

async fn diagnostics(admin: std::net::SocketAddr) -> Value {
    let (status, body) = http_get(admin, "/diagnostics?format=json").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_forwards_spans_from_the_otel_sdk_to_the_upstream() {
    let Some(images) = Images::load("image_forwards_spans_from_the_otel_sdk_to_the_upstream")
    else {
        return;
    };
    let capture = Capture::default();
    let upstream = capture.serve("127.0.0.1:0", None).await;
    let url = format!("http://{}", upstream.addr);
    let guard = container(&images, "forward");
    // Host networking: the container binds 127.0.0.1 port 0 like every other test, and reaches
    // the capturing upstream on the host's loopback.
    let mut cmd = images.podman();
    cmd.args(["run", "--rm", "--runtime", "runc", "--network", "host"])
        .args(["--name", &guard.name])
        .args(["--env", "RUST_LOG=info,cubesat=debug"])
        .arg(images.var("CUBESAT_CONTAINER_IMAGE"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(["--upstream", &url, "--access-token", TOKEN])
        .args(["--batch-timeout", "100ms"]);
    let cubesat = Cubesat::start_command(cmd);
    cubesat.wait_ready(200, Duration::from_secs(20)).await;

    let out = tokio::task::spawn_blocking({
        let endpoint = format!("http://{}", cubesat.ingest);
        move || {
            Command::new(otel_python())
                .arg(repo().join("tests/clients/otel_send.py"))
                .args(["grpc", &endpoint, "developer"])
                .output()
                .expect("OTel client runs")
        }
    })
    .await
    .unwrap();
    check(&out, "otel_send.py");
    let sent: Vec<Value> = serde_json::from_slice(&out.stdout).expect("client prints JSON");
    assert_eq!(sent.len(), 3);

    let received = capture.wait_otlp_spans(3, Duration::from_secs(20)).await;
    assert_eq!(received.len(), 3, "no extra spans");
    for expected in &sent {
        let (span, resource, request) = received
            .iter()
            .find(|(s, _, _)| hex(&s.span_id) == expected["span_id"])
            .unwrap_or_else(|| panic!("span {} did not arrive", expected["span_id"]));
        assert_eq!(hex(&span.trace_id), expected["trace_id"]);
        assert_eq!(hex(&span.parent_span_id), expected["parent_span_id"]);
        assert_eq!(span.name, expected["name"]);
        // The SDK sent the placeholder token: the one configured in the container is used.
        assert_eq!(request.token_header.as_deref(), Some(TOKEN));
        let service = resource
            .attributes
            .iter()
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.clone());
        assert!(format!("{service:?}").contains("checkout"), "{service:?}");
    }
    let forwarded = cubesat
        .wait_metric(
            "cubesat_spans_forwarded_total",
            3.0,
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(forwarded, 3.0);
    let d = diagnostics(cubesat.admin).await;
    assert_eq!(d["upstream"]["url"], format!("{url}/"));
    assert_eq!(d["config"]["access-token"], "set (hidden)");
    assert!(!d.to_string().contains(TOKEN), "token in diagnostics: {d}");
    upstream.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_defaults_run_non_root_and_verify_tls_with_compiled_in_roots() {
    let Some(images) =
        Images::load("image_defaults_run_non_root_and_verify_tls_with_compiled_in_roots")
    else {
        return;
    };
    let image = images.var("CUBESAT_CONTAINER_IMAGE");
    let inspect = images.podman_ok(&[
        "image",
        "inspect",
        "--format",
        "{{.Config.User}}|{{json .Config.ExposedPorts}}|{{index .Config.Labels \"org.opencontainers.image.title\"}}|{{json .Config.Cmd}}",
        image,
    ]);
    let fields: Vec<&str> = inspect.split('|').collect();
    assert_eq!(fields[0], "65532:65532", "{inspect}");
    for port in ["8383/tcp", "9393/tcp", "8180/tcp"] {
        assert!(fields[1].contains(port), "{port} not exposed: {inspect}");
    }
    assert_eq!(fields[2], "cubesat", "{inspect}");
    assert_eq!(fields[3], "[\"serve\"]", "{inspect}");

    // The image as a user runs it: default command (`serve`, default listeners and upstream
    // https://ingest.lightstep.com:443), admin port published on the host's loopback. The
    // scratch image has no CA store: cubesat must start anyway and say which roots it uses.
    let guard = container(&images, "defaults");
    images.podman_ok(&[
        "run",
        "--detach",
        "--runtime",
        "runc",
        "--name",
        &guard.name,
        "--publish",
        "127.0.0.1::8180",
        "--env",
        &format!("LIGHTSTEP_ACCESS_TOKEN={TOKEN}"),
        image,
    ]);
    let port = images.podman_ok(&["port", &guard.name, "8180/tcp"]);
    let admin: std::net::SocketAddr = port
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("podman port printed {port:?}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let d = loop {
        if let Ok(Ok(d)) = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::spawn(async move { diagnostics(admin).await }),
        )
        .await
        {
            break d;
        }
        assert!(
            Instant::now() < deadline,
            "admin never answered; logs:\n{}",
            images.logs(&guard.name)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(d["mode"], "serve");
    assert_eq!(d["upstream"]["url"], "https://ingest.lightstep.com:443/");
    assert_eq!(
        d["upstream"]["ca_roots"], "compiled-in Mozilla roots (webpki-roots)",
        "{d}"
    );
    assert_eq!(d["listeners"]["ingest"], "0.0.0.0:8383");
    assert!(!d.to_string().contains(TOKEN), "token in diagnostics: {d}");
    let logs = images.logs(&guard.name);
    assert!(logs.contains("no system CA roots found"), "{logs}");
    assert!(!logs.contains(TOKEN), "token in logs: {logs}");
}

/// Brings the compose project down (and its volume away) when the test ends.
struct ComposeProject<'a> {
    images: &'a Images,
    cmd: Vec<String>,
}

impl ComposeProject<'_> {
    fn run(&self, args: &[&str]) -> Output {
        let (program, base) = self.cmd.split_first().unwrap();
        let otel = venv("CUBESAT_OTEL_PYTHON", &otel_python());
        Command::new(program)
            .env("CONTAINERS_CONF", self.images.var("CONTAINERS_CONF"))
            .env(
                "CUBESAT_HOST_PYTHON_IMAGE",
                self.images.var("CUBESAT_HOST_PYTHON_IMAGE"),
            )
            .env("CUBESAT_PYTHON_PREFIX", python_prefix(&otel))
            .env("CUBESAT_OTEL_VENV", &otel)
            .env(
                "CUBESAT_LIGHTSTEP_VENV",
                venv("CUBESAT_LIGHTSTEP_PYTHON", &common::lightstep_python()),
            )
            .env("CUBESAT_REPO", repo())
            .env_remove("LIGHTSTEP_ACCESS_TOKEN")
            .env_remove("CUBESAT_UPSTREAM")
            .current_dir(repo())
            .args(base)
            .args(args)
            .output()
            .expect("podman-compose runs")
    }
}

impl Drop for ComposeProject<'_> {
    fn drop(&mut self) {
        let out = self.run(&["down", "--volumes", "--timeout", "2"]);
        if std::thread::panicking() {
            eprintln!(
                "---- compose down ----\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// The virtualenv a client interpreter belongs to (`.../venv/bin/python` -> `.../venv`).
fn venv(var: &str, python: &str) -> PathBuf {
    let path = Path::new(python);
    let dir = path.parent().and_then(Path::parent);
    match dir {
        Some(dir) if dir.join("pyvenv.cfg").exists() => dir.to_owned(),
        _ => panic!("{var}={python} is not a virtualenv's python; run scripts/test"),
    }
}

/// Where the interpreter of virtualenv `venv` is installed (`home` in its pyvenv.cfg, less
/// `bin`), to mount into the sample-app containers; `/usr` is mounted anyway, so then its
/// `bin` alone (a nested mount, never a second mount on the same path).
fn python_prefix(venv: &Path) -> PathBuf {
    let cfg = std::fs::read_to_string(venv.join("pyvenv.cfg")).unwrap();
    let home = cfg
        .lines()
        .find_map(|l| {
            l.strip_prefix("home")
                .map(|v| v.trim_start_matches([' ', '=']))
        })
        .unwrap_or_else(|| panic!("no home in {}/pyvenv.cfg", venv.display()));
    let home = Path::new(home.trim());
    match home.parent() {
        Some(prefix) if prefix != Path::new("/usr") && prefix != Path::new("/") => {
            prefix.to_owned()
        }
        _ => home.to_owned(),
    }
}

/// Services of a developer-mode store, polled until `want` are all there.
async fn wait_services(admin: std::net::SocketAddr, want: &[&str], logs: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = match tokio::time::timeout(
            Duration::from_secs(2),
            tokio::spawn(async move { http_get(admin, "/api/services").await }),
        )
        .await
        {
            Ok(Ok((200, body))) => body,
            _ => String::new(),
        };
        if want.iter().all(|s| got.contains(&format!("\"{s}\""))) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{admin}: services {want:?} not all stored; /api/services said {got}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_compose_up_shows_the_sample_traces_and_forwards_over_tls() {
    let Some(images) =
        Images::load("docker_compose_up_shows_the_sample_traces_and_forwards_over_tls")
    else {
        return;
    };
    let compose = std::env::var("CUBESAT_PODMAN_COMPOSE").unwrap_or_else(|_| {
        panic!("CUBESAT_PODMAN_COMPOSE is not set: run the suite with scripts/test")
    });
    let project = ComposeProject {
        images: &images,
        cmd: vec![
            compose,
            "--project-name".into(),
            format!("cubesat-test-{}", std::process::id()),
            "--profile".into(),
            "forwarding".into(),
            "-f".into(),
            "docker-compose.yml".into(),
            "-f".into(),
            "tests/compose/override.yml".into(),
        ],
    };
    let up = project.run(&["up", "--detach", "--no-build"]);
    check(&up, "podman-compose up");
    let logs = || {
        let out = project.run(&["logs"]);
        format!(
            "---- compose logs ----\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };

    // (a) Developer mode: the UI answers and the sample apps' traces (OTel SDK and Lightstep
    // tracer) are stored.
    let ui: std::net::SocketAddr = "127.0.0.1:8361".parse().unwrap();
    wait_services(
        ui,
        &["frontend", "checkout", "payments", "inventory"],
        &logs,
    )
    .await;
    let (status, page) = http_get(ui, "/").await;
    assert_eq!(status, 200);
    assert!(page.contains("<html"), "{page}");

    // (b) The forwarding satellite took the TLS sample's spans on 9393 and delivered them to
    // the stand-in upstream, whose store has them.
    let upstream_ui: std::net::SocketAddr = "127.0.0.1:8461".parse().unwrap();
    wait_services(upstream_ui, &["frontend", "checkout", "payments"], &logs).await;
    let satellite: std::net::SocketAddr = "127.0.0.1:8180".parse().unwrap();
    let (status, ready) = http_get(satellite, "/_ready").await;
    assert_eq!(status, 200, "{ready}");
    let d = diagnostics(satellite).await;
    assert_eq!(d["upstream"]["url"], "http://upstream:8360/");
    assert!(d["listeners"]["tls"].is_string(), "{d}");
    assert!(d["spans"]["forwarded"].as_f64().unwrap_or(0.0) > 0.0, "{d}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
