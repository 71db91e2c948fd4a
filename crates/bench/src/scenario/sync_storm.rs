//! `sync-storm`: U users each miss K messages, then all reconnect at once; reports the time
//! until every device has caught up, and the rate.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use futures_util::{StreamExt, TryStreamExt, stream};
use tern_client::{Client, ClientConfig, Endpoint, Event, pb};
use tokio::time::Instant;

use crate::{
    driver,
    report::Report,
    stats::{self, Latency},
    target::Target,
};

/// The shape of the storm.
#[derive(Debug, Clone)]
pub struct Params {
    /// Users that reconnect.
    pub users: usize,
    /// Messages each one missed.
    pub messages: usize,
    /// Longest the storm may take before devices count as not caught up.
    pub timeout: Duration,
}

/// Runs the scenario and fills the report.
pub async fn run(
    target: &Target,
    p: &Params,
    quiet: bool,
    report: &mut Report,
) -> anyhow::Result<()> {
    const SENDERS: usize = 4;
    let tag = driver::run_tag();
    let receivers: Vec<String> = (0..p.users).map(|i| format!("y{tag}r{i}")).collect();
    let senders: Vec<String> = (0..SENDERS).map(|i| format!("y{tag}s{i}")).collect();
    driver::register_all(
        &target.addr,
        receivers.iter().chain(&senders).cloned().collect(),
    )
    .await?;

    // Every device logs in once (so it exists, with a token) and goes away.
    let bar = super::progress(p.users as u64, quiet, "first login");
    let tokens: Vec<String> = stream::iter(receivers.clone())
        .map(|u| async move {
            let (conn, _, login) = driver::login(&target.addr, &u, "storm", None).await?;
            conn.close();
            anyhow::Ok(login.token)
        })
        .buffered(64)
        .inspect(|_| bar.inc(1))
        .try_collect()
        .await?;
    bar.finish_and_clear();

    // Fill every inbox while its owner is away.
    let total = (p.users * p.messages) as u64;
    let bar = super::progress(total, quiet, "fill");
    let mut fills = Vec::new();
    for (j, s) in senders.iter().enumerate() {
        let (conn, _, _) = driver::login(&target.addr, s, "fill", None).await?;
        let targets: Vec<String> = receivers.iter().skip(j).step_by(SENDERS).cloned().collect();
        let bar = bar.clone();
        let messages = p.messages;
        fills.push(tokio::spawn(async move {
            let work: Vec<(usize, String)> = (0..messages)
                .flat_map(|m| targets.iter().map(move |t| (m, t.clone())))
                .collect();
            let results: Vec<_> = stream::iter(work)
                .map(|(m, to)| {
                    let conn = conn.clone();
                    async move {
                        conn.request(pb::SendRequest {
                            target: Some(pb::send_request::Target::ToUser(to)),
                            client_msg_id: tern_client::new_client_msg_id(),
                            content: Some(pb::Content {
                                body: Some(pb::content::Body::Text(pb::Text {
                                    text: format!("missed {m}"),
                                })),
                            }),
                        })
                        .await
                    }
                })
                .buffer_unordered(256)
                .inspect(|_| bar.inc(1))
                .collect()
                .await;
            results.into_iter().filter(Result::is_err).count() as u64
        }));
    }
    let mut fill_failures = 0;
    for f in fills {
        fill_failures += f.await?;
    }
    bar.finish_and_clear();

    // The storm: every device reconnects at once with its token and syncs.
    let server_before = target.sample();
    let caught_up = Arc::new(AtomicU64::new(0));
    let bar = super::progress(p.users as u64, quiet, "storm");
    let started = Instant::now();
    let mut devices = Vec::with_capacity(p.users);
    for (user, token) in receivers.iter().zip(tokens) {
        let mut config = ClientConfig::new(Endpoint::parse(&target.addr), user, "", "storm");
        config.tls = crate::target::tls_trust()?;
        config.password = None;
        config.token = Some(token);
        config.reconnect.enabled = false;
        config.request_timeout = p.timeout;
        let (caught_up, bar, want, timeout) =
            (caught_up.clone(), bar.clone(), p.messages as u64, p.timeout);
        devices.push(tokio::spawn(async move {
            let (client, mut events) = Client::connect(config).await.context("reconnecting")?;
            let mut next = 1;
            let mut broken = 0u64;
            let deadline = started + timeout;
            while next <= want {
                match tokio::time::timeout_at(deadline, events.recv()).await {
                    Ok(Some(Event::Message { inbox_seq, .. })) => {
                        if inbox_seq != next {
                            broken += 1;
                        }
                        next = inbox_seq + 1;
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
            let took = started.elapsed();
            client.close();
            let done = next > want;
            if done {
                caught_up.fetch_add(1, Ordering::Relaxed);
                bar.inc(1);
            }
            anyhow::Ok((done, took, broken))
        }));
    }
    let mut catch_up = stats::histogram();
    let mut not_caught_up = 0;
    let mut out_of_order = 0;
    let mut last = Duration::ZERO;
    for d in devices {
        match d.await? {
            Ok((true, took, broken)) => {
                let _ = catch_up.record(took.as_micros().max(1) as u64);
                last = last.max(took);
                out_of_order += broken;
            }
            Ok((false, _, broken)) => {
                not_caught_up += 1;
                out_of_order += broken;
            }
            Err(_) => not_caught_up += 1,
        }
    }
    bar.finish_and_clear();
    let server_after = target.sample();

    report.figure("users", p.users as f64, "");
    report.figure("missed messages per user", p.messages as f64, "");
    report.figure("entries synced", total as f64, "");
    report.figure("time until all caught up", last.as_secs_f64(), "s");
    report.figure(
        "sync rate",
        total as f64 / last.as_secs_f64().max(1e-9),
        "entries/s",
    );
    if let (Some(b), Some(a)) = (server_before, server_after) {
        report.figure(
            "server CPU per entry",
            (a.cpu_us - b.cpu_us) / total.max(1) as f64,
            "µs",
        );
    }
    report
        .latencies
        .push(("device catch-up".into(), Latency::of(&catch_up)));
    report.violation("failed fill sends", fill_failures);
    report.violation("devices not caught up", not_caught_up);
    report.violation("entries out of order", out_of_order);
    Ok(())
}
