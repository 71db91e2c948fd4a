//! A real Redis for one test: `redis-server` as a child process on a free loopback port, with
//! nothing persisted, that a test can kill and start again on the same port.

use std::{net::SocketAddr, process::Stdio, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    process::{Child, Command},
};

/// A `redis-server` child process.
#[derive(Debug)]
pub struct TestRedis {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

/// Where `redis-server` is: on `PATH`, or where Debian's package puts it.
fn binary() -> String {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let candidate = std::path::Path::new(dir).join("redis-server");
        if candidate.exists() {
            return candidate.display().to_string();
        }
    }
    "/usr/bin/redis-server".into()
}

impl TestRedis {
    /// Starts Redis on a free port and waits until it answers.
    pub async fn start() -> TestRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut redis = TestRedis {
            child: None,
            port,
            dir: tempfile::tempdir().expect("temporary directory"),
        };
        redis.spawn().await;
        redis
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        for _ in 0..50 {
            let child = Command::new(binary())
                .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
                .arg("--dir")
                .arg(self.dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("redis-server runs (scripts/services.sh installs it)");
            self.child = Some(child);
            if self.answers().await {
                return;
            }
            // The port may still be held by the process just killed.
            self.kill().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// Whether it answers PING within a few seconds.
    async fn answers(&mut self) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        for _ in 0..100 {
            if let Some(child) = &mut self.child
                && let Ok(Some(_)) = child.try_wait()
            {
                return false;
            }
            if let Ok(mut s) = TcpStream::connect(addr).await {
                let mut buf = [0u8; 7];
                if s.write_all(b"PING\r\n").await.is_ok()
                    && tokio::time::timeout(Duration::from_secs(1), s.read_exact(&mut buf))
                        .await
                        .is_ok_and(|r| r.is_ok())
                    && &buf == b"+PONG\r\n"
                {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        false
    }

    /// Kills it (SIGKILL): everything it held is gone, as after a crash.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts it again, empty, on the same port.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.spawn().await;
    }
}
