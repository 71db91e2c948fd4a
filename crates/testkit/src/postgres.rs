//! A PostgreSQL server of one test's own, for tests that stop it: initdb in a temporary
//! directory, `pg_ctl start` on a free port, and `pg_ctl stop -m immediate` (a crash: no
//! checkpoint, recovery from the write-ahead log on the next start).

use std::{path::PathBuf, process::Command};

/// A private PostgreSQL server.
#[derive(Debug)]
pub struct TestPostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

/// Runs a PostgreSQL tool as the `postgres` user when this process is root (initdb and the
/// server refuse to run as root).
fn tool(bin: &std::path::Path, name: &str) -> Command {
    let path = bin.join(name);
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    }
}

fn is_root() -> bool {
    // `id -u` rather than libc: this crate forbids unsafe code.
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn run(mut c: Command, what: &str) {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestPostgres {
    /// A fresh server with a database `tern`.
    pub fn start() -> TestPostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is installed (scripts/services.sh installs it)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect("a PostgreSQL version with initdb");
        let dir = tempfile::tempdir().expect("temporary directory");
        if is_root() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.args(["-R", "postgres:postgres"]).arg(dir.path());
                    c
                },
                "chown",
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut init = tool(&bin, "initdb");
        init.arg("-D").arg(dir.path().join("data")).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        run(init, "initdb");
        let pg = TestPostgres { bin, dir, port };
        pg.start_server();
        let mut create = Command::new(pg.bin.join("psql"));
        create
            .args(["-X", "-q", "-h", "127.0.0.1", "-p", &port.to_string()])
            .args([
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                "CREATE DATABASE tern",
            ]);
        run(create, "create the database");
        pg
    }

    fn start_server(&self) {
        let data = self.dir.path().join("data");
        let mut start = tool(&self.bin, "pg_ctl");
        start
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(data.join("server.log"))
            .args(["-w", "-t", "60", "-o"])
            .arg(format!(
                "-p {} -c listen_addresses=127.0.0.1 -k {}",
                self.port,
                self.dir.path().display()
            ))
            .arg("start");
        run(start, "pg_ctl start");
    }

    /// The database's URL.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/tern", self.port)
    }

    /// Stops the server as a crash would (`-m immediate`: connections cut, no checkpoint).
    pub fn crash(&self) {
        let mut stop = tool(&self.bin, "pg_ctl");
        stop.arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"]);
        run(stop, "pg_ctl stop -m immediate");
    }

    /// Starts it again; it recovers from its write-ahead log.
    pub fn restart(&self) {
        self.start_server();
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let mut stop = tool(&self.bin, "pg_ctl");
        stop.arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"]);
        let _ = stop.output();
    }
}
