//! The web client served from the binary: its files on the HTTP listener's free paths with their
//! types and security headers, revalidated by ETag, while every other route keeps its own answers.

use reqwest::{StatusCode, header};
use tern_testkit::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_page_is_served_at_the_root_with_its_policy() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    for path in ["/", "/index.html"] {
        let response = http
            .get(format!("{}{path}", server.http_base()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let h = response.headers();
        assert_eq!(h[header::CONTENT_TYPE], "text/html; charset=utf-8");
        let policy = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(policy.contains("default-src 'self'"), "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(h[header::CACHE_CONTROL], "no-cache");
        let body = response.text().await.unwrap();
        assert!(
            body.to_ascii_lowercase().contains("<!doctype html>"),
            "{path}: {body}"
        );
    }
    // HEAD answers with the same headers and no body.
    let head = http.head(server.http_base()).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(
        head.headers()[header::CONTENT_TYPE],
        "text/html; charset=utf-8"
    );
    assert!(head.bytes().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_file_is_served_with_its_type() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    // What the page loads: a module script is refused unless it is served as JavaScript.
    for (path, kind) in [
        ("/app.js", "text/javascript"),
        ("/sdk/client.js", "text/javascript"),
        ("/app.css", "text/css"),
        ("/icon.svg", "image/svg+xml"),
    ] {
        let response = http
            .get(format!("{}{path}", server.http_base()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.headers()[header::CONTENT_TYPE], kind, "{path}");
        assert_eq!(
            response.headers()[header::X_CONTENT_TYPE_OPTIONS],
            "nosniff"
        );
        assert!(
            !response
                .headers()
                .contains_key(header::CONTENT_SECURITY_POLICY),
            "{path}: the policy is the page's"
        );
        assert!(!response.bytes().await.unwrap().is_empty(), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_that_is_still_current_is_not_sent_again() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    let url = format!("{}/index.html", server.http_base());
    let first = http.get(&url).send().await.unwrap();
    let etag = first.headers()[header::ETAG].clone();
    assert!(etag.to_str().unwrap().starts_with('"'), "{etag:?}");
    let again = http
        .get(&url)
        .header(header::IF_NONE_MATCH, etag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()[header::ETAG], etag);
    assert!(again.bytes().await.unwrap().is_empty());
    let stale = http
        .get(&url)
        .header(header::IF_NONE_MATCH, "\"an-older-build\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_files_are_not_found_and_the_other_routes_answer_as_before() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    let base = server.http_base();

    let missing = http
        .get(format!("{base}/no-such-file.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(
        missing.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );

    // The HTTP API still owns /v1: an endpoint nobody serves gets its error shape, not a page.
    for path in ["/v1/no-such-route", "/v1/users/alice/no-such-thing", "/v1"] {
        let api = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(api.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(api.headers()[header::CONTENT_TYPE], "application/json");
        let body: serde_json::Value = serde_json::from_str(&api.text().await.unwrap()).unwrap();
        assert_eq!(body["name"], "INVALID_ARGUMENT", "{path}: {body}");
    }
    let openapi = http
        .get(format!("{base}/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(openapi.status(), StatusCode::OK);

    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.text().await.unwrap(), "ok\n");
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_web_client_turned_off_the_root_is_not_found() {
    let server = TestServer::start_with(|c| c.web_client = false).await;
    let http = reqwest::Client::new();
    let base = server.http_base();
    for path in ["/", "/index.html"] {
        let response = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let api = http
        .get(format!("{base}/v1/no-such-route"))
        .send()
        .await
        .unwrap();
    assert_eq!(api.headers()[header::CONTENT_TYPE], "application/json");
}
