//! The ingress part of the configuration: connection limits and timeouts of the ingest and
//! admin listeners, the browser origins allowed on ingest, and the configured access token
//! (flag, env var or file). Merged from flags over the file over defaults and validated like
//! every other key: an error names the key, the value and what is accepted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{ConfigError, Flags, Mode, at_least_one, invalid, positive};
use crate::ingest::auth::{self, AccessToken, TokenPolicy};
use crate::ingest::conn::ConnLimits;
use crate::ingest::conn::activity::MinRate;
use crate::ingest::http::CorsOrigins;

fn pick<T: Clone>(flag: &Option<T>, file: &Option<T>) -> Option<T> {
    flag.clone().or_else(|| file.clone())
}

/// The ingest and admin connection limits.
pub(super) fn connection_limits(
    flags: &Flags,
    file: &Flags,
    drain_timeout: Duration,
) -> Result<(ConnLimits, ConnLimits), ConfigError> {
    macro_rules! pick {
        ($field:ident) => {
            pick(&flags.$field, &file.$field)
        };
    }
    let d = ConnLimits::INGEST;
    let keepalive = match pick!(http2_keepalive_interval) {
        Some(interval) if interval.is_zero() => None,
        Some(interval) => Some(interval),
        None => d.http2_keepalive_interval,
    };
    let max_age = match pick!(max_connection_age) {
        Some(age) if age < Duration::from_secs(1) => {
            return Err(invalid(
                "max-connection-age",
                humantime::format_duration(age),
                "a duration of at least 1s, e.g. 5m (leave it out to keep connections)",
            ));
        }
        age => age,
    };
    let ingest = ConnLimits {
        max_connections: at_least_one(
            "max-connections",
            pick!(max_connections),
            d.max_connections,
        )?,
        tls_handshake_timeout: d.tls_handshake_timeout,
        protocol_detect_timeout: positive(
            "protocol-detect-timeout",
            pick!(protocol_detect_timeout),
            d.protocol_detect_timeout,
        )?,
        header_read_timeout: positive(
            "header-read-timeout",
            pick!(header_read_timeout),
            d.header_read_timeout,
        )?,
        http1_idle_timeout: positive(
            "http1-idle-timeout",
            pick!(http1_idle_timeout),
            d.http1_idle_timeout,
        )?,
        http2_idle_timeout: positive(
            "http2-idle-timeout",
            pick!(http2_idle_timeout),
            d.http2_idle_timeout,
        )?,
        http2_keepalive_interval: keepalive,
        http2_keepalive_timeout: positive(
            "http2-keepalive-timeout",
            pick!(http2_keepalive_timeout),
            d.http2_keepalive_timeout,
        )?,
        body_min_rate: MinRate {
            bytes_per_second: pick!(body_min_rate)
                .map_or(d.body_min_rate.bytes_per_second, |r| r.as_u64()),
            grace: positive(
                "body-min-rate-grace",
                pick!(body_min_rate_grace),
                d.body_min_rate.grace,
            )?,
        },
        max_connection_age: max_age,
        max_connection_age_grace: pick!(max_connection_age_grace)
            .unwrap_or(d.max_connection_age_grace),
        // One stuck client must not hold the whole drain: in-flight requests get at most the
        // drain timeout, and the batchers flush meanwhile.
        shutdown_grace: pick!(shutdown_grace)
            .unwrap_or(d.shutdown_grace)
            .min(drain_timeout),
        budget_bytes: d.budget_bytes,
    };
    let admin = ConnLimits::admin(
        &ingest,
        at_least_one("admin-max-connections", pick!(admin_max_connections), 64)?,
    );
    Ok((ingest, admin))
}

/// The browser origins allowed on ingest: the configured list, else none in serve mode and
/// any in developer mode on a loopback listener.
pub(super) fn cors_origins(
    mode: Mode,
    listen: SocketAddr,
    origins: Option<Vec<String>>,
) -> Result<CorsOrigins, ConfigError> {
    const EXPECTED: &str = "origins like https://app.example.com or http://localhost:3000 (scheme://host[:port], no path), separated by commas, or *";
    let Some(origins) = origins else {
        return Ok(match mode {
            Mode::Dev if listen.ip().is_loopback() => CorsOrigins::Any,
            _ => CorsOrigins::Off,
        });
    };
    let origins: Vec<&str> = origins
        .iter()
        .map(|o| o.trim())
        .filter(|o| !o.is_empty())
        .collect();
    if origins == ["*"] {
        return Ok(CorsOrigins::Any);
    }
    let mut list = Vec::with_capacity(origins.len());
    for origin in origins {
        let uri: http::Uri = origin
            .parse()
            .map_err(|_| invalid("cors-allowed-origins", origin, EXPECTED))?;
        let well_formed = matches!(uri.scheme_str(), Some("http" | "https"))
            && uri.host().is_some_and(|h| !h.is_empty())
            && !origin.ends_with('/')
            && uri.path_and_query().is_none_or(|p| p.as_str() == "/");
        let value = http::HeaderValue::from_str(origin)
            .ok()
            .filter(|_| well_formed)
            .ok_or_else(|| invalid("cors-allowed-origins", origin, EXPECTED))?;
        list.push(value);
    }
    Ok(if list.is_empty() {
        CorsOrigins::Off
    } else {
        CorsOrigins::List(list)
    })
}

/// The token policy: `--access-token` (or its env var) wins over `--access-token-file`; only a
/// token from the file is re-read on SIGHUP.
pub(super) fn token_policy(
    token: Option<AccessToken>,
    file: Option<PathBuf>,
    force: bool,
) -> Result<TokenPolicy, ConfigError> {
    if let Some(token) = token {
        if !token.expose().is_empty() {
            auth::check_token(token.expose())
                .map_err(|e| invalid("access-token", "***", e.to_string()))?;
        }
        return Ok(TokenPolicy::new(token, force));
    }
    let Some(path) = file else {
        return Ok(TokenPolicy::new(AccessToken::default(), force));
    };
    let token = auth::read_token_file(&path).map_err(|e| {
        invalid(
            "access-token-file",
            path.display(),
            format!("a readable file holding the token ({e})"),
        )
    })?;
    let mut policy = TokenPolicy::new(token, force);
    policy.file = Some(path);
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::config::tests::flags;

    fn serve(args: &[&str]) -> Result<Config, ConfigError> {
        let mut all = vec!["serve"];
        all.extend_from_slice(args);
        Config::merge(Mode::Serve, flags(&all), Flags::default())
    }

    #[test]
    fn timeouts_have_defaults_flags_and_file_keys() {
        let c = serve(&[]).unwrap();
        assert_eq!(c.conn.http2_idle_timeout, Duration::from_secs(60));
        assert_eq!(c.conn.max_connection_age, None);
        assert_eq!(c.admin_conn.max_connections, 64);
        let c = serve(&[
            "--max-connection-age",
            "5m",
            "--http2-keepalive-interval",
            "0s",
            "--body-min-rate",
            "1KiB",
            "--drain-timeout",
            "2s",
        ])
        .unwrap();
        assert_eq!(c.conn.max_connection_age, Some(Duration::from_secs(300)));
        assert_eq!(c.conn.http2_keepalive_interval, None);
        assert_eq!(c.conn.body_min_rate.bytes_per_second, 1024);
        assert_eq!(
            c.conn.shutdown_grace,
            Duration::from_secs(2),
            "at most the drain"
        );
        let file: Flags =
            toml::from_str("http1-idle-timeout = \"3s\"\nadmin-max-connections = 8").unwrap();
        let c = Config::merge(Mode::Serve, Flags::default(), file).unwrap();
        assert_eq!(c.conn.http1_idle_timeout, Duration::from_secs(3));
        assert_eq!(c.admin_conn.max_connections, 8);
    }

    #[test]
    fn bad_ingress_values_name_the_key() {
        let cases: &[(&[&str], &str)] = &[
            (&["--max-connection-age", "10ms"], "`max-connection-age`"),
            (&["--http2-idle-timeout", "0s"], "`http2-idle-timeout`"),
            (
                &["--protocol-detect-timeout", "0s"],
                "`protocol-detect-timeout`",
            ),
            (&["--admin-max-connections", "0"], "`admin-max-connections`"),
            (
                &["--cors-allowed-origins", "example.com"],
                "`cors-allowed-origins`",
            ),
            (
                &["--cors-allowed-origins", "https://a.example/path"],
                "`cors-allowed-origins`",
            ),
            (&["--access-token", "bad token"], "`access-token`"),
            (
                &["--access-token-file", "/nonexistent/token"],
                "`access-token-file`",
            ),
        ];
        for (args, key) in cases {
            let err = serve(args).unwrap_err().to_string();
            assert!(err.contains(key), "{args:?}: {err}");
            assert!(
                !err.contains("bad token"),
                "the token is never echoed: {err}"
            );
        }
    }

    #[test]
    fn cors_is_off_in_serve_mode_and_open_on_loopback_dev() {
        let loopback: SocketAddr = "127.0.0.1:8360".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:8360".parse().unwrap();
        assert_eq!(
            cors_origins(Mode::Serve, loopback, None).unwrap(),
            CorsOrigins::Off
        );
        assert_eq!(
            cors_origins(Mode::Dev, loopback, None).unwrap(),
            CorsOrigins::Any
        );
        assert_eq!(
            cors_origins(Mode::Dev, any, None).unwrap(),
            CorsOrigins::Off
        );
        let list = cors_origins(
            Mode::Serve,
            any,
            Some(vec![
                "https://a.example".into(),
                " http://localhost:3000".into(),
            ]),
        )
        .unwrap();
        assert_eq!(
            list,
            CorsOrigins::List(vec![
                http::HeaderValue::from_static("https://a.example"),
                http::HeaderValue::from_static("http://localhost:3000"),
            ])
        );
    }

    #[test]
    fn the_flag_token_wins_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "from-file\n").unwrap();
        let p = token_policy(None, Some(path.clone()), false).unwrap();
        assert_eq!(p.resolve(None, None).unwrap(), "from-file");
        assert!(p.file.is_some());
        let p = token_policy(Some(AccessToken::new("flag")), Some(path), false).unwrap();
        assert_eq!(p.resolve(None, None).unwrap(), "flag");
        assert!(p.file.is_none());
    }
}
