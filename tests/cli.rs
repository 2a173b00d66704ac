//! The command-line contract: start lines, exit code 2 naming the key, config-file precedence,
//! the dev-certificate command.

mod common;

use std::process::Command;

use common::*;

fn cubesat(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cubesat"))
        .args(args)
        .env_remove("LIGHTSTEP_ACCESS_TOKEN")
        .output()
        .unwrap()
}

#[test]
fn bad_values_exit_2_naming_the_key() {
    let cases: &[(&[&str], &str)] = &[
        (&["serve", "--listen", "not-an-address"], "--listen"),
        (&["serve", "--upstream", "ftp://x"], "upstream"),
        (&["serve", "--batch-timeout", "soon"], "--batch-timeout"),
        (
            &[
                "serve",
                "--tls-cert",
                "/nonexistent.pem",
                "--tls-key",
                "/nonexistent.pem",
            ],
            "tls-cert",
        ),
        (
            &["serve", "--upstream-protocol", "carrier-pigeon"],
            "--upstream-protocol",
        ),
        (&["serve", "--no-such-flag"], "--no-such-flag"),
        // Past the address space: the ring's region cannot be mapped (an error, not an abort).
        (
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--buffer-bytes",
                "1PiB",
                "--upstream",
                "http://127.0.0.1:9",
            ],
            "--buffer-bytes",
        ),
    ];
    for (args, key) in cases {
        let out = cubesat(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(key), "{args:?} names {key}: {stderr}");
    }
}

#[test]
fn config_file_errors_exit_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cubesat.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\nbatch-spanz = 3\n").unwrap();
    let out = cubesat(&["serve", "--config", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("batch-spanz"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_beat_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cubesat.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:1\"\nadmin-listen = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:9\"\n",
    )
    .unwrap();
    // The file's ingest port 1 would fail to bind as non-root or clash; the flag wins.
    let cubesat = Cubesat::start(&[
        "serve",
        "--config",
        file.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    let (_, diagnostics) = cubesat.admin_get("/diagnostics").await;
    assert!(
        diagnostics.contains("http://127.0.0.1:9/"),
        "upstream from the file: {diagnostics}"
    );
    assert_ne!(cubesat.ingest.port(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_flags_run_developer_mode_with_a_ui_line_and_live_admin() {
    let cubesat = Cubesat::start(&["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]);
    assert_eq!(cubesat.admin_get("/_live").await.0, 200);
    cubesat
        .wait_ready(200, std::time::Duration::from_secs(10))
        .await;
    let (_, diagnostics) = cubesat.admin_get("/diagnostics").await;
    assert!(diagnostics.contains("\"mode\":\"dev\""), "{diagnostics}");
}

#[test]
fn certs_command_writes_a_ca_and_a_server_chain() {
    let (_dir, ca, cert, key) = dev_certs();
    for file in [&ca, &cert, &key] {
        assert!(
            std::fs::read_to_string(file)
                .unwrap()
                .contains("-----BEGIN"),
            "{file:?}"
        );
    }
    let chain = std::fs::read_to_string(&cert).unwrap();
    assert_eq!(
        chain.matches("BEGIN CERTIFICATE").count(),
        2,
        "server cert then CA"
    );
}
