//! The scenarios: `idle`, `pairs`, `sweep`, `sync-storm`, `fanout` and `search`.

pub mod fanout;
pub mod idle;
pub mod pairs;
pub mod search;
pub mod sweep;
pub mod sync_storm;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::{task::JoinHandle, time::Instant};

use crate::{driver::Sender, payload, stats};

/// A progress bar, or a hidden one when output is not for a person.
pub fn progress(len: u64, quiet: bool, what: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {prefix:>12} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// What the senders of an open-loop run fired and what was acknowledged.
#[derive(Debug)]
pub struct Fired {
    /// Bodies fired.
    pub sent: Arc<AtomicU64>,
    /// Bodies acknowledged.
    pub acked: Arc<AtomicU64>,
    /// Bodies refused (or whose connection failed).
    pub failed: Arc<AtomicU64>,
    /// Per sender, which of its bodies (by sequence number) were acknowledged.
    pub acked_sets: Vec<Arc<Mutex<Vec<bool>>>>,
    /// Per sender, send→ack latency in µs from each body's due time.
    pub ack_hists: Vec<Arc<Mutex<Histogram<u64>>>>,
}

/// The schedule of an open-loop run: sender k fires its j-th body at
/// `start + (j·n + k) / rate`, whatever happened to earlier ones.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// The run's step number, written into every body.
    pub step: u32,
    /// Bodies per second over all senders.
    pub rate: f64,
    /// How long senders fire.
    pub duration: Duration,
    /// Body size in bytes.
    pub size: usize,
    /// When the first body is due.
    pub start: Instant,
    /// The same instant on the wall clock, in ns (written into bodies for latency).
    pub start_ns: u64,
}

impl Schedule {
    /// A schedule starting shortly from now.
    pub fn from_now(step: u32, rate: f64, duration: Duration, size: usize) -> Self {
        let lead = Duration::from_millis(100);
        Self {
            step,
            rate,
            duration,
            size,
            start: Instant::now() + lead,
            start_ns: payload::now_ns() + lead.as_nanos() as u64,
        }
    }
}

/// Starts one pacing task per sender on `schedule`; returns the tasks and their accounts.
pub fn pace(senders: &[Arc<Sender>], schedule: Schedule) -> (Vec<JoinHandle<()>>, Fired) {
    let n = senders.len();
    let per_sender =
        (schedule.rate * schedule.duration.as_secs_f64() / n as f64).ceil() as usize + 1;
    let fired = Fired {
        sent: Arc::default(),
        acked: Arc::default(),
        failed: Arc::default(),
        acked_sets: (0..n)
            .map(|_| Arc::new(Mutex::new(vec![false; per_sender])))
            .collect(),
        ack_hists: (0..n)
            .map(|_| Arc::new(Mutex::new(stats::histogram())))
            .collect(),
    };
    let mut pacers = Vec::with_capacity(n);
    for (k, sender) in senders.iter().enumerate() {
        let sender = sender.clone();
        let (sent, acked, failed) = (
            fired.sent.clone(),
            fired.acked.clone(),
            fired.failed.clone(),
        );
        let (acked_set, hist) = (fired.acked_sets[k].clone(), fired.ack_hists[k].clone());
        pacers.push(tokio::spawn(async move {
            let s = schedule;
            let period = n as f64 / s.rate;
            let offset = k as f64 / s.rate;
            for j in 0usize.. {
                let due = offset + j as f64 * period;
                if due >= s.duration.as_secs_f64() {
                    break;
                }
                let due_d = Duration::from_secs_f64(due);
                tokio::time::sleep_until(s.start + due_d).await;
                let due_ns = s.start_ns + due_d.as_nanos() as u64;
                let fire = sender.fire(payload::encode(s.step, k as u32, j as u64, due_ns, s.size));
                sent.fetch_add(1, Ordering::Relaxed);
                let (acked, failed, acked_set, hist) = (
                    acked.clone(),
                    failed.clone(),
                    acked_set.clone(),
                    hist.clone(),
                );
                tokio::spawn(async move {
                    if fire.await {
                        let now = payload::now_ns();
                        let _ = hist
                            .lock()
                            .unwrap()
                            .record((now.saturating_sub(due_ns) / 1000).max(1));
                        if let Some(slot) = acked_set.lock().unwrap().get_mut(j) {
                            *slot = true;
                        }
                        acked.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        }));
    }
    (pacers, fired)
}
