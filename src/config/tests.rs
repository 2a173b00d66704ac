//! Unit tests of configuration parsing and validation.

use super::*;

pub(super) fn flags(args: &[&str]) -> Flags {
    let cli = Cli::try_parse_from(std::iter::once("cubesat").chain(args.iter().copied())).unwrap();
    match cli.command {
        Some(Command::Serve(f)) | Some(Command::Dev(f)) => f,
        _ => cli.flags,
    }
}

#[test]
fn serve_defaults() {
    let c = Config::merge(Mode::Serve, Flags::default(), Flags::default()).unwrap();
    assert_eq!(c.listen.to_string(), "0.0.0.0:8383");
    assert_eq!(c.admin_listen.to_string(), "0.0.0.0:8180");
    assert!(c.tls.is_none());
    let up = c.upstream.unwrap();
    assert_eq!(up.url.to_string(), "https://ingest.lightstep.com:443/");
    assert_eq!(up.url.port_u16(), Some(443));
    assert_eq!(c.buffer_bytes, 256 << 20);
    assert_eq!(c.max_message_bytes, 16 << 20);
}

#[test]
fn dev_defaults_have_no_upstream() {
    let c = Config::merge(Mode::Dev, Flags::default(), Flags::default()).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:8360");
    assert_eq!(c.admin_listen.to_string(), "127.0.0.1:8361");
    assert!(c.upstream.is_none());
}

#[test]
fn flag_beats_file_beats_default() {
    let file: Flags = toml::from_str(
        "listen = \"127.0.0.1:1\"\nadmin-listen = \"127.0.0.1:2\"\nbatch-timeout = \"50ms\"\nbuffer-bytes = \"64 MiB\"",
    )
    .unwrap();
    let c = Config::merge(
        Mode::Serve,
        flags(&["serve", "--listen", "127.0.0.1:9"]),
        file,
    )
    .unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:9");
    assert_eq!(c.admin_listen.to_string(), "127.0.0.1:2");
    assert_eq!(c.batch.max_age, Duration::from_millis(50));
    assert_eq!(c.buffer_bytes, 64 << 20);
}

#[test]
fn unknown_file_key_is_named() {
    let err = toml::from_str::<Flags>("lisen = \"x\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("lisen"), "{err}");
}

#[test]
fn bad_file_values_name_the_key_and_what_is_accepted() {
    let cases = [
        (
            "listen = \"0.0.0.0:8383\"\nbatch-timeout = \"fast\"\n",
            "line 2: invalid value \"fast\" for `batch-timeout`: a duration such as 500ms",
        ),
        (
            "buffer-bytes = \"lots\"",
            "invalid value \"lots\" for `buffer-bytes`: a size such as 256MiB",
        ),
        (
            "upstream-protocol = \"zipkin\"",
            "for `upstream-protocol`: one of \"auto\", \"lightstep\", \"otlp\"",
        ),
        (
            "batch-spans = \"many\"",
            "for `batch-spans`: a whole number",
        ),
        ("listen = \"nope\"", "for `listen`: an address such as"),
        ("lisen = \"x\"", "unknown field `lisen`"),
    ];
    for (text, want) in cases {
        let err = toml::from_str::<Flags>(text).unwrap_err();
        let message = describe_toml_error(text, &err);
        assert!(message.contains(want), "{text:?}: {message}");
    }
}

#[test]
fn bad_values_name_the_key() {
    let cases: &[(&[&str], &str)] = &[
        (&["serve", "--upstream", "ftp://x:1"], "`upstream`"),
        (&["serve", "--tls-cert", "/nope.pem"], "`tls-key`"),
        (&["serve", "--tls-listen", "127.0.0.1:1"], "`tls-listen`"),
        (&["serve", "--batch-spans", "0"], "`batch-spans`"),
        (&["serve", "--buffer-bytes", "1MiB"], "`buffer-bytes`"),
        (&["serve", "--upstream-ca", "/nope.pem"], "`upstream-ca`"),
        (&["serve", "--store-bytes", "1MiB"], "`store-bytes`"),
    ];
    for (args, key) in cases {
        let err = Config::merge(Mode::Serve, flags(args), Flags::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{args:?}: {err}");
    }
}

#[test]
fn upstream_protocol_from_flag_and_file() {
    let upstream = |c: Config| c.upstream.unwrap().protocol;
    let c = Config::merge(Mode::Serve, Flags::default(), Flags::default()).unwrap();
    assert_eq!(upstream(c), UpstreamProtocol::Auto);
    let c = Config::merge(
        Mode::Serve,
        flags(&["serve", "--upstream-protocol", "otlp"]),
        Flags::default(),
    )
    .unwrap();
    assert_eq!(upstream(c).forced(), Some(Protocol::Otlp));
    let file: Flags = toml::from_str("upstream-protocol = \"lightstep\"").unwrap();
    let c = Config::merge(Mode::Serve, Flags::default(), file).unwrap();
    assert_eq!(upstream(c).forced(), Some(Protocol::Lightstep));
}

#[test]
fn store_bytes_flag_file_and_default() {
    let c = Config::merge(Mode::Dev, Flags::default(), Flags::default()).unwrap();
    assert_eq!(c.store_bytes, 256 << 20);
    let file: Flags = toml::from_str("store-bytes = \"8 MiB\"").unwrap();
    let c = Config::merge(Mode::Dev, Flags::default(), file.clone()).unwrap();
    assert_eq!(c.store_bytes, 8 << 20);
    let c = Config::merge(Mode::Dev, flags(&["--store-bytes", "1MiB"]), file).unwrap();
    assert_eq!(c.store_bytes, 1 << 20);
    let err = Config::merge(
        Mode::Dev,
        flags(&["--store-bytes", "1KiB"]),
        Flags::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("`store-bytes`") && err.contains("at least"),
        "{err}"
    );
}

#[test]
fn clap_rejects_bad_syntax_with_the_flag_name() {
    let err = Cli::try_parse_from(["cubesat", "serve", "--listen", "nope"]).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("--listen"), "{err}");
}

#[test]
fn bare_flags_mean_dev_mode() {
    let cli = Cli::try_parse_from(["cubesat", "--listen", "127.0.0.1:0"]).unwrap();
    assert!(cli.command.is_none());
    assert_eq!(cli.flags.listen.unwrap().to_string(), "127.0.0.1:0");
}

#[test]
fn debug_output_hides_the_token() {
    let c = Config::merge(
        Mode::Serve,
        flags(&["serve", "--access-token", "s3cr3t"]),
        Flags::default(),
    )
    .unwrap();
    assert!(!format!("{c:?}").contains("s3cr3t"));
}
