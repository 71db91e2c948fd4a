//! `friend ...`, `block` and `unblock`: the social graph from the command line.

use tern_client::pb;

use crate::{Login, format::friend_event, oneshot::call};

/// The `friend` commands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum FriendCommand {
    /// Ask a user to be friends (with an optional message).
    Request {
        #[command(flatten)]
        login: Login,
        /// Who to ask.
        #[arg(value_name = "USER")]
        who: String,
        /// A message for them (several words are joined with spaces).
        message: Vec<String>,
    },
    /// Accept a user's pending request.
    Accept {
        #[command(flatten)]
        login: Login,
        /// Whose request.
        #[arg(value_name = "USER")]
        who: String,
    },
    /// Decline a user's pending request.
    Decline {
        #[command(flatten)]
        login: Login,
        /// Whose request.
        #[arg(value_name = "USER")]
        who: String,
    },
    /// End a friendship.
    Delete {
        #[command(flatten)]
        login: Login,
        /// The friend.
        #[arg(value_name = "USER")]
        who: String,
    },
    /// Print friends (one per line, with the remark) and pending requests.
    List {
        #[command(flatten)]
        login: Login,
    },
}

/// Runs a `friend` command.
pub(crate) async fn friend(command: FriendCommand) -> anyhow::Result<()> {
    match command {
        FriendCommand::Request {
            login,
            who: user,
            message,
        } => {
            let req = pb::FriendRequestRequest {
                to_user: user.clone(),
                message: message.join(" "),
            };
            let done = call(&login, req, &format!("asking {user} to be friends")).await?;
            if done.friends {
                println!("you and {user} are friends");
            } else {
                println!("asked {user} to be friends");
            }
        }
        FriendCommand::Accept { login, who: user } => {
            respond(&login, &user, true).await?;
            println!("you and {user} are friends");
        }
        FriendCommand::Decline { login, who: user } => {
            respond(&login, &user, false).await?;
            println!("declined the request of {user}");
        }
        FriendCommand::Delete { login, who: user } => {
            let req = pb::FriendDeleteRequest {
                user_id: user.clone(),
            };
            call(&login, req, &format!("ending the friendship with {user}")).await?;
            println!("you and {user} are no longer friends");
        }
        FriendCommand::List { login } => {
            let list = call(
                &login,
                pb::FriendListRequest { since_version: 0 },
                "listing friends",
            )
            .await?;
            for f in &list.friends {
                if f.remark.is_empty() {
                    println!("friend {}", f.user_id);
                } else {
                    println!("friend {} ({})", f.user_id, f.remark);
                }
            }
            for r in &list.requests {
                let event = pb::FriendEvent {
                    kind: pb::FriendEventKind::Requested as i32,
                    user_id: r.to_user.clone(),
                    message: r.message.clone(),
                    ..Default::default()
                };
                println!("request: {} {}", r.from_user, friend_event(&event));
            }
        }
    }
    Ok(())
}

async fn respond(login: &Login, user: &str, accept: bool) -> anyhow::Result<()> {
    let req = pb::FriendRespondRequest {
        from_user: user.to_owned(),
        accept,
    };
    call(login, req, &format!("answering the request of {user}"))
        .await
        .map(drop)
}

/// `block USER` or `unblock USER`.
pub(crate) async fn block(login: &Login, user: &str, blocked: bool) -> anyhow::Result<()> {
    if blocked {
        let req = pb::BlockRequest {
            user_id: user.to_owned(),
        };
        call(login, req, &format!("blocking {user}")).await?;
        println!("blocked {user}");
    } else {
        let req = pb::UnblockRequest {
            user_id: user.to_owned(),
        };
        call(login, req, &format!("unblocking {user}")).await?;
        println!("unblocked {user}");
    }
    Ok(())
}
