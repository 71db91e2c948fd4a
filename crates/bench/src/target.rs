//! The system under test: a server this tool spawned (Tern or Mosquitto) or one given by
//! address, and its resource figures read from `/proc`.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context, bail};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// A server to load: one node, or the first of a cluster's nodes with the others as peers.
#[derive(Debug)]
pub struct Target {
    /// Where clients connect: `HOST:PORT`.
    pub addr: String,
    /// The cluster's other nodes, when there are several.
    pub peers: Vec<Target>,
    /// The server's process, when known, for CPU and memory figures.
    pub pid: Option<u32>,
    /// The spawned process, killed when the target is dropped.
    child: Option<Child>,
    /// The spawned server's data directory, removed when the target is dropped.
    _dir: Option<tempfile::TempDir>,
}

/// CPU time and resident memory of a process at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// User plus system CPU time, in microseconds.
    pub cpu_us: f64,
    /// Resident set size, in KiB.
    pub rss_kib: u64,
    /// The anonymous part of it (heap, stacks): what grows with the work the process holds.
    pub rss_anon_kib: u64,
    /// The file-backed part (the binary's code as it is paged in, mapped files).
    pub rss_file_kib: u64,
    /// The shared-memory part (SQLite's WAL index).
    pub rss_shmem_kib: u64,
}

/// Reads a process's CPU time and RSS.
pub fn sample(pid: u32) -> anyhow::Result<ProcSample> {
    let process = procfs::process::Process::new(pid as i32).context("reading /proc")?;
    let stat = process.stat().context("reading /proc/PID/stat")?;
    let status = process.status().context("reading /proc/PID/status")?;
    let ticks = procfs::ticks_per_second() as f64;
    Ok(ProcSample {
        cpu_us: (stat.utime + stat.stime) as f64 * 1e6 / ticks,
        rss_kib: status.vmrss.unwrap_or(0),
        rss_anon_kib: status.rssanon.unwrap_or(0),
        rss_file_kib: status.rssfile.unwrap_or(0),
        rss_shmem_kib: status.rssshmem.unwrap_or(0),
    })
}

/// This process's own figures.
pub fn sample_self() -> ProcSample {
    sample(std::process::id()).unwrap_or_default()
}

impl Target {
    /// A server given by address (and optionally its pid).
    pub fn external(addr: String, pid: Option<u32>) -> Self {
        Self {
            addr,
            peers: Vec::new(),
            pid,
            child: None,
            _dir: None,
        }
    }

    /// Several nodes of one cluster given by address (`--server A,B,C`).
    pub fn external_nodes(addrs: &[String], pid: Option<u32>) -> Self {
        let mut first = Self::external(addrs[0].clone(), pid);
        first.peers = addrs[1..]
            .iter()
            .map(|a| Self::external(a.clone(), None))
            .collect();
        first
    }

    /// Every node's address, the first first.
    pub fn addrs(&self) -> Vec<String> {
        std::iter::once(self.addr.clone())
            .chain(self.peers.iter().map(|p| p.addr.clone()))
            .collect()
    }

    /// Samples the server processes (every node of a cluster, summed), if their pids are known.
    pub fn sample(&self) -> Option<ProcSample> {
        let mut total = self.pid.and_then(|pid| sample(pid).ok())?;
        for p in &self.peers {
            let s = p.sample()?;
            total.cpu_us += s.cpu_us;
            total.rss_kib += s.rss_kib;
            total.rss_anon_kib += s.rss_anon_kib;
            total.rss_file_kib += s.rss_file_kib;
            total.rss_shmem_kib += s.rss_shmem_kib;
        }
        Some(total)
    }

    /// Starts `nodes` Tern nodes with the same settings (a cluster needs `store` and
    /// `redis_url` among them), each on its own directory and ports.
    pub async fn spawn_tern_nodes(
        bin: &Path,
        cpus: Option<&str>,
        settings: &[(String, String)],
        nodes: usize,
    ) -> anyhow::Result<Target> {
        let mut first = Self::spawn_tern(bin, cpus, settings).await?;
        for _ in 1..nodes.max(1) {
            first
                .peers
                .push(Self::spawn_tern(bin, cpus, settings).await?);
        }
        Ok(first)
    }

    /// Starts `tern serve` on a fresh temporary directory and free loopback ports.
    ///
    /// `settings` are server settings passed as `TERN_<KEY>` variables; password hashing is made
    /// cheap unless they say otherwise, so that thousands of benchmark users register quickly.
    pub async fn spawn_tern(
        bin: &Path,
        cpus: Option<&str>,
        settings: &[(String, String)],
    ) -> anyhow::Result<Target> {
        let dir = tempfile::tempdir()?;
        let mut cmd = pinned(bin, cpus);
        cmd.args([
            "serve",
            "--tcp-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("TERN_ARGON2_MEMORY_KIB", "64")
        .env("TERN_ARGON2_ITERATIONS", "1")
        .env("TERN_LOG", "warn")
        // Every benchmark client comes from loopback, thousands at once: limits meant for
        // strangers on the internet would refuse the load itself.
        .env("TERN_REGISTRATIONS_PER_ADDRESS", "0")
        .env("TERN_MAX_CONNECTIONS_PER_ADDRESS", "0")
        .env("TERN_MAX_CONNECTIONS_PER_USER", "0")
        .env("TERN_MAX_ANONYMOUS_CONNECTIONS", "1000000");
        for (k, v) in settings {
            cmd.env(format!("TERN_{}", k.to_ascii_uppercase()), v);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut lines = BufReader::new(child.stdout.take().context("server stdout")?).lines();
        let addr = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(addr) = line.strip_prefix("tern: tcp listening on ") {
                    return Ok(addr.trim().to_owned());
                }
            }
            bail!("the server exited before listening")
        })
        .await
        .context("waiting for the server to listen")??;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let pid = child.id();
        Ok(Target {
            addr,
            peers: Vec::new(),
            pid,
            child: Some(child),
            _dir: Some(dir),
        })
    }

    /// Starts Mosquitto with persistence on a free loopback port.
    pub async fn spawn_mosquitto(cpus: Option<&str>) -> anyhow::Result<Target> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let config = dir.path().join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\n\
                 max_queued_messages 0\nmax_inflight_messages 0\nlog_dest none\n",
                dir.path().display()
            ),
        )?;
        let bin =
            which("mosquitto").context("mosquitto is not installed (apt-get install mosquitto)")?;
        let child = pinned(&bin, cpus)
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting mosquitto")?;
        let addr = format!("127.0.0.1:{port}");
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(&addr).await.is_ok() {
                let pid = child.id();
                return Ok(Target {
                    addr,
                    peers: Vec::new(),
                    pid,
                    child: Some(child),
                    _dir: Some(dir),
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        bail!("mosquitto did not start listening on {addr}")
    }

    /// Stops a spawned server.
    pub async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }
}

/// A command, pinned to `cpus` with `taskset` when asked and available.
fn pinned(bin: &Path, cpus: Option<&str>) -> Command {
    match (cpus, which("taskset")) {
        (Some(cpus), Some(taskset)) => {
            let mut c = Command::new(taskset);
            c.arg("-c").arg(cpus).arg(bin);
            c
        }
        _ => Command::new(bin),
    }
}

fn which(name: &str) -> Option<PathBuf> {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
    {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return Some(p);
        }
    }
    None
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The `tern` binary next to this one (both are built into the same target directory).
pub fn default_tern_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("tern")))
        .unwrap_or_else(|| PathBuf::from("tern"))
}

/// The TLS trust for `tls://` servers: the CA given with `--tls-ca`, else the system's roots.
static TLS_CA: std::sync::OnceLock<tern_client::TlsTrust> = std::sync::OnceLock::new();

/// Trusts the CA in `path` for every connection of this run.
pub fn set_tls_ca(path: &Path) -> anyhow::Result<()> {
    let trust = tern_client::TlsTrust::from_pem_file(path)?;
    let _ = TLS_CA.set(trust);
    Ok(())
}

/// The trust connections use (`None`: the system's roots).
pub fn tls_trust() -> anyhow::Result<Option<tern_client::TlsTrust>> {
    Ok(TLS_CA.get().cloned())
}
