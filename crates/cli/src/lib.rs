//! The client commands of the `tern` binary, built on the SDK.
//!
//! One-shot commands (`register`, `send`, `history`, `group ...`, `friend ...`, `block`,
//! `conversations`, `read`, `recall`, `edit`) log in with a throwaway device, do one thing, and
//! log out again, so they never replace a running `chat` and leave no token behind.
#![forbid(unsafe_code)]

mod chat;
mod conversations;
mod files;
mod format;
mod oneshot;
mod people;

pub use files::HttpAddr;
pub use people::FriendCommand;

use clap::{Args, Subcommand};

/// The default server address: the default TCP listener of `tern serve`, on this machine.
pub const DEFAULT_SERVER: &str = "127.0.0.1:7700";

impl Login {
    /// The TLS trust to connect with: the given CA, else the system's roots (`None`).
    pub(crate) fn tls(&self) -> anyhow::Result<Option<tern_client::TlsTrust>> {
        use anyhow::Context;
        self.tls_ca
            .as_deref()
            .map(|ca| {
                tern_client::TlsTrust::from_pem_file(ca)
                    .with_context(|| format!("loading the CA in {}", ca.display()))
            })
            .transpose()
    }

    /// How to connect.
    pub(crate) fn options(
        &self,
        timeout: std::time::Duration,
    ) -> anyhow::Result<tern_client::ConnectOptions> {
        Ok(tern_client::ConnectOptions {
            tls: self.tls()?,
            ..tern_client::ConnectOptions::new(tern_client::Encoding::Protobuf, timeout)
        })
    }
}

impl Login {
    /// The addresses `--server` names, in order.
    pub fn endpoints(&self) -> Vec<tern_client::Endpoint> {
        self.server
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(tern_client::Endpoint::parse)
            .collect()
    }
}

/// Where to connect and as whom.
#[derive(Debug, Clone, Args)]
pub struct Login {
    /// Server address: HOST:PORT for TCP, tls://HOST:PORT for TCP with TLS, or
    /// ws://HOST:PORT/ws (wss:// with TLS) for WebSocket. Several nodes of a cluster, separated
    /// by commas, are tried in turn.
    #[arg(long, env = "TERN_SERVER", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// Trust this PEM CA certificate for tls:// and wss:// instead of the system's roots.
    #[arg(long, env = "TERN_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<std::path::PathBuf>,
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
    /// Send a text message (or, with --file, a picture or a file) to a user or a group and
    /// print its ack (seq and message id).
    Send {
        #[command(flatten)]
        login: Login,
        #[command(flatten)]
        target: Target,
        /// Upload this file and send it instead of text: a picture as an image message,
        /// anything else as a file message.
        #[arg(long, value_name = "FILE", conflicts_with = "text")]
        file: Option<std::path::PathBuf>,
        #[command(flatten)]
        http: HttpAddr,
        /// The client message id (1 to 64 bytes; a fresh one by default). Sending again with
        /// the same id stores nothing new: a script that retries after an error passes the id
        /// it chose, and the message is stored once whatever happened to the first attempt.
        #[arg(long, value_name = "ID")]
        client_msg_id: Option<String>,
        /// The text (several words are joined with spaces).
        #[arg(required_unless_present = "file", num_args = 1..)]
        text: Vec<String>,
    },
    /// Upload a file for messages to carry and print its file id, type and size.
    Upload {
        #[command(flatten)]
        login: Login,
        #[command(flatten)]
        http: HttpAddr,
        /// The file.
        file: std::path::PathBuf,
    },
    /// Download a file the logged-in user may read.
    Download {
        #[command(flatten)]
        login: Login,
        #[command(flatten)]
        http: HttpAddr,
        /// Where to write it (default: its name, in the current directory).
        #[arg(short = 'o', long = "output", value_name = "PATH")]
        output: Option<std::path::PathBuf>,
        /// The file id (`tf_…`).
        id: String,
    },
    /// Print a conversation, oldest first: one line per message with seq, sender and text.
    History {
        #[command(flatten)]
        login: Login,
        #[command(flatten)]
        with: HistoryTarget,
        /// How many of the newest messages to print.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Search the messages the logged-in user may read, newest first: one line per message.
    Search {
        #[command(flatten)]
        login: Login,
        #[command(flatten)]
        within: SearchTarget,
        /// How many of the newest matches to print.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// What to find: any part of the text (several words are joined with spaces).
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
    },
    /// Create groups and change their members.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Friend requests, answers and the friend list.
    #[command(subcommand)]
    Friend(FriendCommand),
    /// Refuse a user's one-to-one messages and friend requests.
    Block {
        #[command(flatten)]
        login: Login,
        /// Who.
        #[arg(value_name = "USER")]
        who: String,
    },
    /// Stop refusing a user.
    Unblock {
        #[command(flatten)]
        login: Login,
        /// Who.
        #[arg(value_name = "USER")]
        who: String,
    },
    /// Print one line per conversation: peer or group, unread count, last message.
    Conversations {
        #[command(flatten)]
        login: Login,
    },
    /// Mark a conversation read up to its newest message, on every device.
    Read {
        #[command(flatten)]
        login: Login,
        #[command(flatten)]
        with: HistoryTarget,
    },
    /// Recall a message (the sender within the recall window; a group admin too).
    Recall {
        #[command(flatten)]
        login: Login,
        /// The message id (as `send` printed it).
        #[arg(long)]
        id: u64,
    },
    /// Replace a message's text (the sender, within the edit window).
    Edit {
        #[command(flatten)]
        login: Login,
        /// The message id (as `send` printed it).
        #[arg(long)]
        id: u64,
        /// The new text (several words are joined with spaces).
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
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

/// Where `send` sends: exactly one of `--to` and `--group`.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// The receiving user.
    #[arg(long)]
    pub to: Option<String>,
    /// The receiving group's id.
    #[arg(long)]
    pub group: Option<u64>,
}

/// Which conversation `history` (or `read`) works on: exactly one of `--with` and `--group`.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct HistoryTarget {
    /// The other user of a one-to-one conversation.
    #[arg(long)]
    pub with: Option<String>,
    /// A group's id.
    #[arg(long)]
    pub group: Option<u64>,
}

/// Where `search` looks: one conversation (`--with` or `--group`), or every one (neither).
#[derive(Debug, Clone, Args)]
#[group(required = false, multiple = false)]
pub struct SearchTarget {
    /// Only the one-to-one conversation with this user.
    #[arg(long)]
    pub with: Option<String>,
    /// Only this group.
    #[arg(long)]
    pub group: Option<u64>,
}

/// The `group` commands.
#[derive(Debug, Clone, Subcommand)]
pub enum GroupCommand {
    /// Create a group owned by the logged-in user and print its id.
    Create {
        #[command(flatten)]
        login: Login,
        /// The group's name.
        #[arg(long)]
        name: String,
        /// Initial members besides the creator, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "")]
        members: Vec<String>,
    },
    /// Add members (owner or admin).
    Add {
        #[command(flatten)]
        login: Login,
        /// The group's id.
        #[arg(long)]
        group: u64,
        /// Users to add, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        members: Vec<String>,
    },
    /// Remove members (owner or admin).
    Remove {
        #[command(flatten)]
        login: Login,
        /// The group's id.
        #[arg(long)]
        group: u64,
        /// Users to remove, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        members: Vec<String>,
    },
}

/// Runs a client command.
pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Register { login } => oneshot::register(&login).await,
        Command::Send {
            login,
            target,
            client_msg_id,
            text,
            file: None,
            ..
        } => {
            oneshot::send(
                &login,
                &target,
                format::text_content(&text.join(" ")),
                client_msg_id,
            )
            .await
        }
        Command::Send {
            login,
            target,
            client_msg_id,
            file: Some(file),
            http,
            ..
        } => {
            let (conn, token) = oneshot::connect_with_token(&login).await?;
            let uploaded = files::upload_with(&http, &token, &file).await;
            oneshot::finish(conn).await;
            let content = files::file_content(&uploaded?);
            oneshot::send(&login, &target, content, client_msg_id).await
        }
        Command::Upload { login, http, file } => files::upload(&login, &http, &file).await,
        Command::Download {
            login,
            http,
            output,
            id,
        } => files::download(&login, &http, &id, output).await,
        Command::History { login, with, limit } => oneshot::history(&login, &with, limit).await,
        Command::Search {
            login,
            within,
            limit,
            text,
        } => oneshot::search(&login, &within, &text.join(" "), limit).await,
        Command::Group(GroupCommand::Create {
            login,
            name,
            members,
        }) => oneshot::group_create(&login, &name, &members).await,
        Command::Group(GroupCommand::Add {
            login,
            group,
            members,
        }) => oneshot::group_members(&login, group, &members, true).await,
        Command::Group(GroupCommand::Remove {
            login,
            group,
            members,
        }) => oneshot::group_members(&login, group, &members, false).await,
        Command::Friend(command) => people::friend(command).await,
        Command::Block { login, who } => people::block(&login, &who, true).await,
        Command::Unblock { login, who } => people::block(&login, &who, false).await,
        Command::Conversations { login } => conversations::list(&login).await,
        Command::Read { login, with } => conversations::read(&login, &with).await,
        Command::Recall { login, id } => conversations::recall(&login, id).await,
        Command::Edit { login, id, text } => conversations::edit(&login, id, &text.join(" ")).await,
        Command::Chat { login, device } => chat::run(&login, &device).await,
    }
}
