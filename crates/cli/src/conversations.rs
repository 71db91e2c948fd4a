//! `conversations`, `read`, `recall` and `edit`: the conversation list and changes to it.

use tern_client::pb;

use crate::{
    HistoryTarget, Login,
    format::{message_line, text_content},
    oneshot::call,
};

/// Prints one line per conversation: who (the peer or the group), the unread count and the
/// last message, pinned first, then newest first.
pub(crate) async fn list(login: &Login) -> anyhow::Result<()> {
    let list = call(
        login,
        pb::ConversationListRequest { since_version: 0 },
        "listing conversations",
    )
    .await?;
    for c in &list.conversations {
        let who = if c.group_id != 0 {
            format!("group {}", c.group_id)
        } else {
            c.peer.clone()
        };
        let last = c
            .last_message
            .as_ref()
            .map_or_else(String::new, message_line);
        let mut flags = String::new();
        if c.pinned {
            flags.push_str(" pinned");
        }
        if c.muted {
            flags.push_str(" muted");
        }
        println!("{who}\t{} unread{flags}\t{last}", c.unread);
    }
    Ok(())
}

/// Marks a conversation read up to its newest message.
pub(crate) async fn read(login: &Login, with: &HistoryTarget) -> anyhow::Result<()> {
    let target = match (&with.with, with.group) {
        (Some(peer), _) => pb::read_request::Target::Peer(peer.clone()),
        (None, Some(g)) => pb::read_request::Target::GroupId(g),
        (None, None) => anyhow::bail!("--with or --group is required"),
    };
    let req = pb::ReadRequest {
        target: Some(target),
        seq: 0,
    };
    let done = call(login, req, "marking the conversation read").await?;
    println!(
        "read {} up to {} ({} unread)",
        done.conversation_id, done.read_seq, done.unread
    );
    Ok(())
}

/// Recalls a message.
pub(crate) async fn recall(login: &Login, id: u64) -> anyhow::Result<()> {
    let done = call(
        login,
        pb::RecallRequest { message_id: id },
        &format!("recalling message {id}"),
    )
    .await?;
    if done.event_seq == 0 {
        println!(
            "message {id} in {} was already recalled",
            done.conversation_id
        );
    } else {
        println!(
            "recalled message {id} in {} (event seq {})",
            done.conversation_id, done.event_seq
        );
    }
    Ok(())
}

/// Replaces a message's text.
pub(crate) async fn edit(login: &Login, id: u64, text: &str) -> anyhow::Result<()> {
    let req = pb::EditRequest {
        message_id: id,
        content: Some(text_content(text)),
    };
    let done = call(login, req, &format!("editing message {id}")).await?;
    println!(
        "edited message {id} in {} (event seq {})",
        done.conversation_id, done.event_seq
    );
    Ok(())
}
