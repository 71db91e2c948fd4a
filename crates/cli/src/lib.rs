//! The client commands of the `tern` binary, built on the SDK.
//!
//! One-shot commands (`register`, `send`, `history`) log in with a throwaway device, do one
//! thing, and log out again, so they never replace a running `chat` and leave no token behind.
#![forbid(unsafe_code)]

mod chat;
mod format;
mod oneshot;

use clap::{Args, Subcommand};

/// The default server address: the default TCP listener of `tern serve`, on this machine.
pub const DEFAULT_SERVER: &str = "127.0.0.1:7700";

/// Where to connect and as whom.
#[derive(Debug, Clone, Args)]
pub struct Login {
    /// Server address: HOST:PORT for TCP, or ws://HOST:PORT/ws for WebSocket.
    #[arg(long, env = "TERN_SERVER", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// User id.
    #[arg(long, env = "TERN_USER")]
    pub user: String,
    /// Password.
    #[arg(long, env = "TERN_PASSWORD", hide_env_values = true)]
    pub password: String,
}

/// The client commands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Create an account.
    Register {
        #[command(flatten)]
        login: Login,
    },
    /// Send a text message and print its ack (seq and message id).
    Send {
        #[command(flatten)]
        login: Login,
        /// The receiving user.
        #[arg(long)]
        to: String,
        /// The text (several words are joined with spaces).
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
    },
    /// Print a conversation, oldest first: one line per message with seq, sender and text.
    History {
        #[command(flatten)]
        login: Login,
        /// The other user.
        #[arg(long)]
        with: String,
        /// How many of the newest messages to print.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Chat interactively: `/to USER` picks the peer, each other line is sent to it, incoming
    /// messages print as they arrive, `/quit` leaves.
    Chat {
        #[command(flatten)]
        login: Login,
        /// This terminal's device id; its sync cursor is kept on the server.
        #[arg(long, default_value = "cli")]
        device: String,
    },
}

/// Runs a client command.
pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Register { login } => oneshot::register(&login).await,
        Command::Send { login, to, text } => oneshot::send(&login, &to, &text.join(" ")).await,
        Command::History { login, with, limit } => oneshot::history(&login, &with, limit).await,
        Command::Chat { login, device } => chat::run(&login, &device).await,
    }
}
