//! The system under test: a server this tool spawned (Tern, Mosquitto or ejabberd) or one given
//! by address, and its resource figures read from `/proc`.

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
    /// ejabberd's SQLite database, where benchmark users are written before they log in.
    pub xmpp_db: Option<PathBuf>,
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
            xmpp_db: None,
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
            xmpp_db: None,
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
                    xmpp_db: None,
                    _dir: Some(dir),
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        bail!("mosquitto did not start listening on {addr}")
    }

    /// Starts ejabberd in the foreground on a free loopback port, with its own configuration,
    /// Mnesia spool, log and SQLite database (WAL mode) in a temporary directory. See
    /// [`ejabberd_config`] for what it runs with.
    pub async fn spawn_ejabberd(cpus: Option<&str>) -> anyhow::Result<Target> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let (erl_libs, schema) = ejabberd_install()?;
        let db = dir.path().join("ejabberd.db");
        prepare_ejabberd_db(&db, &schema)?;
        let config = dir.path().join("ejabberd.yml");
        std::fs::write(&config, ejabberd_config(port, &db))?;
        let spool = dir.path().join("spool");
        std::fs::create_dir(&spool)?;
        let erl = which("erl").context("erl is not installed (apt-get install ejabberd)")?;
        let mut cmd = pinned(&erl, cpus);
        // One scheduler per core it may run on, and no busy-waiting when idle: spinning
        // schedulers would count as server CPU without doing any work.
        if let Some(n) = cpus.map(cpu_count).filter(|n| *n > 0) {
            cmd.arg("+S").arg(format!("{n}:{n}"));
        }
        cmd.args(["+sbwt", "none", "+sbwtdcpu", "none", "+sbwtdio", "none"])
            // The settings ejabberdctl starts it with: kernel polling, room for many processes.
            .args(["+K", "true", "+P", "250000", "+Q", "65536"])
            // No distribution (no node name): no epmd daemon to leave behind, no cookie.
            .args(["-noinput", "-noshell", "-mnesia", "dir"])
            .arg(format!("\"{}\"", spool.display()))
            .args(["-s", "ejabberd"])
            .env("ERL_LIBS", &erl_libs)
            .env("EJABBERD_CONFIG_PATH", &config)
            .env("EJABBERD_LOG_PATH", dir.path().join("ejabberd.log"))
            .env("ERL_CRASH_DUMP", dir.path().join("erl_crash.dump"))
            .env("HOME", dir.path())
            .current_dir(dir.path());
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting ejabberd (erl -s ejabberd)")?;
        let addr = format!("127.0.0.1:{port}");
        for _ in 0..1200 {
            if let Some(status) = child.try_wait()? {
                let log =
                    std::fs::read_to_string(dir.path().join("ejabberd.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                bail!(
                    "ejabberd exited ({status}) before listening; its log ends:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            if tokio::net::TcpStream::connect(&addr).await.is_ok() {
                // `taskset` and `erl` exec into the VM, so the child is beam.smp; look among
                // its descendants in case a wrapper stays in between.
                let pid = child
                    .id()
                    .map(|pid| find_process(pid, "beam.smp").unwrap_or(pid));
                return Ok(Target {
                    addr,
                    peers: Vec::new(),
                    pid,
                    child: Some(child),
                    xmpp_db: Some(db),
                    _dir: Some(dir),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("ejabberd did not start listening on {addr} within a minute")
    }

    /// Creates ejabberd users (password [`crate::driver::bench_password`]) by writing them
    /// into its `users` table: `ejabberdctl register` takes about a second per user. ejabberd
    /// reads the table when a user logs in, and only the server's own connection writes to the
    /// file otherwise, so rows written before the logins are found.
    pub fn create_xmpp_users(&self, users: &[String]) -> anyhow::Result<()> {
        let db = self.xmpp_db.as_ref().context(
            "creating XMPP users needs the server's SQLite database: use --spawn or --xmpp-db",
        )?;
        let mut conn =
            rusqlite::Connection::open(db).with_context(|| format!("opening {}", db.display()))?;
        conn.busy_timeout(Duration::from_secs(30))?;
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare(
                "INSERT OR REPLACE INTO users (username, server_host, password) VALUES (?1, ?2, ?3)",
            )?;
            for u in users {
                insert
                    .execute((u, crate::xmpp::DOMAIN, crate::driver::bench_password(u)))
                    .with_context(|| format!("writing user {u}"))?;
            }
        }
        tx.commit().context("writing the benchmark users")?;
        Ok(())
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

/// The CPUs in a `taskset` list such as `0`, `0-3` or `0,2-3`.
fn cpu_count(list: &str) -> usize {
    list.split(',')
        .filter_map(|part| match part.trim().split_once('-') {
            Some((a, b)) => {
                Some(b.trim().parse::<usize>().ok()? + 1 - a.trim().parse::<usize>().ok()?)
            }
            None => part.trim().parse::<usize>().ok().map(|_| 1),
        })
        .sum()
}

/// The process named `comm` among `pid` and its descendants.
fn find_process(pid: u32, comm: &str) -> Option<u32> {
    let all: Vec<(u32, u32, String)> = procfs::process::all_processes()
        .ok()?
        .filter_map(|p| p.ok()?.stat().ok())
        .map(|s| (s.pid as u32, s.ppid as u32, s.comm))
        .collect();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        if all.iter().any(|(q, _, c)| *q == p && c == comm) {
            return Some(p);
        }
        frontier.extend(all.iter().filter(|(_, pp, _)| *pp == p).map(|(q, _, _)| *q));
    }
    None
}

/// Where Debian's ejabberd lives: the directory for `ERL_LIBS` (the one holding
/// `ejabberd-<version>`) and its SQLite schema for the new (multi-host) layout.
fn ejabberd_install() -> anyhow::Result<(PathBuf, PathBuf)> {
    for libs in [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib",
    ] {
        let Ok(entries) = std::fs::read_dir(libs) else {
            continue;
        };
        let mut apps: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("ejabberd-"))
                    && p.join("ebin/ejabberd.app").is_file()
            })
            .collect();
        apps.sort();
        if let Some(app) = apps.pop() {
            let schema = [
                app.join("priv/sql/lite.new.sql"),
                PathBuf::from("/usr/share/ejabberd/sql/lite.new.sql"),
            ]
            .into_iter()
            .find(|p| p.is_file())
            .context("ejabberd's lite.new.sql schema is missing")?;
            return Ok((PathBuf::from(libs), schema));
        }
    }
    bail!("ejabberd is not installed (apt-get install ejabberd erlang-p1-sqlite3)")
}

/// Creates ejabberd's SQLite database from its schema, in WAL mode: with the default rollback
/// journal every archived message waits for its own journal sync, and ejabberd handled only
/// about 200 messages a second.
fn prepare_ejabberd_db(db: &Path, schema: &Path) -> anyhow::Result<()> {
    let sql =
        std::fs::read_to_string(schema).with_context(|| format!("reading {}", schema.display()))?;
    let conn = rusqlite::Connection::open(db)?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        bail!("SQLite refused WAL mode ({mode})");
    }
    conn.execute_batch(&sql)
        .with_context(|| format!("loading {}", schema.display()))?;
    Ok(())
}

/// ejabberd's configuration for a benchmark: one host ([`crate::xmpp::DOMAIN`]), one client
/// listener on loopback without TLS and without the per-client traffic shaper, SQLite for
/// everything (plain passwords, the message archive, offline storage, rooms), stream
/// management, and a multi-user chat service whose rooms take any number of occupants.
pub fn ejabberd_config(port: u16, db: &Path) -> String {
    format!(
        r#"# Written by tern-bench for one benchmark run.
hosts:
  - {domain}
loglevel: warning
certfiles: []
default_db: sql
sql_type: sqlite
new_sql_schema: true
sql_database: "{db}"
auth_method: sql
auth_password_format: plain
# Users are written into the table while the server runs: a miss must not be remembered.
auth_cache_missed: false
listen:
  -
    port: {port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 262144
    # ejabberd's default queue of 5 pending connections drops the SYNs of a benchmark's many
    # simultaneous logins, each then retried a second or more later.
    backlog: 4096
    # Loopback only: SASL PLAIN without TLS, as the other systems' clients run without TLS.
    starttls: false
    starttls_required: false
    # No `shaper:`: Debian's default limits each client to 3,000 B/s.
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  muc_create:
    allow: local
shaper_rules:
  max_user_sessions: 10
  max_user_offline_messages: 1000000
modules:
  # Every one-to-one and room message is archived in SQL, as Tern stores every message.
  mod_mam:
    db_type: sql
    default: always
  mod_offline:
    db_type: sql
    access_max_user_messages: max_user_offline_messages
  mod_stream_mgmt: {{}}
  mod_muc:
    db_type: sql
    host: "{muc}"
    access_create: muc_create
    history_size: 0
    max_users: 1000000
    default_room_options:
      mam: true
      anonymous: false
      persistent: true
      max_users: 1000000
      # Joins are not broadcast to every occupant (that is M² presences for M members);
      # only the owner's presence is.
      presence_broadcast: [moderator]
"#,
        domain = crate::xmpp::DOMAIN,
        muc = crate::xmpp::MUC_DOMAIN,
        db = db.display(),
    )
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
