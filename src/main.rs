//! The `tern` binary: `tern serve` runs the server; the other subcommands are the client CLI.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tern_server::{Config, ServeArgs, Server};

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
    /// Administer the server's store directly (run where the store is).
    #[command(subcommand)]
    Admin(AdminCommand),
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
        Command::Admin(AdminCommand::Key(command)) => runtime.block_on(admin_key(command)),
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

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Admin API keys: what an app's backend authenticates with on the HTTP API.
    #[command(subcommand)]
    Key(KeyCommand),
}

/// Which store: the embedded one in a data directory (stop the server first), or a
/// PostgreSQL database (its nodes may run).
#[derive(Debug, Clone, clap::Args)]
struct StoreArgs {
    /// The embedded store's directory [default: ./tern-data].
    #[arg(long, value_name = "DIR", conflicts_with = "store")]
    data_dir: Option<std::path::PathBuf>,
    /// A PostgreSQL store (postgres://USER:PASS@HOST:PORT/DB).
    #[arg(long, value_name = "URL", env = "TERN_STORE")]
    store: Option<String>,
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Make a key and print it (once: only its hash is kept).
    Create {
        /// What to call it (shown in lists).
        #[arg(long)]
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List the keys (ids, names, when made, whether revoked; never the keys).
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a key by its id: it authenticates nothing from then on.
    Revoke {
        /// The key's id (as `list` shows it).
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

async fn admin_key(command: KeyCommand) -> anyhow::Result<()> {
    let store = match &command {
        KeyCommand::Create { store, .. }
        | KeyCommand::List { store }
        | KeyCommand::Revoke { store, .. } => store.clone(),
    };
    let mut config = Config::default();
    if let Some(dir) = store.data_dir {
        config.data_dir = dir;
    }
    config.store = store.store;
    let (keys, opened) = tern_server::open_admin_keys(&config).await?;
    let result = match command {
        KeyCommand::Create { name, .. } => keys.create(&name).await.map(|(record, key)| {
            println!("{key}");
            eprintln!(
                "made key {} ({}); it is shown only now: keep it in a secret store",
                record.id, record.name
            );
        }),
        KeyCommand::List { .. } => keys.list().await.map(|all| {
            for k in all {
                let state = match k.revoked_ms {
                    Some(at) => format!("revoked at {at}"),
                    None => "live".to_owned(),
                };
                println!("{}\t{}\tmade at {}\t{state}", k.id, k.name, k.created_ms);
            }
        }),
        KeyCommand::Revoke { id, .. } => keys.revoke(&id).await.map(|()| {
            println!("revoked {id}");
        }),
    };
    opened.close().await;
    Ok(result?)
}

/// The hang-up signal, listened for from before the server says it is up: a SIGHUP that
/// arrives before anyone listens would end the process (its default action).
#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = Option<()>;

fn listen_for_hangups() -> Hangups {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        signal(SignalKind::hangup()).ok()
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Waits for SIGINT or SIGTERM, reloading the TLS certificate and the content filter on each
/// SIGHUP meanwhile.
async fn wait_reloading_on_hangup(
    server: &Server,
    hangups: Hangups,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    #[cfg(unix)]
    if let Some(mut hangups) = hangups {
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
    let _ = hangups;
    stop.await;
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
    // Listening for signals before saying the server is up: a script that starts it and
    // signals it as soon as it reads the addresses must not kill it.
    let hangups = listen_for_hangups();
    #[cfg(unix)]
    let mut terms = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let stop = async move {
        #[cfg(unix)]
        if let Some(terms) = terms.as_mut() {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terms.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    };
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
    wait_reloading_on_hangup(&server, hangups, stop).await;
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
