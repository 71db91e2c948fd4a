//! The web client: the files of `web/app/`, compiled into the binary and served on the HTTP
//! listener's paths that no other route claims (`/` is `index.html`).

use std::borrow::Cow;

use axum::{
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::{MethodRouter, get},
};

/// Every file of `web/app/`. Debug builds embed them too (`debug-embed`), so what is served
/// never depends on the directory the binary runs in, and a binary carries its own client.
#[derive(rust_embed::Embed)]
#[folder = "../../web/app/"]
struct Assets;

/// What the client's pages may load: scripts, styles and pictures from this origin only (no
/// inline script, so an injected `<script>` does not run), WebSocket connections to the server,
/// and no framing, so another site cannot overlay it.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; connect-src 'self' ws: wss:; \
    img-src 'self' blob: data:; style-src 'self'; script-src 'self'; object-src 'none'; \
    base-uri 'none'; frame-ancestors 'none'";

/// The fallback of the HTTP listener when the web client is on: `GET` and `HEAD` of a file.
pub(crate) fn assets() -> MethodRouter {
    get(asset)
}

/// The fallback when the web client is off, and the answer for a file that is not there.
pub(crate) async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

async fn asset(uri: Uri, headers: HeaderMap) -> Response {
    let path = match uri.path().trim_start_matches('/') {
        "" => "index.html",
        path => path,
    };
    let Some(file) = Assets::get(path) else {
        return not_found().await;
    };
    let etag = etag(&file.metadata.sha256_hash());
    let mut response = if tern_http::if_none_match(&headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = file.data.into_response();
        let content_type = content_type(path, file.metadata.mimetype());
        if let Ok(value) = HeaderValue::from_str(&content_type) {
            response.headers_mut().insert(header::CONTENT_TYPE, value);
        }
        if content_type.starts_with("text/html") {
            let h = response.headers_mut();
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            );
            h.insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            );
        }
        response
    };
    let h = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, value);
    }
    // Each request asks whether its copy is still current (a 304 when it is), so the files of a
    // new binary are used at once, never a stale mix of old and new scripts.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The ETag of a file's bytes: their SHA-256, which the build computed.
fn etag(sha256: &[u8]) -> String {
    let hex: String = sha256.iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// The type of a file: the web's own text types named exactly (a module script must be served
/// as JavaScript, and `nosniff` makes the browser hold to what it is told), the guess from the
/// name's extension otherwise.
fn content_type<'a>(path: &str, guessed: &'a str) -> Cow<'a, str> {
    let extension = path.rsplit_once('.').map_or("", |(_, e)| e);
    match extension.to_ascii_lowercase().as_str() {
        "html" => "text/html; charset=utf-8".into(),
        "js" | "mjs" => "text/javascript".into(),
        "css" => "text/css".into(),
        _ => guessed.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(path: &str, headers: HeaderMap) -> Response {
        asset(path.parse().unwrap(), headers).await
    }

    #[test]
    fn the_web_text_types_are_named_exactly_and_the_rest_guessed() {
        assert_eq!(
            content_type("index.html", "text/html"),
            "text/html; charset=utf-8"
        );
        assert_eq!(
            content_type("sdk/client.js", "application/javascript"),
            "text/javascript"
        );
        assert_eq!(content_type("app.css", "text/css"), "text/css");
        assert_eq!(content_type("icon.svg", "image/svg+xml"), "image/svg+xml");
    }

    #[tokio::test]
    async fn the_root_is_the_index_page_with_its_policy() {
        let root = get("/", HeaderMap::new()).await;
        let index = get("/index.html", HeaderMap::new()).await;
        for response in [&root, &index] {
            assert_eq!(response.status(), StatusCode::OK);
            let h = response.headers();
            assert_eq!(h[header::CONTENT_TYPE], "text/html; charset=utf-8");
            assert_eq!(h[header::CONTENT_SECURITY_POLICY], CONTENT_SECURITY_POLICY);
            assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
            assert_eq!(h[header::CACHE_CONTROL], "no-cache");
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        }
        assert_eq!(root.headers()[header::ETAG], index.headers()[header::ETAG]);
    }

    #[tokio::test]
    async fn a_current_copy_gets_not_modified_and_a_stale_one_the_file() {
        let etag = get("/", HeaderMap::new()).await.headers()[header::ETAG].clone();
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, etag.clone());
        let response = get("/", headers).await;
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(response.headers()[header::ETAG], etag);
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"old\""));
        assert_eq!(get("/", headers).await.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_file_that_is_not_there_is_not_found() {
        for path in ["/no-such-file.js", "/sdk/", "/../Cargo.toml"] {
            assert_eq!(
                get(path, HeaderMap::new()).await.status(),
                StatusCode::NOT_FOUND,
                "{path}"
            );
        }
    }
}
