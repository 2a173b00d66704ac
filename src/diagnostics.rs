//! `/diagnostics`: what this satellite is doing, on one page an operator can open in a browser
//! (HTML, when `Accept` prefers `text/html`) or a script can read (JSON: anything else, such as
//! `Accept: application/json` or curl's `*/*`; `?format=json|html` chooses explicitly).
//!
//! Listeners, readiness, the upstream (state, last error, trust anchors), the buffer (and the
//! spool), spans received, forwarded and dropped by reason, build info, and the configuration
//! with every secret masked: the access token is shown only as set or not, and an upstream
//! URL's userinfo (`https://user:password@host`) as `***`. Sits beside the pipeline: it only
//! reads shared state and the metrics the pipeline already counts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::admin::AdminState;
use crate::config::{Config, Mode};
use crate::telemetry;

/// `uri` as text with any userinfo (`user:password@`) replaced by `***@`.
pub fn redact_url(uri: &http::Uri) -> String {
    let text = uri.to_string();
    match uri.authority().map(|a| a.as_str()) {
        Some(authority) if authority.contains('@') => {
            let host = authority.rsplit('@').next().unwrap_or_default();
            text.replacen(authority, &format!("***@{host}"), 1)
        }
        _ => text,
    }
}

/// The configuration as `/diagnostics` shows it: every key under its flag name, secrets masked.
pub fn config_summary(config: &Config) -> Value {
    let ms = |d: std::time::Duration| humantime::format_duration(d).to_string();
    let size = |b: usize| bytesize::ByteSize(b as u64).to_string();
    let mut c = Map::new();
    let mode = match config.mode {
        Mode::Dev => "dev",
        Mode::Serve => "serve",
    };
    c.insert("mode".into(), json!(mode));
    c.insert("listen".into(), json!(config.listen.to_string()));
    c.insert(
        "tls-listen".into(),
        json!(config.tls.as_ref().map(|t| t.addr.to_string())),
    );
    c.insert(
        "admin-listen".into(),
        json!(config.admin_listen.to_string()),
    );
    match &config.upstream {
        Some(up) => {
            c.insert("upstream".into(), json!(redact_url(&up.url)));
            c.insert(
                "upstream-ca".into(),
                json!(if up.ca_pem.is_some() { "given" } else { "none" }),
            );
            c.insert(
                "upstream-protocol".into(),
                json!(format!("{:?}", up.protocol).to_lowercase()),
            );
            c.insert("upstream-timeout".into(), json!(ms(up.request_timeout)));
            c.insert("upstream-concurrency".into(), json!(up.concurrency));
            c.insert("retry-max-elapsed".into(), json!(ms(up.retry_max_elapsed)));
        }
        None => {
            c.insert(
                "upstream".into(),
                json!("off (developer mode keeps spans locally)"),
            );
        }
    }
    let token = if config.tokens.configured.get().is_empty() {
        "not set"
    } else {
        "set (hidden)"
    };
    c.insert("access-token".into(), json!(token));
    c.insert("force-access-token".into(), json!(config.tokens.force));
    c.insert("buffer-bytes".into(), json!(size(config.buffer_bytes)));
    c.insert("batch-spans".into(), json!(config.batch.max_spans));
    c.insert("batch-bytes".into(), json!(size(config.batch.max_bytes)));
    c.insert("batch-timeout".into(), json!(ms(config.batch.max_age)));
    c.insert("batch-workers".into(), json!(config.batch_workers));
    c.insert(
        "max-message-bytes".into(),
        json!(size(config.max_message_bytes)),
    );
    c.insert("max-connections".into(), json!(config.conn.max_connections));
    c.insert("drain-timeout".into(), json!(ms(config.drain_timeout)));
    c.insert("log-level".into(), json!(config.log_level));
    if config.mode == Mode::Dev {
        c.insert("store-bytes".into(), json!(size(config.store_bytes)));
    }
    if let Some(spool) = &config.spool {
        c.insert("spool-dir".into(), json!(spool.dir.display().to_string()));
        c.insert(
            "spool-bytes".into(),
            json!(bytesize::ByteSize(spool.limit_bytes).to_string()),
        );
    }
    Value::Object(c)
}

/// Query parameters of `/diagnostics`.
#[derive(Debug, serde::Deserialize)]
pub struct Format {
    format: Option<String>,
}

/// `GET /diagnostics`: the HTML page for browsers (`Accept` names `text/html` before any
/// JSON, or `?format=html`), else JSON (`Accept: application/json`, `curl`'s `*/*`, scripts).
pub async fn handler(
    State(state): State<AdminState>,
    Query(format): Query<Format>,
    headers: HeaderMap,
) -> Response {
    let report = snapshot(&state);
    let wants_html = match format.format.as_deref() {
        Some(f) => f == "html",
        None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(prefers_html),
    };
    if wants_html {
        Html(page(&report)).into_response()
    } else {
        axum::Json(report).into_response()
    }
}

/// True when an `Accept` header asks for HTML before JSON (a browser's does).
fn prefers_html(accept: &str) -> bool {
    let rank = |media: &str| {
        accept
            .split(',')
            .position(|part| part.trim().starts_with(media))
    };
    match (rank("text/html"), rank("application/json")) {
        (Some(html), Some(json)) => html < json,
        (Some(_), None) => true,
        _ => false,
    }
}

/// Everything the page shows, as JSON.
fn snapshot(state: &AdminState) -> Value {
    let r = &state.readiness;
    let metrics = state.metrics.render();
    let upstream = match (&state.upstream, r.upstream()) {
        (Some(url), health) => json!({
            "url": url,
            "reachable": health.is_some_and(|h| h.is_up()),
            "ca_roots": health.map(|h| h.ca_roots().describe()),
            "last_error": health.and_then(|h| h.last_error()).map(|e| json!({
                "at": rfc3339(e.at),
                "code": e.code,
                "message": e.message,
            })),
        }),
        (None, _) => Value::Null,
    };
    let ring = r.ring();
    json!({
        "build": {
            "version": env!("CARGO_PKG_VERSION"),
            "target": format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS),
            "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        },
        "mode": match state.mode { Mode::Dev => "dev", Mode::Serve => "serve" },
        "started": rfc3339(state.started),
        "ready": r.not_ready_reason().is_none(),
        "not_ready_reason": r.not_ready_reason(),
        "listeners": state.addrs,
        "upstream": upstream,
        "buffer": {
            "used_bytes": ring.used_bytes(),
            "capacity_bytes": ring.capacity_bytes(),
            "held_spans": ring.held_spans(),
            "below_high_water": ring.has_headroom(),
        },
        // null = no spool (--spool-dir not set).
        "spool": ring.spool().map(|spool| {
            let status = spool.status();
            json!({
                "dir": status.dir.display().to_string(),
                "used_bytes": status.bytes,
                "limit_bytes": status.limit_bytes,
                "nearly_full": spool.is_nearly_full(),
                "records": status.records,
                "waiting_records": status.waiting,
                "oldest_segment_age_seconds": status.oldest.map(|age| age.as_secs()),
                "replayed_records": series(&metrics, telemetry::SPOOL_REPLAYED_RECORDS, "").values().sum::<f64>(),
                "corrupt_records": series(&metrics, telemetry::SPOOL_CORRUPT_RECORDS, "").values().sum::<f64>(),
            })
        }),
        "spans": {
            "received": series(&metrics, telemetry::SPANS_RECEIVED, "protocol"),
            "forwarded": series(&metrics, telemetry::SPANS_FORWARDED, "").values().sum::<f64>(),
            "dropped": series(&metrics, telemetry::SPANS_DROPPED, "reason"),
            "dropped_by_clients": series(&metrics, telemetry::CLIENT_DROPPED_SPANS, "protocol"),
        },
        "reports_rejected": series(&metrics, telemetry::REPORTS_REJECTED, "reason"),
        "config": state.config.as_ref(),
    })
}

/// The values of counter `name` in Prometheus text `metrics`, summed by `label` (all in one
/// entry `""` when `label` is empty).
fn series(metrics: &str, name: &str, label: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(rest) => match rest.split_once("} ") {
                Some((labels, value)) => (labels, value),
                None => continue,
            },
            None if rest.starts_with(' ') => ("", rest),
            None => continue, // Another metric whose name starts with `name`.
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let key = label_value(labels, label).unwrap_or_default();
        *out.entry(key.to_owned()).or_default() += value;
    }
    out
}

fn label_value<'a>(labels: &'a str, label: &str) -> Option<&'a str> {
    if label.is_empty() {
        return None;
    }
    let start = labels.find(&format!("{label}=\""))? + label.len() + 2;
    let len = labels[start..].find('"')?;
    Some(&labels[start..start + len])
}

fn rfc3339(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string()
}

/// The HTML page: each top-level section a table, nested objects as nested tables.
fn page(report: &Value) -> String {
    let mut html = String::from(concat!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        "<title>cubesat diagnostics</title><style>",
        ":root{color-scheme:light dark;font-family:system-ui,sans-serif}",
        "body{margin:1.5rem;max-width:60rem}table{border-collapse:collapse;margin:.25rem 0}",
        "th,td{border:1px solid #8884;padding:.2rem .6rem;text-align:left;vertical-align:top}",
        "th{font-weight:600}td.n{font-variant-numeric:tabular-nums}",
        ".bad{color:#c33}.ok{color:#2a2}",
        "</style></head><body><main>\n<h1>cubesat diagnostics</h1>\n",
    ));
    let ready = report["ready"].as_bool().unwrap_or(false);
    let _ = writeln!(
        html,
        "<p>Ready: <strong class=\"{}\">{}</strong>{} &middot; <a href=\"?format=json\">JSON</a></p>",
        if ready { "ok" } else { "bad" },
        if ready { "yes" } else { "no" },
        report["not_ready_reason"]
            .as_str()
            .map(|r| format!(" ({})", escape(r)))
            .unwrap_or_default(),
    );
    if let Value::Object(sections) = report {
        for (name, value) in sections {
            if matches!(name.as_str(), "ready" | "not_ready_reason") {
                continue;
            }
            let _ = writeln!(html, "<section><h2>{}</h2>", escape(&title(name)));
            cell(&mut html, value);
            html.push_str("</section>\n");
        }
    }
    html.push_str("</main></body></html>\n");
    html
}

fn cell(html: &mut String, value: &Value) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            html.push_str("<table>");
            for (k, v) in map {
                let _ = write!(html, "<tr><th scope=\"row\">{}</th><td", escape(k));
                html.push_str(if v.is_number() { " class=\"n\">" } else { ">" });
                cell(html, v);
                html.push_str("</td></tr>");
            }
            html.push_str("</table>");
        }
        Value::Object(_) => html.push_str("none"),
        Value::Null => html.push_str("&mdash;"),
        Value::String(s) => html.push_str(&escape(s)),
        other => html.push_str(&escape(&other.to_string())),
    }
}

fn title(key: &str) -> String {
    let text = key.replace('_', " ");
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_masked() {
        let uri: http::Uri = "http://user:s3cret@collector.example:4317".parse().unwrap();
        let shown = redact_url(&uri);
        assert_eq!(shown, "http://***@collector.example:4317/");
        let plain: http::Uri = "https://ingest.lightstep.com:443".parse().unwrap();
        assert_eq!(redact_url(&plain), "https://ingest.lightstep.com:443/");
    }

    #[test]
    fn series_sums_by_label_and_skips_longer_names() {
        let text = "# TYPE cubesat_spans_dropped_total counter\n\
            cubesat_spans_dropped_total{reason=\"buffer_full\"} 3\n\
            cubesat_spans_dropped_total{reason=\"shutdown\"} 2\n\
            cubesat_spans_dropped_total_extra 9\n\
            cubesat_spans_forwarded_total 7\n";
        let dropped = series(text, telemetry::SPANS_DROPPED, "reason");
        assert_eq!(dropped.get("buffer_full"), Some(&3.0));
        assert_eq!(dropped.get("shutdown"), Some(&2.0));
        assert_eq!(dropped.len(), 2);
        let forwarded = series(text, telemetry::SPANS_FORWARDED, "");
        assert_eq!(forwarded.values().sum::<f64>(), 7.0);
    }

    #[test]
    fn browsers_get_html_scripts_get_json() {
        assert!(prefers_html(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        ));
        assert!(!prefers_html("application/json"));
        assert!(!prefers_html("*/*"));
        assert!(!prefers_html("application/json, text/html"));
    }

    #[test]
    fn page_escapes_values() {
        let html =
            page(&json!({"ready": false, "not_ready_reason": "<x>", "config": {"k": "a&b"}}));
        assert!(html.contains("(&lt;x&gt;)"), "{html}");
        assert!(html.contains("a&amp;b"), "{html}");
        assert!(!html.contains("<x>"));
    }
}
