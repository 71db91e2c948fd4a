//! `sweep`: `pairs` at increasing rates until the p99 send→deliver latency passes the budget or
//! delivery falls behind; the highest rate that held is the sustained rate.

use std::time::Duration;

use crate::{
    driver::Pairs,
    report::{Report, SweepStep},
    target::Target,
};

use super::pairs::{self, Params};

/// The shape of a sweep.
#[derive(Debug, Clone)]
pub struct SweepParams {
    /// The first rate.
    pub start: f64,
    /// Each next rate is this many times the last.
    pub factor: f64,
    /// Stop after this rate even if it held.
    pub max: f64,
    /// Seconds per step.
    pub step: Duration,
    /// Message size.
    pub size: usize,
    /// The p99 send→deliver budget.
    pub budget: Duration,
}

/// Runs the sweep and fills the report.
pub async fn run(
    pairs: &Pairs,
    p: &SweepParams,
    target: &Target,
    quiet: bool,
    report: &mut Report,
) {
    let mut rate = p.start;
    let mut best: Option<f64> = None;
    let mut step = 1;
    let (mut lost, mut duplicated, mut out_of_order, mut failed) = (0, 0, 0, 0);
    loop {
        let params = Params {
            rate,
            duration: p.step,
            size: p.size,
            drain: Duration::from_secs(10),
        };
        let o = pairs::run_step(pairs, step, &params, target, quiet).await;
        lost += o.lost;
        duplicated += o.duplicated;
        out_of_order += o.out_of_order;
        // A step that overloads the server may refuse sends; that ends the sweep, it is not an error.
        let kept_up = o.delivered_per_s >= 0.95 * rate && o.failed == 0 && o.lost == 0;
        let passed = kept_up && o.deliver.p99_ms <= p.budget.as_secs_f64() * 1000.0;
        if !quiet {
            eprintln!(
                "step {step}: {rate:.0} msg/s offered, {:.0}/s delivered, p99 {:.2} ms: {}",
                o.delivered_per_s,
                o.deliver.p99_ms,
                if passed { "held" } else { "did not hold" }
            );
        }
        report.steps.push(SweepStep {
            rate,
            delivered_per_s: o.delivered_per_s,
            deliver: o.deliver,
            passed,
        });
        if !passed {
            failed += u64::from(o.failed > 0 && best.is_none());
            break;
        }
        best = Some(rate);
        if rate >= p.max {
            break;
        }
        rate = (rate * p.factor).min(p.max);
        step += 1;
        // Let queues empty between steps.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    report.figure("highest sustained rate", best.unwrap_or(0.0), "msg/s");
    report.figure("p99 budget", p.budget.as_secs_f64() * 1000.0, "ms");
    report.violation("lost (acked, never delivered)", lost);
    report.violation("duplicated", duplicated);
    report.violation("out of order", out_of_order);
    report.violation("failed sends below the sustained rate", failed);
}
