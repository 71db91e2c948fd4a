//! `search`: one user's conversations fill with N messages from P peers, then that user
//! searches them with MESSAGE_SEARCH: a rare word, a common one, a two-character Chinese word, a
//! rare single character and a word nowhere; reports each query's latency and the server's CPU
//! per query.

use std::time::Duration;

use futures_util::{StreamExt, stream};
use tern_client::pb;
use tokio::time::Instant;

use crate::{
    driver,
    report::Report,
    stats::{self, Latency},
    target::Target,
};

/// The shape of the run.
#[derive(Debug, Clone)]
pub struct Params {
    /// Messages stored before searching.
    pub messages: usize,
    /// Peers sending them (to the one searching user).
    pub peers: usize,
    /// Times each query runs.
    pub rounds: usize,
}

/// The text of message `i`: every message has a common word, one in a hundred the Chinese word
/// 天气, one in ten thousand the rare word and the rare character.
fn text_of(i: usize) -> String {
    let mut t = format!("hello number {i} from the search benchmark");
    if i % 100 == 7 {
        t.push_str(" 明天的天气");
    }
    if i % 10_000 == 1234 {
        t.push_str(" needle 龘");
    }
    t
}

/// The queries, with the name each is reported under.
const QUERIES: [(&str, &str); 5] = [
    ("rare word", "needle"),
    ("common word", "hello"),
    ("two Chinese characters (1 %)", "天气"),
    ("one rare character", "龘"),
    ("absent word", "zyxwvut"),
];

/// Runs the scenario and fills the report.
pub async fn run(
    target: &Target,
    p: &Params,
    quiet: bool,
    report: &mut Report,
) -> anyhow::Result<()> {
    let tag = driver::run_tag();
    let hub = format!("q{tag}hub");
    let peers: Vec<String> = (0..p.peers.max(1)).map(|i| format!("q{tag}p{i}")).collect();
    driver::register_all(
        &target.addr,
        peers.iter().chain(std::iter::once(&hub)).cloned().collect(),
    )
    .await?;

    // Fill: each peer sends its share, many in flight on its connection.
    let bar = super::progress(p.messages as u64, quiet, "fill");
    let started = Instant::now();
    let mut fills = Vec::new();
    for (k, peer) in peers.iter().enumerate() {
        let (conn, _, _) = driver::login(&target.addr, peer, "fill", None).await?;
        let (hub, bar, n, count) = (hub.clone(), bar.clone(), p.messages, peers.len());
        fills.push(tokio::spawn(async move {
            let failed: usize = stream::iter((k..n).step_by(count))
                .map(|i| {
                    let (conn, hub) = (conn.clone(), hub.clone());
                    async move {
                        conn.request(pb::SendRequest {
                            target: Some(pb::send_request::Target::ToUser(hub)),
                            client_msg_id: tern_client::new_client_msg_id(),
                            content: Some(pb::Content {
                                body: Some(pb::content::Body::Text(pb::Text { text: text_of(i) })),
                            }),
                        })
                        .await
                    }
                })
                .buffer_unordered(256)
                .inspect(|_| bar.inc(1))
                .filter(|r| std::future::ready(r.is_err()))
                .count()
                .await;
            conn.close();
            failed
        }));
    }
    let mut failed = 0u64;
    for f in fills {
        failed += f.await? as u64;
    }
    let filled = started.elapsed();
    bar.finish_and_clear();
    // Let the store index what the fill left unindexed (the embedded store's indexer runs
    // behind a fast fill), so that the queries measure the index, as between searches.
    let settle = Duration::from_millis((p.messages / 20) as u64).max(Duration::from_secs(3));
    tokio::time::sleep(settle).await;

    let (conn, _, _) = driver::login(&target.addr, &hub, "search", None).await?;
    let server_before = target.sample();
    let mut queries = 0u64;
    let mut wrong = 0u64;
    for (name, query) in QUERIES {
        let mut h = stats::histogram();
        let mut hits = 0;
        for _ in 0..p.rounds.max(1) {
            let asked = Instant::now();
            let found = conn
                .request(pb::MessageSearchRequest {
                    query: query.into(),
                    limit: 20,
                    ..Default::default()
                })
                .await?;
            let _ = h.record(asked.elapsed().as_micros().max(1) as u64);
            queries += 1;
            hits = found.messages.len();
            // Every answer must contain the query.
            wrong += found
                .messages
                .iter()
                .filter(|m| match m.content.as_ref().and_then(|c| c.body.as_ref()) {
                    Some(pb::content::Body::Text(t)) => !t.text.to_lowercase().contains(query),
                    _ => true,
                })
                .count() as u64;
        }
        report.figure(&format!("hits on the first page: {name}"), hits as f64, "");
        report
            .latencies
            .push((format!("search: {name} ({query})"), Latency::of(&h)));
    }
    let server_after = target.sample();
    conn.close();

    report.figure("messages stored", p.messages as f64, "");
    report.figure(
        "fill rate",
        p.messages as f64 / filled.as_secs_f64().max(1e-9),
        "msg/s",
    );
    if let (Some(b), Some(a)) = (server_before, server_after) {
        report.figure(
            "server CPU per search",
            (a.cpu_us - b.cpu_us) / queries.max(1) as f64,
            "µs",
        );
    }
    report.violation("failed fill sends", failed);
    report.violation("answers without the query", wrong);
    Ok(())
}
