//! `pairs`: N sender/receiver pairs at a fixed total rate, open loop.
//!
//! Every message has a due time on a fixed schedule (pair k sends its j-th message at
//! start + (j·N + k)/R). Senders fire at the due time whatever happened to earlier messages,
//! and latency counts from the due time, so a server that stalls shows its queueing instead of
//! slowing the senders down.

use std::{sync::atomic::Ordering, time::Duration};

use tokio::time::Instant;

use crate::{
    driver::Pairs,
    report::Report,
    stats::{self, Latency},
    target::{self, Target},
};

/// The shape of one run.
#[derive(Debug, Clone)]
pub struct Params {
    /// Total messages per second over all pairs.
    pub rate: f64,
    /// How long senders send.
    pub duration: Duration,
    /// Message body size in bytes.
    pub size: usize,
    /// How long to wait after sending for the last acks and deliveries.
    pub drain: Duration,
}

/// What one run measured.
#[derive(Debug)]
pub struct Outcome {
    /// The offered rate.
    pub rate: f64,
    /// Messages fired.
    pub sent: u64,
    /// Messages acknowledged.
    pub acked: u64,
    /// Messages refused or unanswered.
    pub failed: u64,
    /// Messages received (first copies).
    pub delivered: u64,
    /// Acknowledged but never received.
    pub lost: u64,
    /// Received more than once.
    pub duplicated: u64,
    /// Received after a later message of the same pair.
    pub out_of_order: u64,
    /// Bodies that did not parse.
    pub garbled: u64,
    /// send→ack latency.
    pub ack: Latency,
    /// send→deliver latency.
    pub deliver: Latency,
    /// Messages received per second, from the first due time to the last arrival.
    pub delivered_per_s: f64,
    /// Server CPU per delivered message, µs (user + system).
    pub server_cpu_us_per_msg: Option<f64>,
    /// Server CPU use over the run, in cores.
    pub server_cores: Option<f64>,
    /// Server RSS at the end, MiB.
    pub server_rss_mib: Option<f64>,
    /// This tool's CPU per delivered message, µs.
    pub client_cpu_us_per_msg: f64,
}

/// Sends at `params.rate` for `params.duration` over the connected pairs and accounts for
/// every message.
pub async fn run_step(
    pairs: &Pairs,
    step: u32,
    params: &Params,
    target: &Target,
    quiet: bool,
) -> Outcome {
    let n = pairs.senders.len();
    pairs.recorder.reset(step, n);
    let server_before = target.sample();
    let self_before = target::sample_self();

    let schedule = super::Schedule::from_now(step, params.rate, params.duration, params.size);
    let start_ns = schedule.start_ns;
    let expected = (params.rate * params.duration.as_secs_f64()).round() as u64;
    let bar = super::progress(expected, quiet, &format!("{:.0}/s", params.rate));
    let (pacers, fired) = super::pace(&pairs.senders, schedule);
    let super::Fired {
        sent,
        acked,
        failed,
        acked_sets,
        ack_hists,
    } = fired;
    let recorder = pairs.recorder.clone();
    let ticker = {
        let (bar, sent, acked) = (bar.clone(), sent.clone(), acked.clone());
        tokio::spawn(async move {
            loop {
                bar.set_position(recorder.delivered.load(Ordering::Relaxed));
                bar.set_message(format!(
                    "sent {} acked {}",
                    sent.load(Ordering::Relaxed),
                    acked.load(Ordering::Relaxed)
                ));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    for p in pacers {
        let _ = p.await;
    }
    // Drain: every fired message answered, every acknowledged message delivered.
    let drain_until = Instant::now() + params.drain;
    loop {
        let (s, a, f) = (
            sent.load(Ordering::Relaxed),
            acked.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed),
        );
        let d = pairs.recorder.delivered.load(Ordering::Relaxed);
        if (a + f == s && d >= a) || Instant::now() >= drain_until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ticker.abort();
    bar.finish_and_clear();
    let server_after = target.sample();
    let self_after = target::sample_self();

    let mut ack_all = stats::histogram();
    for h in &ack_hists {
        let _ = ack_all.add(&*h.lock().unwrap());
    }
    let mut deliver_all = stats::histogram();
    let (mut delivered, mut lost, mut duplicated, mut out_of_order, mut last_ns) =
        (0, 0, 0, 0, start_ns);
    for (k, set) in acked_sets.iter().enumerate() {
        let record = pairs.recorder.pair(k);
        let r = record.lock().unwrap();
        let _ = deliver_all.add(&r.deliver);
        delivered += r.tracker.delivered;
        duplicated += r.tracker.duplicated;
        out_of_order += r.tracker.out_of_order;
        last_ns = last_ns.max(r.last_ns);
        lost += set
            .lock()
            .unwrap()
            .iter()
            .enumerate()
            .filter(|(j, a)| **a && !r.tracker.has(*j as u64))
            .count() as u64;
    }
    let window = (last_ns.saturating_sub(start_ns) as f64 / 1e9).max(params.duration.as_secs_f64());
    let per_msg = |cpu: f64| {
        if delivered == 0 {
            f64::NAN
        } else {
            cpu / delivered as f64
        }
    };
    let server_cpu = match (server_before, server_after) {
        (Some(b), Some(a)) => Some(a.cpu_us - b.cpu_us),
        _ => None,
    };
    let (sent, acked, refused) = (
        sent.load(Ordering::Relaxed),
        acked.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    // A send still unanswered after the drain counts as failed too.
    let unanswered = sent.saturating_sub(acked + refused);
    Outcome {
        rate: params.rate,
        sent,
        acked,
        failed: refused + unanswered,
        delivered,
        lost,
        duplicated,
        out_of_order,
        garbled: pairs.recorder.garbled.load(Ordering::Relaxed),
        ack: Latency::of(&ack_all),
        deliver: Latency::of(&deliver_all),
        delivered_per_s: delivered as f64 / window,
        server_cpu_us_per_msg: server_cpu.map(per_msg),
        server_cores: server_cpu.map(|c| c / 1e6 / window),
        server_rss_mib: server_after.map(|s| s.rss_kib as f64 / 1024.0),
        client_cpu_us_per_msg: per_msg(self_after.cpu_us - self_before.cpu_us),
    }
}

/// Adds an outcome's figures to a report.
pub fn report(outcome: &Outcome, report: &mut Report) {
    report.figure("offered rate", outcome.rate, "msg/s");
    report.figure("delivered", outcome.delivered_per_s, "msg/s");
    report.figure("messages sent", outcome.sent as f64, "");
    report.figure("messages acked", outcome.acked as f64, "");
    report.figure("messages delivered", outcome.delivered as f64, "");
    if let Some(v) = outcome.server_cpu_us_per_msg {
        report.figure("server CPU per message", v, "µs");
    }
    if let Some(v) = outcome.server_cores {
        report.figure("server CPU", v, "cores");
    }
    if let Some(v) = outcome.server_rss_mib {
        report.figure("server RSS", v, "MiB");
    }
    report.figure(
        "load tool CPU per message",
        outcome.client_cpu_us_per_msg,
        "µs",
    );
    report.latencies.push(("send→ack".into(), outcome.ack));
    report
        .latencies
        .push(("send→deliver".into(), outcome.deliver));
    report.violation("lost (acked, never delivered)", outcome.lost);
    report.violation("duplicated", outcome.duplicated);
    report.violation("out of order", outcome.out_of_order);
    report.violation("failed sends", outcome.failed);
    report.violation("garbled bodies", outcome.garbled);
}
