//! A `tern serve` process on free ports, for tests that kill the server the way a crash does or
//! run it the way an operator does (a config file, environment variables).

use std::{
    ffi::OsStr,
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
};

/// How to start `tern serve`: the binary (tests pass `env!("CARGO_BIN_EXE_tern")`, which only
/// the binary's own package knows), over a data directory, on free ports, with cheap password
/// hashing and quiet logs.
#[derive(Debug)]
pub struct Serve {
    command: Command,
}

impl Serve {
    /// `tern serve` of `bin` over `data_dir`.
    pub fn new(bin: &str, data_dir: &Path) -> Serve {
        let mut command = Command::new(bin);
        command
            .args([
                "serve",
                "--tcp-addr",
                "127.0.0.1:0",
                "--http-addr",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .env("TERN_ARGON2_MEMORY_KIB", "64")
            .env("TERN_ARGON2_ITERATIONS", "1")
            .env("TERN_LOG", "warn");
        Serve { command }
    }

    /// On the PostgreSQL database `url`, when there is one.
    pub fn store(mut self, url: Option<&str>) -> Serve {
        if let Some(url) = url {
            self.command.env("TERN_STORE", url);
        }
        self
    }

    /// With the configuration file `path`.
    pub fn config(mut self, path: &Path) -> Serve {
        self.command.arg("--config").arg(path);
        self
    }

    /// With more arguments.
    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Serve {
        self.command.args(args);
        self
    }

    /// With an environment variable (`TERN_*` settings).
    pub fn env(mut self, key: &str, value: &str) -> Serve {
        self.command.env(key, value);
        self
    }

    /// Starts it and waits until it says where it listens.
    pub fn spawn(mut self) -> ServeProcess {
        let mut child = self
            .command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("tern serve starts");
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let tcp = loop {
            let line = lines
                .next()
                .expect("the server prints its addresses")
                .expect("readable output");
            if let Some(rest) = line.strip_prefix("tern: tcp listening on ") {
                break rest.trim().to_owned();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        ServeProcess { child, tcp }
    }
}

/// A running `tern serve`, killed when dropped.
#[derive(Debug)]
pub struct ServeProcess {
    /// The process, to kill it at a chosen moment.
    pub child: Child,
    /// Its TCP listener's address.
    pub tcp: String,
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
