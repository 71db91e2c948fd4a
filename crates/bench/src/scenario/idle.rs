//! `idle`: N logged-in connections that only send heartbeats. Reports the server's resident
//! memory per connection and its CPU per connection-second.
//!
//! One process may hold at most 20,000 files here, so the connections are spread over worker
//! processes (this binary, `idle-worker`), each connecting from its own 127.0.0.x address so
//! that no single source address runs out of ports.
//!
//! Memory is measured per connection, not per user: each worker first logs every one of its
//! users in and out once, so that the server's bounded caches (SQLite pages holding those users
//! and tokens, allocator pools) are warm; the baseline is taken after that, and the difference
//! to the RSS with every connection open is divided by the number of connections.

use std::{process::Stdio, time::Duration};

use anyhow::{Context, bail};
use futures_util::{StreamExt, stream};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::Command,
};

use crate::{driver, report::Report, target::Target};

/// Connections per worker process: well under the per-process file limit.
pub const PER_WORKER: usize = 8000;

/// The shape of the run.
#[derive(Debug, Clone)]
pub struct Params {
    /// Connections to hold.
    pub connections: usize,
    /// How long to hold them after all are logged in.
    pub duration: Duration,
}

/// Runs the scenario and fills the report.
pub async fn run(
    target: &Target,
    p: &Params,
    quiet: bool,
    report: &mut Report,
) -> anyhow::Result<()> {
    let tag = driver::run_tag();
    let users: Vec<String> = (0..p.connections).map(|i| format!("i{tag}u{i}")).collect();
    let bar = super::progress(p.connections as u64, quiet, "register");
    driver::register_all(&target.addr, users).await?;
    bar.finish_and_clear();

    let workers = p.connections.div_ceil(PER_WORKER).max(1);
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for w in 0..workers {
        let from = w * p.connections / workers;
        let to = (w + 1) * p.connections / workers;
        let mut child = Command::new(&exe)
            .args(["idle-worker", "--server", &target.addr, "--tag", &tag])
            .args(["--from", &from.to_string(), "--to", &to.to_string()])
            .args([
                "--source-ip",
                &format!("127.0.{}.{}", 1 + w / 200, 2 + w % 200),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting an idle worker")?;
        let lines = BufReader::new(child.stdout.take().context("worker stdout")?).lines();
        children.push((child, lines));
    }
    // Warm-up pass: every user logs in and out once.
    let bar = super::progress(p.connections as u64, quiet, "warm up");
    for (_, lines) in &mut children {
        let line = lines
            .next_line()
            .await?
            .context("a worker exited during warm-up")?;
        let n: u64 = line
            .strip_prefix("WARM ")
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        bar.inc(n);
    }
    bar.finish_and_clear();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let baseline = target.sample();
    for (child, _) in &mut children {
        if let Some(stdin) = child.stdin.as_mut() {
            stdin.write_all(b"connect\n").await?;
        }
    }
    let bar = super::progress(p.connections as u64, quiet, "connect");
    let mut connected = 0;
    let mut login_failures = 0;
    for (_, lines) in &mut children {
        let line = lines
            .next_line()
            .await?
            .context("a worker exited before it was ready")?;
        let mut f = line.split_whitespace();
        if f.next() != Some("READY") {
            bail!("unexpected worker output: {line}");
        }
        connected += f.next().and_then(|n| n.parse::<usize>().ok()).unwrap_or(0);
        login_failures += f.next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
        bar.set_position(connected as u64);
    }
    bar.finish_and_clear();
    // Let allocations settle before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let loaded = target.sample();

    let bar = super::progress(p.duration.as_secs(), quiet, "hold");
    let started = tokio::time::Instant::now();
    while started.elapsed() < p.duration {
        tokio::time::sleep(Duration::from_millis(250)).await;
        bar.set_position(started.elapsed().as_secs());
    }
    bar.finish_and_clear();
    let held = target.sample();
    let mut dropped = 0;
    for (mut child, mut lines) in children {
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(b"stop\n").await;
        }
        if let Ok(Some(line)) = lines.next_line().await
            && let Some(n) = line.strip_prefix("DONE ")
        {
            dropped += n.trim().parse::<u64>().unwrap_or(0);
        }
        let _ = child.wait().await;
    }

    report.figure("connections", connected as f64, "");
    report.figure("worker processes", workers as f64, "");
    if let (Some(base), Some(loaded), Some(held)) = (baseline, loaded, held) {
        let per_conn =
            (loaded.rss_kib.saturating_sub(base.rss_kib)) as f64 / connected.max(1) as f64;
        report.figure("server RSS before", base.rss_kib as f64 / 1024.0, "MiB");
        report.figure(
            "server RSS with connections",
            loaded.rss_kib as f64 / 1024.0,
            "MiB",
        );
        report.figure("server RSS per connection", per_conn, "KiB");
        // The parts: code paged in for the first time and the WAL index are fixed costs that
        // land in the difference too; the anonymous part is what connections hold.
        let part = |f: fn(&crate::target::ProcSample) -> u64| {
            f(&loaded).saturating_sub(f(&base)) as f64 / connected.max(1) as f64
        };
        report.figure(
            "server RSS per connection, anonymous",
            part(|s| s.rss_anon_kib),
            "KiB",
        );
        report.figure(
            "server RSS per connection, file-backed",
            part(|s| s.rss_file_kib),
            "KiB",
        );
        report.figure(
            "server RSS per connection, shared",
            part(|s| s.rss_shmem_kib),
            "KiB",
        );
        let conn_seconds = connected.max(1) as f64 * p.duration.as_secs_f64();
        report.figure(
            "server CPU per connection-second",
            (held.cpu_us - loaded.cpu_us) / conn_seconds,
            "µs",
        );
    }
    report.violation("failed logins", login_failures);
    report.violation("connections dropped while idle", dropped);
    Ok(())
}

/// The worker half: logs users `from..to` in and out once and prints `WARM <n>`; on `connect`
/// logs them in again, prints `READY <connected> <failed>`, keeps them alive with pings until
/// its stdin closes or says stop, then prints `DONE <dropped>`.
pub async fn worker(
    server: &str,
    tag: &str,
    from: usize,
    to: usize,
    source_ip: std::net::IpAddr,
) -> anyhow::Result<()> {
    // Few at a time, each closed at once: the warm-up must not itself hold many connections,
    // or their freed memory would count in the baseline.
    let warmed: Vec<bool> = stream::iter(from..to)
        .map(|i| async move {
            let login =
                driver::login(server, &format!("i{tag}u{i}"), "idle", Some(source_ip)).await;
            if let Ok((conn, _, _)) = &login {
                conn.close();
            }
            login.is_ok()
        })
        .buffer_unordered(8)
        .collect()
        .await;
    println!("WARM {}", warmed.iter().filter(|ok| **ok).count());
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    if stdin.next_line().await?.as_deref() != Some("connect") {
        return Ok(());
    }
    let results: Vec<_> = stream::iter(from..to)
        .map(|i| async move {
            let user = format!("i{tag}u{i}");
            driver::login(server, &user, "idle", Some(source_ip)).await
        })
        .buffer_unordered(128)
        .collect()
        .await;
    let mut conns = Vec::new();
    let mut failed = 0;
    let mut interval = Duration::from_secs(30);
    for r in results {
        match r {
            Ok((conn, events, login)) => {
                interval = Duration::from_millis(u64::from(login.heartbeat_interval_ms.max(1000)));
                conns.push((conn, events));
            }
            Err(e) => {
                if failed == 0 {
                    eprintln!("idle worker: {e:#}");
                }
                failed += 1;
            }
        }
    }
    println!("READY {} {failed}", conns.len());
    let pinger = {
        let conns: Vec<_> = conns.iter().map(|(c, _)| c.clone()).collect();
        tokio::spawn(async move {
            // Spread the pings over the interval instead of sending them all at once.
            let gap = interval / (conns.len().max(1) as u32 + 1);
            loop {
                for c in &conns {
                    let _ = c.send_only(&tern_proto::Request::Ping(tern_client::pb::Ping {
                        client_time_ms: 0,
                    }));
                    tokio::time::sleep(gap).await;
                }
            }
        })
    };
    let _ = stdin.next_line().await;
    pinger.abort();
    let dropped = conns.iter().filter(|(c, _)| c.is_closed()).count();
    println!("DONE {dropped}");
    Ok(())
}
