//! The cubesat process: the real binary as a child, with its bound addresses, and the TLS
//! ingest fixtures (dev certificates).

use super::*;

/// A running `cubesat`, killed on drop; its stderr is printed if the test fails.
pub struct Cubesat {
    child: Child,
    pub ingest: SocketAddr,
    pub tls: Option<SocketAddr>,
    pub admin: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Cubesat {
    /// Starts `cubesat serve` on port 0 with `args` added.
    pub fn serve(args: &[&str]) -> Cubesat {
        Self::run("serve", args)
    }

    /// Starts `cubesat <mode>` (`serve` or `dev`) on port 0 with `args` added.
    pub fn run(mode: &str, args: &[&str]) -> Cubesat {
        let mut all = vec![
            mode,
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ];
        all.extend_from_slice(args);
        Self::start(&all)
    }

    /// Starts the binary with exactly `args`, waiting for its start lines.
    pub fn start(args: &[&str]) -> Cubesat {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cubesat"));
        cmd.args(args)
            .env("RUST_LOG", "info,cubesat=debug")
            .env_remove("LIGHTSTEP_ACCESS_TOKEN");
        Self::start_command(cmd)
    }

    /// Starts `cmd` (cubesat itself, or a container runtime running it in the foreground),
    /// waiting for cubesat's start lines on its stdout.
    pub fn start_command(mut cmd: Command) -> Cubesat {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stderr.log");
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start cubesat");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (mut ingest, mut tls, mut admin) = (None, None, None);
        let deadline = Instant::now() + Duration::from_secs(20);
        while admin.is_none() {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| {
                    panic!(
                        "no start lines; stderr:\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    )
                });
            let parts: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(
                &parts[..2],
                ["cubesat", "listening:"],
                "start line format: {line}"
            );
            let addr: SocketAddr = parts[4].parse().unwrap();
            assert_ne!(addr.port(), 0, "start line shows the real port: {line}");
            match parts[2] {
                "ingest" => ingest = Some(addr),
                "tls" => tls = Some(addr),
                "admin" => admin = Some(addr),
                "ui" => {}
                other => panic!("unexpected role {other}"),
            }
        }
        Cubesat {
            child,
            ingest: ingest.unwrap(),
            tls,
            admin: admin.unwrap(),
            log,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit code.
    pub fn terminate(&mut self, within: Duration) -> Option<i32> {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "cubesat did not exit; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the process with SIGKILL (no drain, nothing flushed) and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// GET on the admin listener: (status, body).
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        http_get(self.admin, path).await
    }

    /// Waits until `/_ready` answers `want`.
    pub async fn wait_ready(&self, want: u16, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let (status, body) = self.admin_get("/_ready").await;
            if status == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "/_ready stayed {status} ({body}), wanted {want}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The value of a metric line (name with labels exactly as rendered), or 0.
    pub async fn metric(&self, series: &str) -> f64 {
        let (_, text) = self.admin_get("/metrics").await;
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.trim().parse().ok())
            })
            .unwrap_or(0.0)
    }

    /// Waits up to `timeout` for the metric `series` to reach `want` (counters are updated
    /// after the upstream's answer, which may come after the capture saw the request), and
    /// returns its last value.
    pub async fn wait_metric(&self, series: &str, want: f64, timeout: Duration) -> f64 {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.metric(series).await;
            if value >= want || Instant::now() >= deadline {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Cubesat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- cubesat stderr ----\n{}", self.stderr());
        }
    }
}

/// A minimal HTTP/1.1 GET.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use http_body_util::{BodyExt, Empty};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let uri: http::Uri = format!("http://{addr}{path}").parse().unwrap();
    let response = client.get(uri).await.expect("admin GET");
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Development certificates from `cubesat certs`, kept while this lives, and the flags that
/// serve TLS ingest with them.
pub struct TlsIngest {
    _dir: tempfile::TempDir,
    /// The CA file a client trusts.
    pub ca: PathBuf,
    cert: String,
    key: String,
}

impl TlsIngest {
    /// Makes the certificates.
    pub fn new() -> Self {
        let (dir, ca, cert, key) = dev_certs();
        let path = |p: PathBuf| p.to_str().expect("UTF-8 temp path").to_owned();
        Self {
            _dir: dir,
            ca,
            cert: path(cert),
            key: path(key),
        }
    }

    /// The CA file as a flag value.
    pub fn ca_str(&self) -> &str {
        self.ca.to_str().expect("UTF-8 temp path")
    }

    /// The server certificate and key files, for a server that presents them.
    pub fn identity(&self) -> (&Path, &Path) {
        (Path::new(&self.cert), Path::new(&self.key))
    }

    /// `--tls-listen 127.0.0.1:0` with the server certificate and key.
    pub fn args(&self) -> [&str; 6] {
        [
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-cert",
            &self.cert,
            "--tls-key",
            &self.key,
        ]
    }
}

/// Runs `cubesat certs` into a fresh directory: (dir, cacert, server cert, server key).
pub fn dev_certs() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_cubesat"))
        .args(["certs", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "cubesat certs failed");
    let p = dir.path().to_owned();
    (
        dir,
        p.join("cacert.pem"),
        p.join("server.pem"),
        p.join("server-key.pem"),
    )
}

/// A memory field of process `pid` (`VmHWM`, `VmRSS`) from /proc/PID/status, in bytes.
fn status_bytes(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect(field);
    kb << 10
}

/// Peak resident set of process `pid` in bytes (`VmHWM` in /proc/PID/status), printed.
#[allow(dead_code)]
pub fn peak_rss(pid: i32) -> u64 {
    let bytes = status_bytes(pid, "VmHWM");
    eprintln!("peak RSS of cubesat: {} MiB", bytes >> 20);
    bytes
}

/// Resident set of process `pid` now, in bytes (`VmRSS`).
#[allow(dead_code)]
pub fn rss(pid: i32) -> u64 {
    status_bytes(pid, "VmRSS")
}
