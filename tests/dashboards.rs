//! The Grafana dashboard and the Prometheus alert rules in `deploy/` name only metrics a running
//! cluster node exports, and every series carries the node id.

use std::{collections::BTreeSet, path::Path};

use tern_testkit::{TestServer, http_get};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Every `tern_…` metric name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("tern_") {
        let start = i + at;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_lowercase() || bytes[end] == b'_') {
            end += 1;
        }
        if boundary {
            names.insert(text[start..end].to_owned());
        }
        i = end.max(start + 1);
    }
    names
}

/// The PromQL expressions of the dashboard's panels.
fn dashboard_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(Path::new(ROOT).join("deploy/grafana/tern.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "the dashboard covers the node");
    panels
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| {
            t["expr"]
                .as_str()
                .expect("each target has an expression")
                .to_owned()
        })
        .collect()
}

/// The expressions of the alert rules (`expr:` lines).
fn alert_exprs() -> Vec<String> {
    let text =
        std::fs::read_to_string(Path::new(ROOT).join("deploy/prometheus/alerts.yml")).unwrap();
    let exprs: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .map(|e| e.trim().to_owned())
        .collect();
    let alerts = text
        .lines()
        .filter(|l| l.trim().starts_with("- alert:"))
        .count();
    assert_eq!(exprs.len(), alerts, "every alert has a one-line expression");
    assert!(alerts >= 6);
    exprs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_the_alerts_name_only_exported_metrics() {
    // A webhook nobody listens at: its failed deliveries export the webhook metrics.
    let server = TestServer::start_cluster(|c| {
        c.webhooks = vec![tern_server::WebhookSetting {
            name: "nobody".into(),
            url: "http://127.0.0.1:9/hook".into(),
            secret: "a secret".into(),
            events: vec!["message.created".into()],
        }];
        c.webhook_max_attempts = 1;
    })
    .await;
    server.register(&["alice", "bob"]).await;
    // A message through the pipeline, so that its histograms have samples to render.
    let alice = server.client_on(0, "alice", "phone", |_| {}).await;
    let mut bob = server.client_on(0, "bob", "phone", |_| {}).await;
    alice.client.send_text("bob", "hello").await.unwrap();
    bob.messages(1).await;
    // The webhook's delivery fails on whichever node claims it: read every node's metrics.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let exported = loop {
        let mut all = String::new();
        for i in 0..server.nodes().count() {
            let (status, metrics) = http_get(server.http_addr_of(i), "/metrics").await;
            assert_eq!(status, 200);
            all.push_str(&metrics);
        }
        if all.contains("tern_webhook_deliveries_total") {
            break all;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a webhook delivery was attempted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let series: Vec<&str> = exported
        .lines()
        .filter(|l| l.starts_with("tern_"))
        .collect();
    assert!(!series.is_empty());
    for line in &series {
        assert!(
            line.contains("node=\""),
            "a series without its node: {line}"
        );
    }
    let exported_names: BTreeSet<String> = series
        .iter()
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .collect();

    let named: BTreeSet<String> = dashboard_exprs()
        .iter()
        .chain(alert_exprs().iter())
        .flat_map(|e| metric_names(e))
        .collect();
    let missing: Vec<&String> = named.difference(&exported_names).collect();
    assert!(
        missing.is_empty(),
        "named in deploy/ but not exported: {missing:?}\nexported: {exported_names:?}"
    );
}
