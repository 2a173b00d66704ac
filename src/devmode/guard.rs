//! DNS-rebinding protection for the developer-mode UI and API: a request is served only when
//! its `Host` names this machine by a loopback address (`localhost`, `*.localhost`,
//! `127.0.0.0/8`, `[::1]`) or the very address the admin listener is bound to.
//!
//! A web page on another site can make a browser send requests to a name it controls that
//! resolves to 127.0.0.1; those requests carry that foreign name as `Host`, and are refused
//! here with `403` and a message saying which names are served, so the page can never read the
//! traces. Requests without a `Host` (not a browser) are served.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Whether `host` (a `Host` header value, port optional) names this machine for a listener
/// bound to `bound`.
pub fn allowed_host(host: &str, bound: SocketAddr) -> bool {
    let name = match host.strip_prefix('[') {
        // An IPv6 literal: "[::1]" or "[::1]:8180".
        Some(rest) => match rest.split_once(']') {
            Some((ip, port)) if port.is_empty() || port.starts_with(':') => ip,
            _ => return false,
        },
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    match name.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback() || (ip == bound.ip() && !ip.is_unspecified()),
        Err(_) => false,
    }
}

/// Middleware: refuses requests whose `Host` is not [`allowed_host`].
pub async fn check_host(State(bound): State<SocketAddr>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .map(|v| v.to_str().unwrap_or("\u{fffd}").to_owned())
        .or_else(|| request.uri().authority().map(|a| a.to_string()));
    match host {
        Some(host) if !allowed_host(&host, bound) => (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!(
                "developer mode serves only loopback host names (localhost, 127.0.0.1, [::1]) \
                 and the admin listener's own address; refused Host {host:?} \
                 (DNS-rebinding protection)\n"
            ),
        )
            .into_response(),
        _ => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_and_the_bound_address_pass_others_do_not() {
        let any: SocketAddr = "0.0.0.0:8180".parse().unwrap();
        let lan: SocketAddr = "192.168.1.5:8180".parse().unwrap();
        for ok in [
            "localhost",
            "localhost:8180",
            "LOCALHOST.",
            "ui.localhost:1",
            "127.0.0.1:8180",
            "127.1.2.3",
            "[::1]:8180",
            "[::1]",
        ] {
            assert!(allowed_host(ok, any), "{ok}");
        }
        assert!(allowed_host("192.168.1.5:8180", lan));
        for refused in [
            "evil.example",
            "evil.example:8180",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "0.0.0.0:8180",
            "192.168.1.5:8180",
            "[::1",
            "[::1]x",
            "",
        ] {
            assert!(!allowed_host(refused, any), "{refused}");
        }
    }
}
