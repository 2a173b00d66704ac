//! The developer-mode web UI: static HTML, CSS and JavaScript modules compiled into the binary.
//!
//! Owns only the assets and the routes that serve them (`/` and `/ui/<file>`); every piece of
//! data the pages show comes from the JSON API under `/api/` (see `api.rs`), fetched by the
//! browser. Nothing here touches the store, and nothing is downloaded at run time: the pages work
//! offline, with no CDN and no build step.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One compiled-in file: its name under `/ui/`, its media type and its bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const JS: &str = "text/javascript; charset=utf-8";

/// One [`Asset`] for the file `ui/<name>` next to this source file.
macro_rules! asset {
    ($name:literal, $content_type:expr) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_str!(concat!("ui/", $name)),
        }
    };
}

/// Every file the pages load. `index.html` is served at `/` as well.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("services.js", JS),
    asset!("explore.js", JS),
    asset!("trace.js", JS),
    asset!("diagram.js", JS),
    asset!("live.js", JS),
    asset!("status.js", JS),
];

/// Scripts, styles and data only from this origin; the UI never loads anything from elsewhere.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
                   object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// The UI routes: `/` (the single page) and `/ui/{file}` (its assets). Mount beside `/api/`.
pub fn router() -> axum::Router {
    axum::Router::new()
        .route("/", get(|| async { serve("index.html") }))
        .route("/ui/{file}", get(asset))
}

async fn asset(Path(file): Path<String>) -> Response {
    serve(&file)
}

fn serve(name: &str) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("no UI asset named {name:?}\n"),
        )
            .into_response();
    };
    let mut response = (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            // The assets change only with the binary; revalidating is cheap on loopback and
            // keeps a rebuilt binary from serving stale scripts.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        asset.body,
    )
        .into_response();
    if asset.content_type.starts_with("text/html") {
        response.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get_path(path: &str) -> (StatusCode, Option<String>, String) {
        let response = router()
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("infallible router");
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (
            status,
            content_type,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    #[tokio::test]
    async fn root_serves_the_page_with_a_same_origin_policy() {
        let response = router()
            .oneshot(Request::get("/").body(Body::empty()).expect("request"))
            .await
            .expect("infallible router");
        assert_eq!(response.status(), StatusCode::OK);
        let csp = response.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .expect("ascii");
        assert!(csp.contains("default-src 'self'"), "{csp}");
        let (_, content_type, body) = get_path("/").await;
        assert_eq!(content_type.as_deref(), Some("text/html; charset=utf-8"));
        assert!(body.contains(r#"<script type="module" src="/ui/app.js">"#));
    }

    #[tokio::test]
    async fn every_asset_is_served_with_its_type() {
        for asset in ASSETS {
            let (status, content_type, body) = get_path(&format!("/ui/{}", asset.name)).await;
            assert_eq!(status, StatusCode::OK, "{}", asset.name);
            assert_eq!(content_type.as_deref(), Some(asset.content_type));
            assert_eq!(body, asset.body);
        }
    }

    #[tokio::test]
    async fn unknown_assets_are_404_not_the_page() {
        for path in ["/ui/nope.js", "/ui/..%2Fmod.rs", "/ui/"] {
            let (status, _, body) = get_path(path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        }
    }

    /// Every `/ui/...` file and every module a script imports is one of the compiled-in assets,
    /// so a renamed file cannot leave the page with a broken import.
    #[test]
    fn every_referenced_file_is_compiled_in() {
        let known = |name: &str| ASSETS.iter().any(|a| a.name == name);
        for asset in ASSETS {
            for (i, _) in asset.body.match_indices("/ui/") {
                let rest = &asset.body[i + 4..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-'))
                    .unwrap_or(rest.len());
                let name = &rest[..end];
                assert!(known(name), "{} references missing /ui/{name}", asset.name);
            }
            for (i, _) in asset.body.match_indices(" from \"./") {
                let rest = &asset.body[i + 9..];
                let name = &rest[..rest.find('"').unwrap_or(rest.len())];
                assert!(known(name), "{} imports missing ./{name}", asset.name);
            }
        }
    }
}
