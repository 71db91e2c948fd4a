//! Results: a table for people, JSON for machines, an SVG chart for the README.

use std::path::Path;

use plotters::prelude::*;
use serde::Serialize;

use crate::stats::Latency;

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// What it is.
    pub name: String,
    /// Its value.
    pub value: f64,
    /// Its unit.
    pub unit: String,
}

/// One step of a sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SweepStep {
    /// The offered rate, messages per second.
    pub rate: f64,
    /// The delivered rate.
    pub delivered_per_s: f64,
    /// send→deliver latency.
    pub deliver: Latency,
    /// Whether the step stayed within the budget and kept up.
    pub passed: bool,
}

/// The results of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The scenario.
    pub scenario: String,
    /// `tern`, `mosquitto` or `ejabberd`.
    pub system: String,
    /// The parameters, as given.
    pub params: Vec<(String, String)>,
    /// The figures, in display order.
    pub figures: Vec<Figure>,
    /// Named latency distributions.
    pub latencies: Vec<(String, Latency)>,
    /// Sweep steps, for `sweep`.
    pub steps: Vec<SweepStep>,
    /// Correctness violations (lost, duplicated, out-of-order, failed); all must be zero.
    pub violations: Vec<(String, u64)>,
}

impl Report {
    /// An empty report.
    pub fn new(scenario: &str, system: &str) -> Self {
        Self {
            scenario: scenario.into(),
            system: system.into(),
            params: Vec::new(),
            figures: Vec::new(),
            latencies: Vec::new(),
            steps: Vec::new(),
            violations: Vec::new(),
        }
    }

    /// Adds a parameter.
    pub fn param(&mut self, name: &str, value: impl ToString) {
        self.params.push((name.into(), value.to_string()));
    }

    /// Adds a figure.
    pub fn figure(&mut self, name: &str, value: f64, unit: &str) {
        self.figures.push(Figure {
            name: name.into(),
            value,
            unit: unit.into(),
        });
    }

    /// Adds a correctness counter.
    pub fn violation(&mut self, name: &str, count: u64) {
        self.violations.push((name.into(), count));
    }

    /// Whether every correctness counter is zero.
    pub fn correct(&self) -> bool {
        self.violations.iter().all(|(_, n)| *n == 0)
    }

    /// Every figure by name, latencies flattened, for comparisons.
    pub fn flat(&self) -> Vec<(String, f64, String)> {
        let mut out: Vec<(String, f64, String)> = self
            .figures
            .iter()
            .map(|f| (f.name.clone(), f.value, f.unit.clone()))
            .collect();
        for (name, l) in &self.latencies {
            for (p, v) in [
                ("p50", l.p50_ms),
                ("p90", l.p90_ms),
                ("p99", l.p99_ms),
                ("p99.9", l.p999_ms),
                ("max", l.max_ms),
            ] {
                out.push((format!("{name} {p}"), v, "ms".into()));
            }
        }
        out
    }

    /// Prints the table.
    pub fn print(&self) {
        println!("\n{} on {}", self.scenario, self.system);
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!("  {}", params.join(" "));
        let width = self
            .flat()
            .iter()
            .map(|(n, _, _)| n.len())
            .max()
            .unwrap_or(10)
            .max(24);
        for (name, value, unit) in self.flat() {
            println!("  {name:<width$}  {:>14} {unit}", fmt(value));
        }
        for s in &self.steps {
            println!(
                "  step {:>10.0} msg/s → delivered {:>10.0}/s  p50 {:>8.2} ms  p99 {:>8.2} ms  {}",
                s.rate,
                s.delivered_per_s,
                s.deliver.p50_ms,
                s.deliver.p99_ms,
                if s.passed { "ok" } else { "over budget" }
            );
        }
        for (name, n) in &self.violations {
            println!(
                "  {name:<width$}  {n:>14}{}",
                if *n == 0 { "" } else { "  <-- must be 0" }
            );
        }
    }

    /// Writes the JSON form.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, serde_json::to_vec_pretty(self)?)?;
        Ok(())
    }

    /// Draws the sweep (rate against p99) or the latency percentiles as an SVG chart.
    pub fn write_svg(&self, path: &Path) -> anyhow::Result<()> {
        let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_err)?;
        if !self.steps.is_empty() {
            let max_x = self.steps.iter().map(|s| s.rate).fold(1.0, f64::max) * 1.05;
            let max_y = self
                .steps
                .iter()
                .map(|s| s.deliver.p99_ms)
                .fold(1.0, f64::max)
                * 1.1;
            let mut chart = ChartBuilder::on(&root)
                .caption(
                    format!("{}: offered rate vs send→deliver latency", self.system),
                    ("sans-serif", 20),
                )
                .margin(15)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(0.0..max_x, 0.0..max_y)
                .map_err(chart_err)?;
            chart
                .configure_mesh()
                .x_desc("offered messages per second")
                .y_desc("latency (ms)")
                .draw()
                .map_err(chart_err)?;
            for (label, color, pick) in [
                (
                    "p99",
                    RED,
                    (|s: &SweepStep| s.deliver.p99_ms) as fn(&SweepStep) -> f64,
                ),
                ("p50", BLUE, |s: &SweepStep| s.deliver.p50_ms),
            ] {
                chart
                    .draw_series(LineSeries::new(
                        self.steps.iter().map(|s| (s.rate, pick(s))),
                        color.stroke_width(2),
                    ))
                    .map_err(chart_err)?
                    .label(label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
                chart
                    .draw_series(
                        self.steps
                            .iter()
                            .map(|s| Circle::new((s.rate, pick(s)), 3, color.filled())),
                    )
                    .map_err(chart_err)?;
            }
            chart
                .configure_series_labels()
                .border_style(BLACK)
                .draw()
                .map_err(chart_err)?;
        } else {
            let labels = ["p50", "p90", "p99", "p99.9", "max"];
            let values = |l: &Latency| [l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms];
            let max_y = self
                .latencies
                .iter()
                .flat_map(|(_, l)| values(l))
                .fold(1.0, f64::max)
                * 1.1;
            let mut chart = ChartBuilder::on(&root)
                .caption(
                    format!("{} on {}: latency percentiles", self.scenario, self.system),
                    ("sans-serif", 20),
                )
                .margin(15)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(0f64..4.2, 0.0..max_y)
                .map_err(chart_err)?;
            chart
                .configure_mesh()
                .x_labels(5)
                .x_label_formatter(&|x| {
                    labels
                        .get(x.round() as usize)
                        .copied()
                        .unwrap_or("")
                        .to_owned()
                })
                .y_desc("latency (ms)")
                .draw()
                .map_err(chart_err)?;
            for (i, (name, l)) in self.latencies.iter().enumerate() {
                let color = Palette99::pick(i).to_rgba();
                let points: Vec<(f64, f64)> = values(l)
                    .iter()
                    .enumerate()
                    .map(|(x, y)| (x as f64, *y))
                    .collect();
                chart
                    .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                    .map_err(chart_err)?
                    .label(name.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
                chart
                    .draw_series(
                        points
                            .into_iter()
                            .map(|p| Circle::new(p, 3, color.filled())),
                    )
                    .map_err(chart_err)?;
            }
            chart
                .configure_series_labels()
                .border_style(BLACK)
                .draw()
                .map_err(chart_err)?;
        }
        root.present().map_err(chart_err)?;
        Ok(())
    }
}

fn chart_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the chart: {e}")
}

/// A number for the table: integers plainly, small values with decimals.
pub fn fmt(v: f64) -> String {
    if v.abs() >= 1000.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// Prints Tern's figures beside a peer's (Mosquitto or ejabberd), with the ratio Tern/peer of
/// each.
pub fn print_comparison(tern: &Report, peer: &Report) {
    let name = match peer.system.as_str() {
        "mosquitto" => "Mosquitto",
        "ejabberd" => "ejabberd",
        other => other,
    };
    println!(
        "\n{}: Tern vs {name} (same workload, same run)",
        tern.scenario
    );
    match peer.system.as_str() {
        "mosquitto" => println!(
            "  Note: Mosquitto acknowledges QoS 1 before its data reaches disk; Tern acknowledges after a durable commit."
        ),
        "ejabberd" => println!(
            "  Note: ejabberd's stream-management ack follows its handling of the stanza (the sender's archive row in SQLite, routing); Tern acknowledges after a durable commit."
        ),
        _ => {}
    }
    let theirs = peer.flat();
    println!(
        "  {:<32} {:>14} {:>14} {:>10}",
        "figure", "tern", peer.system, "ratio"
    );
    for (name, value, unit) in tern.flat() {
        if let Some((_, other, _)) = theirs.iter().find(|(n, _, _)| *n == name) {
            let ratio = if *other == 0.0 {
                f64::NAN
            } else {
                value / other
            };
            println!(
                "  {:<32} {:>14} {:>14} {:>10.2}",
                format!("{name} ({unit})"),
                fmt(value),
                fmt(*other),
                ratio
            );
        }
    }
}

/// Prints, per scenario and system, the median of each figure and latency percentile over the
/// given JSON reports, and the sum of each correctness counter.
pub fn print_medians(reports: &[serde_json::Value]) {
    use std::collections::BTreeMap;
    let mut groups: BTreeMap<(String, String), Vec<&serde_json::Value>> = BTreeMap::new();
    for r in reports {
        let key = (
            r["scenario"].as_str().unwrap_or("?").to_owned(),
            r["system"].as_str().unwrap_or("?").to_owned(),
        );
        groups.entry(key).or_default().push(r);
    }
    for ((scenario, system), runs) in groups {
        println!("\n{scenario} on {system}: median of {} runs", runs.len());
        let mut values: Vec<(String, String, Vec<f64>)> = Vec::new();
        let mut push =
            |name: String, unit: &str, v: f64| match values.iter_mut().find(|(n, _, _)| *n == name)
            {
                Some((_, _, vs)) => vs.push(v),
                None => values.push((name, unit.to_owned(), vec![v])),
            };
        for run in &runs {
            for f in run["figures"].as_array().into_iter().flatten() {
                push(
                    f["name"].as_str().unwrap_or("?").to_owned(),
                    f["unit"].as_str().unwrap_or(""),
                    f["value"].as_f64().unwrap_or(f64::NAN),
                );
            }
            for l in run["latencies"].as_array().into_iter().flatten() {
                let name = l[0].as_str().unwrap_or("?");
                for (p, key) in [
                    ("p50", "p50_ms"),
                    ("p99", "p99_ms"),
                    ("p99.9", "p999_ms"),
                    ("max", "max_ms"),
                ] {
                    push(
                        format!("{name} {p}"),
                        "ms",
                        l[1][key].as_f64().unwrap_or(f64::NAN),
                    );
                }
            }
        }
        for (name, unit, mut vs) in values {
            vs.sort_by(|a, b| a.total_cmp(b));
            let median = if vs.len() % 2 == 1 {
                vs[vs.len() / 2]
            } else {
                (vs[vs.len() / 2 - 1] + vs[vs.len() / 2]) / 2.0
            };
            let all: Vec<String> = vs.iter().map(|v| fmt(*v)).collect();
            println!(
                "  {name:<36} {:>12} {unit:<6} (runs: {})",
                fmt(median),
                all.join(", ")
            );
        }
        let mut violations: Vec<(String, u64)> = Vec::new();
        for run in &runs {
            for v in run["violations"].as_array().into_iter().flatten() {
                let name = v[0].as_str().unwrap_or("?").to_owned();
                let n = v[1].as_u64().unwrap_or(0);
                match violations.iter_mut().find(|(k, _)| *k == name) {
                    Some((_, total)) => *total += n,
                    None => violations.push((name, n)),
                }
            }
        }
        for (name, total) in violations {
            println!("  {name:<36} {total:>12} (all runs)");
        }
    }
}
