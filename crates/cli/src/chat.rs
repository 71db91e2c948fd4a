//! `chat`: an interactive session on the SDK's reconnecting client.

use anyhow::Context;
use tern_client::{Client, ClientConfig, Event, new_client_msg_id, pb};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::{
    Login,
    format::{message_line, text_content},
};

pub(crate) async fn run(login: &Login, device: &str) -> anyhow::Result<()> {
    let mut endpoints = login.endpoints().into_iter();
    let first = endpoints.next().context("--server names no address")?;
    let mut config = ClientConfig::new(first, &login.user, &login.password, device);
    config.fallbacks = endpoints.collect();
    config.platform = pb::Platform::Cli;
    config.tls = login.tls()?;
    let (client, mut events) = Client::connect(config)
        .await
        .with_context(|| format!("logging in as {}", login.user))?;
    println!(
        "logged in as {}; /to USER or /group ID picks the conversation, /quit leaves",
        login.user
    );
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut peer: Option<pb::send_request::Target> = None;
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line.context("reading stdin")? else { break };
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                if line == "/quit" {
                    break;
                }
                if let Some(to) = line.strip_prefix("/to ") {
                    peer = Some(pb::send_request::Target::ToUser(to.trim().to_owned()));
                    println!("now talking to {}", to.trim());
                    continue;
                }
                if let Some(g) = line.strip_prefix("/group ") {
                    match g.trim().parse::<u64>() {
                        Ok(g) => {
                            peer = Some(pb::send_request::Target::GroupId(g));
                            println!("now talking in group {g}");
                        }
                        Err(_) => eprintln!("a group id is a number: /group ID"),
                    }
                    continue;
                }
                match &peer {
                    None => eprintln!("pick a conversation first: /to USER or /group ID"),
                    Some(to) => match client.send_to(to.clone(), text_content(line), &new_client_msg_id()).await {
                        Ok(ack) => println!("sent seq={} message_id={}", ack.seq, ack.message_id),
                        Err(e) => eprintln!("error: {e}"),
                    },
                }
            }
            event = events.recv() => match event {
                Some(Event::Message { message, .. }) => println!("{}", message_line(&message)),
                Some(Event::GroupMessage { message }) => {
                    println!("[{}] {}", message.conversation_id, message_line(&message))
                }
                Some(Event::Typing { from, .. }) => eprintln!("{from} is typing…"),
                Some(Event::Recalled { conversation_id, seq, by, .. }) => {
                    println!("[{conversation_id}] {by} recalled message {seq}")
                }
                Some(Event::Edited { conversation_id, seq, content, .. }) => println!(
                    "[{conversation_id}] message {seq} edited: {}",
                    crate::format::content(content.as_ref())
                ),
                Some(Event::PeerRead { user, read_seq, .. }) => {
                    eprintln!("{user} read up to {read_seq}")
                }
                Some(Event::Friend {
                    kind: tern_client::pb::FriendEventKind::Requested,
                    other,
                    by_me: false,
                    message,
                    ..
                }) => eprintln!("{other} asks to be friends: {message}"),
                Some(
                    Event::Read { .. }
                    | Event::ConversationFlags { .. }
                    | Event::Friend { .. }
                    | Event::ProfileChanged { .. }
                    | Event::BlockChanged { .. }
                    | Event::Presence(_)
                    | Event::Observed(_),
                ) => {}
                Some(Event::Connected { .. }) => {}
                Some(Event::Disconnected { reason }) => eprintln!("disconnected ({reason}); reconnecting"),
                Some(Event::Kicked(k)) => {
                    eprintln!("kicked: {}", k.message);
                    break;
                }
                Some(Event::Stopped(e)) => return Err(e.into()),
                None => break,
            },
        }
    }
    client.close();
    Ok(())
}
