//! The developer-mode browser checks: a script of tests/browser/ run by Playwright's Python
//! against Debian's headless Chromium, talking with the test in lines (protocol lines and the
//! final `RESULT <json>` on its stdout, answers on its stdin), and where screenshots go.

use super::*;

/// A file of tests/browser/.
pub fn browser_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/browser")
        .join(name)
}

/// The Chromium binary: CUBESAT_CHROMIUM, else /usr/bin/chromium; fails the test when missing.
pub fn chromium() -> String {
    let path = std::env::var("CUBESAT_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&path).is_file(),
        "no Chromium at {path}; set CUBESAT_CHROMIUM or run scripts/test (it installs Debian's chromium)"
    );
    path
}

/// Where screenshots go, made if missing: target/screenshots/, or docs/ (the README's
/// pictures) when `CUBESAT_UPDATE_SCREENSHOTS=1`; a plain test run never touches tracked files.
pub fn screenshots_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = if std::env::var("CUBESAT_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        root.join("docs")
    } else {
        root.join("target/screenshots")
    };
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running browser check script; killed on drop.
pub struct BrowserCheck {
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    lines: std::sync::mpsc::Receiver<String>,
    name: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl BrowserCheck {
    /// Runs tests/browser/`script` with `python` (one with Playwright) and `config` as its
    /// only argument; its stderr is kept for failure messages. Python writes no bytecode next
    /// to the scripts.
    pub fn start(python: &str, script: &str, config: &serde_json::Value) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("browser.stderr");
        let mut child = Command::new(python)
            .arg(browser_script(script))
            .arg(config.to_string())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("start {script}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        BrowserCheck {
            stdin: child.stdin.take(),
            child,
            lines,
            name: script.to_owned(),
            log,
            _dir: dir,
        }
    }

    /// The next line the script prints, or `None` when it printed none within `within`.
    pub fn next_line(&self, within: Duration) -> Option<String> {
        self.lines.recv_timeout(within).ok()
    }

    /// Writes `line` to the script's stdin.
    pub fn answer(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").unwrap();
    }

    /// Fails the test, saying `what` went wrong and what the script wrote to stderr.
    pub fn failed(&self, what: &str) -> ! {
        panic!(
            "browser check {}: {what}\n{}",
            self.name,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        )
    }

    /// Closes the script's stdin and waits for it; fails the test unless it exited 0.
    pub fn finish(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        if !status.success() {
            self.failed(&format!("exited {status}"));
        }
    }
}

impl Drop for BrowserCheck {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
