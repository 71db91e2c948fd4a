//! `tern-bench`: the load tool. Drives a Tern server (or Mosquitto or ejabberd, for comparison)
//! with one of the scenarios, shows progress, and prints a table (optionally JSON and an SVG
//! chart).
//!
//! `--spawn` starts a fresh server on a temporary directory so one command runs a benchmark;
//! otherwise `--server ADDR` (and `--server-pid PID` for the resource figures) names one.
#![forbid(unsafe_code)]

mod driver;
mod payload;
mod report;
mod scenario;
mod stats;
mod target;
mod xmpp;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{driver::System, report::Report, target::Target};

#[derive(Debug, Parser)]
#[command(
    name = "tern-bench",
    about = "Load tool for Tern (and Mosquitto and ejabberd, for comparison)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Args)]
struct TargetArgs {
    /// Start a fresh server on a temporary directory: Tern, Mosquitto with `--system mqtt`, or
    /// ejabberd with `--system xmpp`.
    #[arg(long)]
    spawn: bool,
    /// A running server, HOST:PORT (or tls://HOST:PORT), when not spawning; several nodes of
    /// a cluster separated by commas, over which clients are spread.
    #[arg(long, alias = "servers", conflicts_with = "spawn")]
    server: Option<String>,
    /// Spawn this many Tern nodes with the same settings: a cluster, given
    /// `--set store=postgres://… --set redis_url=redis://…`.
    #[arg(long, default_value_t = 1, requires = "spawn")]
    nodes: usize,
    /// Trust this PEM CA for tls:// servers instead of the system's roots.
    #[arg(long, value_name = "FILE", env = "TERN_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// The running server's process id, for its CPU and memory figures.
    #[arg(long)]
    server_pid: Option<u32>,
    /// A running ejabberd's SQLite database, where the tool writes its users (with `--server`
    /// and `--system xmpp`; the server must host `bench.localhost` with plain SQL passwords).
    #[arg(long, value_name = "FILE")]
    xmpp_db: Option<PathBuf>,
    /// Which system to drive.
    #[arg(long, value_enum, default_value = "tern")]
    system: System,
    /// The `tern` binary to spawn [default: the one next to this binary].
    #[arg(long)]
    tern_bin: Option<PathBuf>,
    /// Pin a spawned server to these CPUs (a `taskset` list such as `0`).
    #[arg(long)]
    server_cpus: Option<String>,
    /// A setting of a spawned Tern server, KEY=VALUE (repeatable), e.g. `--set store_sync=normal`.
    #[arg(long = "set", value_parser = parse_setting)]
    settings: Vec<(String, String)>,
}

#[derive(Debug, Clone, Args)]
struct OutputArgs {
    /// Write the results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw the results as an SVG chart.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// No progress bars (for CI).
    #[arg(long)]
    quiet: bool,
}

#[derive(Debug, Clone, Args)]
struct PairsArgs {
    /// Sender/receiver pairs.
    #[arg(long, default_value_t = 100)]
    pairs: usize,
    /// Total messages per second.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Message body size, bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
}

#[derive(Debug, Clone, Args)]
struct SweepArgs {
    /// Sender/receiver pairs.
    #[arg(long, default_value_t = 100)]
    pairs: usize,
    /// The first rate, messages per second.
    #[arg(long, default_value_t = 2000.0)]
    start_rate: f64,
    /// Each step's rate is the last one's times this.
    #[arg(long, default_value_t = 1.5)]
    factor: f64,
    /// The highest rate tried.
    #[arg(long, default_value_t = 500_000.0)]
    max_rate: f64,
    /// Seconds per step.
    #[arg(long, default_value_t = 5)]
    step_duration: u64,
    /// Message body size, bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// The p99 send→deliver budget, milliseconds.
    #[arg(long, default_value_t = 50)]
    budget_ms: u64,
}

#[derive(Debug, Clone, Args)]
struct FanoutArgs {
    /// Group members online (MQTT: subscribers of one topic; XMPP: occupants of one room).
    #[arg(long, default_value_t = 100)]
    members: usize,
    /// Senders (members of the group).
    #[arg(long, default_value_t = 1)]
    senders: usize,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Comparable {
    Pairs,
    Sweep,
    Fanout,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Hold N logged-in idle connections; report server RSS per connection and CPU per connection-second.
    Idle {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        output: OutputArgs,
        /// Connections to hold.
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// Seconds to hold them.
        #[arg(long, default_value_t = 10)]
        duration: u64,
    },
    /// N pairs at a fixed total rate, open loop; latency, throughput, exact loss/dup/order, CPU per message.
    Pairs {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        pairs: PairsArgs,
    },
    /// `pairs` at increasing rates until p99 send→deliver passes the budget; report the highest sustained rate.
    Sweep {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        sweep: SweepArgs,
    },
    /// S senders into one group of M online members at a fixed rate; deliveries per second, latency, exact accounting.
    Fanout {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        fanout: FanoutArgs,
        /// Messages per second over all senders.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Seconds of sending.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Message body size, bytes.
        #[arg(long, default_value_t = 64)]
        size: usize,
    },
    /// U users each with K missed messages reconnect at once; time until every device caught up.
    SyncStorm {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        output: OutputArgs,
        /// Users that reconnect.
        #[arg(long, default_value_t = 100)]
        users: usize,
        /// Messages each missed.
        #[arg(long, default_value_t = 10)]
        messages: usize,
        /// Seconds before devices count as not caught up.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// One user's conversations fill with N messages, then MESSAGE_SEARCH runs over them; the latency of each kind of query.
    Search {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        output: OutputArgs,
        /// Messages stored before searching.
        #[arg(long, default_value_t = 1_000_000)]
        messages: usize,
        /// Peers sending them.
        #[arg(long, default_value_t = 20)]
        peers: usize,
        /// Times each query runs.
        #[arg(long, default_value_t = 20)]
        rounds: usize,
    },
    /// Run `pairs`, `sweep` or `fanout` against a fresh Tern and each peer (a fresh Mosquitto,
    /// a fresh ejabberd), and print the ratios Tern/peer.
    Compare {
        /// Which workload.
        #[arg(long, value_enum, default_value = "pairs")]
        scenario: Comparable,
        #[command(flatten)]
        output: OutputArgs,
        /// Pairs, rate, duration and size (for a sweep: pairs and size; for fan-out: rate,
        /// duration and size).
        #[command(flatten)]
        pairs: PairsArgs,
        /// For fan-out: members and senders.
        #[command(flatten)]
        fanout: FanoutArgs,
        /// For a sweep: the first rate.
        #[arg(long, default_value_t = 2000.0)]
        start_rate: f64,
        /// For a sweep: each step's rate is the last one's times this.
        #[arg(long, default_value_t = 1.5)]
        factor: f64,
        /// For a sweep: the highest rate tried.
        #[arg(long, default_value_t = 500_000.0)]
        max_rate: f64,
        /// For a sweep: seconds per step.
        #[arg(long, default_value_t = 5)]
        step_duration: u64,
        /// For a sweep: the p99 send→deliver budget, milliseconds.
        #[arg(long, default_value_t = 50)]
        budget_ms: u64,
        /// The peers to run after Tern, each on a fresh server.
        #[arg(long, value_enum, value_delimiter = ',', default_values = ["mqtt", "xmpp"])]
        peers: Vec<System>,
        /// Pin every server to these CPUs.
        #[arg(long)]
        server_cpus: Option<String>,
        /// The `tern` binary to spawn.
        #[arg(long)]
        tern_bin: Option<PathBuf>,
        /// Settings of the spawned Tern, KEY=VALUE.
        #[arg(long = "set", value_parser = parse_setting)]
        settings: Vec<(String, String)>,
    },
    /// Print the median of every figure over several `--json` results of the same scenario.
    Median {
        /// JSON files written by earlier runs (a `compare` file holds one report per system).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// The worker process of `idle` (started by it).
    #[command(hide = true)]
    IdleWorker {
        #[arg(long)]
        server: String,
        #[arg(long)]
        tag: String,
        #[arg(long)]
        from: usize,
        #[arg(long)]
        to: usize,
        #[arg(long)]
        source_ip: std::net::IpAddr,
    },
}

fn parse_setting(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("error: correctness violations (see the table)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn target(args: &TargetArgs) -> anyhow::Result<Target> {
    if let Some(ca) = &args.tls_ca {
        target::set_tls_ca(ca)?;
    }
    match (&args.server, args.spawn, args.system) {
        (Some(addrs), _, _) => {
            let addrs: Vec<String> = addrs
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect();
            if addrs.is_empty() {
                bail!("--server names no address");
            }
            let mut t = Target::external_nodes(&addrs, args.server_pid);
            t.xmpp_db = args.xmpp_db.clone();
            Ok(t)
        }
        (None, true, System::Tern) => {
            let bin = args
                .tern_bin
                .clone()
                .unwrap_or_else(target::default_tern_bin);
            if args.nodes > 1
                && !(args.settings.iter().any(|(k, _)| k == "store")
                    && args.settings.iter().any(|(k, _)| k == "redis_url"))
            {
                bail!(
                    "--nodes above 1 needs --set store=postgres://… and --set redis_url=redis://…"
                );
            }
            Target::spawn_tern_nodes(
                &bin,
                args.server_cpus.as_deref(),
                &args.settings,
                args.nodes,
            )
            .await
        }
        (None, true, System::Mqtt) => Target::spawn_mosquitto(args.server_cpus.as_deref()).await,
        (None, true, System::Xmpp) => Target::spawn_ejabberd(args.server_cpus.as_deref()).await,
        (None, false, _) => bail!("give --server ADDR or --spawn"),
    }
}

fn finish(report: &Report, output: &OutputArgs) -> anyhow::Result<bool> {
    report.print();
    if let Some(path) = &output.json {
        report
            .write_json(path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &output.svg {
        report
            .write_svg(path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report.correct())
}

async fn run_pairs(
    system: System,
    t: &Target,
    p: &PairsArgs,
    quiet: bool,
) -> anyhow::Result<Report> {
    let mut report = Report::new("pairs", system.name());
    report.param("pairs", p.pairs);
    report.param("rate", p.rate);
    report.param("duration_s", p.duration);
    report.param("size", p.size);
    let pairs = driver::connect_pairs(system, t, p.pairs).await?;
    let params = scenario::pairs::Params {
        rate: p.rate,
        duration: Duration::from_secs(p.duration),
        size: p.size,
        drain: Duration::from_secs(15),
    };
    let outcome = scenario::pairs::run_step(&pairs, 1, &params, t, quiet).await;
    scenario::pairs::report(&outcome, &mut report);
    Ok(report)
}

async fn run_sweep(
    system: System,
    t: &Target,
    s: &SweepArgs,
    quiet: bool,
) -> anyhow::Result<Report> {
    let mut report = Report::new("sweep", system.name());
    report.param("pairs", s.pairs);
    report.param("start_rate", s.start_rate);
    report.param("factor", s.factor);
    report.param("step_s", s.step_duration);
    report.param("size", s.size);
    let pairs = driver::connect_pairs(system, t, s.pairs).await?;
    let params = scenario::sweep::SweepParams {
        start: s.start_rate,
        factor: s.factor.max(1.01),
        max: s.max_rate,
        step: Duration::from_secs(s.step_duration),
        size: s.size,
        budget: Duration::from_millis(s.budget_ms),
    };
    scenario::sweep::run(&pairs, &params, t, quiet, &mut report).await;
    Ok(report)
}

async fn run_fanout(
    system: System,
    t: &Target,
    f: &FanoutArgs,
    p: &PairsArgs,
    quiet: bool,
) -> anyhow::Result<Report> {
    let mut report = Report::new("fanout", system.name());
    report.param("members", f.members);
    report.param("senders", f.senders);
    report.param("rate", p.rate);
    report.param("duration_s", p.duration);
    report.param("size", p.size);
    let params = scenario::fanout::Params {
        members: f.members.max(1),
        senders: f.senders.max(1),
        rate: p.rate,
        duration: Duration::from_secs(p.duration),
        size: p.size,
        drain: Duration::from_secs(30),
    };
    scenario::fanout::run(system, t, &params, quiet, &mut report).await?;
    Ok(report)
}

async fn run(command: Command) -> anyhow::Result<bool> {
    match command {
        Command::Idle {
            target: args,
            output,
            connections,
            duration,
        } => {
            if args.system != System::Tern {
                bail!("idle drives Tern only");
            }
            let t = target(&args).await?;
            let mut report = Report::new("idle", "tern");
            report.param("connections", connections);
            report.param("duration_s", duration);
            let params = scenario::idle::Params {
                connections,
                duration: Duration::from_secs(duration),
            };
            scenario::idle::run(&t, &params, output.quiet, &mut report).await?;
            finish(&report, &output)
        }
        Command::Pairs {
            target: args,
            output,
            pairs,
        } => {
            let t = target(&args).await?;
            let report = run_pairs(args.system, &t, &pairs, output.quiet).await?;
            finish(&report, &output)
        }
        Command::Sweep {
            target: args,
            output,
            sweep,
        } => {
            let t = target(&args).await?;
            let report = run_sweep(args.system, &t, &sweep, output.quiet).await?;
            finish(&report, &output)
        }
        Command::Fanout {
            target: args,
            output,
            fanout,
            rate,
            duration,
            size,
        } => {
            let t = target(&args).await?;
            let p = PairsArgs {
                pairs: 0,
                rate,
                duration,
                size,
            };
            let report = run_fanout(args.system, &t, &fanout, &p, output.quiet).await?;
            finish(&report, &output)
        }
        Command::SyncStorm {
            target: args,
            output,
            users,
            messages,
            timeout,
        } => {
            if args.system != System::Tern {
                bail!("sync-storm drives Tern only");
            }
            let t = target(&args).await?;
            let mut report = Report::new("sync-storm", "tern");
            report.param("users", users);
            report.param("messages", messages);
            let params = scenario::sync_storm::Params {
                users,
                messages,
                timeout: Duration::from_secs(timeout),
            };
            scenario::sync_storm::run(&t, &params, output.quiet, &mut report).await?;
            finish(&report, &output)
        }
        Command::Search {
            target: args,
            output,
            messages,
            peers,
            rounds,
        } => {
            if args.system != System::Tern {
                bail!("search drives Tern only");
            }
            let t = target(&args).await?;
            let mut report = Report::new("search", "tern");
            report.param("messages", messages);
            report.param("peers", peers);
            report.param("rounds", rounds);
            let params = scenario::search::Params {
                messages,
                peers,
                rounds,
            };
            scenario::search::run(&t, &params, output.quiet, &mut report).await?;
            finish(&report, &output)
        }
        Command::Compare {
            scenario,
            output,
            pairs,
            fanout,
            start_rate,
            factor,
            max_rate,
            step_duration,
            budget_ms,
            peers,
            server_cpus,
            tern_bin,
            settings,
        } => {
            let sweep = SweepArgs {
                pairs: pairs.pairs,
                start_rate,
                factor,
                max_rate,
                step_duration,
                size: pairs.size,
                budget_ms,
            };
            let bin = tern_bin.unwrap_or_else(target::default_tern_bin);
            let cpus = server_cpus.as_deref();
            let quiet = output.quiet;
            let run_one = async |system: System, t: &Target| match scenario {
                Comparable::Pairs => run_pairs(system, t, &pairs, quiet).await,
                Comparable::Sweep => run_sweep(system, t, &sweep, quiet).await,
                Comparable::Fanout => run_fanout(system, t, &fanout, &pairs, quiet).await,
            };
            let tern = Target::spawn_tern(&bin, cpus, &settings).await?;
            let ours = run_one(System::Tern, &tern).await?;
            tern.stop().await;
            let mut theirs = Vec::new();
            for peer in peers.into_iter().filter(|p| *p != System::Tern) {
                let t = match peer {
                    System::Mqtt => Target::spawn_mosquitto(cpus).await?,
                    System::Xmpp => Target::spawn_ejabberd(cpus).await?,
                    System::Tern => unreachable!("filtered out above"),
                };
                let report = run_one(peer, &t).await;
                t.stop().await;
                theirs.push(report?);
            }
            ours.print();
            for r in &theirs {
                r.print();
            }
            for r in &theirs {
                report::print_comparison(&ours, r);
            }
            if let Some(path) = &output.json {
                let all: Vec<&Report> = std::iter::once(&ours).chain(&theirs).collect();
                std::fs::write(path, serde_json::to_vec_pretty(&all)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if let Some(path) = &output.svg {
                ours.write_svg(path)?;
                for r in &theirs {
                    let mut other = path.clone();
                    other.set_extension(format!("{}.svg", r.system));
                    r.write_svg(&other)?;
                }
            }
            Ok(ours.correct() && theirs.iter().all(Report::correct))
        }
        Command::Median { files } => {
            let mut reports = Vec::new();
            for f in &files {
                let text = std::fs::read_to_string(f)
                    .with_context(|| format!("reading {}", f.display()))?;
                let value: serde_json::Value = serde_json::from_str(&text)?;
                match value {
                    serde_json::Value::Array(items) => reports.extend(items),
                    other => reports.push(other),
                }
            }
            report::print_medians(&reports);
            Ok(true)
        }
        Command::IdleWorker {
            server,
            tag,
            from,
            to,
            source_ip,
        } => {
            scenario::idle::worker(&server, &tag, from, to, source_ip).await?;
            Ok(true)
        }
    }
}
