//! The `tern` binary: `tern serve` runs the server; the other subcommands are the client CLI.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tern_server::{Config, ServeArgs, Server, wait_for_signal};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tern: an instant-messaging server and its command line.
#[derive(Debug, Parser)]
#[command(name = "tern", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server on the embedded store.
    Serve(ServeArgs),
    #[command(flatten)]
    Client(tern_cli::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
        Command::Client(command) => runtime.block_on(tern_cli::run(command)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Waits for SIGINT or SIGTERM; each SIGHUP meanwhile reloads the TLS certificate.
async fn wait_reloading_on_hangup(server: &Server) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut hangups) = signal(SignalKind::hangup()) {
            let stop = wait_for_signal();
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = &mut stop => return,
                    _ = hangups.recv() => {
                        if let Err(e) = server.reload_tls() {
                            tracing::error!(error = %e, "TLS reload failed; the previous certificate stays in use");
                        }
                        if let Err(e) = server.reload_filter() {
                            tracing::error!(error = %e, "content filter reload failed; the previous word list stays in use");
                        }
                    }
                }
            }
        }
    }
    wait_for_signal().await;
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TERN_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = Config::load(&args)?;
    let server = Server::start(config.clone()).await?;
    // Tests and scripts read these two lines to find the ports when started on port 0.
    println!("tern: tcp listening on {}", server.tcp_addr());
    println!(
        "tern: http listening on {} (WebSocket at /ws, /healthz, /metrics)",
        server.http_addr()
    );
    match &config.store {
        Some(url) => println!("tern: data in PostgreSQL at {}", without_password(url)),
        None => println!("tern: data in {}", config.data_dir.display()),
    }
    if let Some(cert) = &config.tls_cert {
        println!(
            "tern: tls on both listeners (certificate {}; SIGHUP reloads it)",
            cert.display()
        );
    }
    wait_reloading_on_hangup(&server).await;
    server.shutdown().await;
    Ok(())
}

/// A database URL fit for a log line: the password, if any, replaced.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}
