//! `register`, `send` and `history`: connect, do one thing, log out.

use std::time::Duration;

use anyhow::Context;
use tern_client::{Connection, Encoding, Endpoint, new_client_msg_id, pb};

use crate::{Login, format::message_line};

const TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn register(login: &Login) -> anyhow::Result<()> {
    tern_client::register(
        &Endpoint::parse(&login.server),
        &login.user,
        &login.password,
    )
    .await
    .with_context(|| format!("registering {}", login.user))?;
    println!("registered {}", login.user);
    Ok(())
}

/// Logs in as a throwaway device that states no platform, so it replaces no other connection.
async fn connect(login: &Login) -> anyhow::Result<Connection> {
    let endpoint = Endpoint::parse(&login.server);
    let (conn, _events) = Connection::connect(&endpoint, Encoding::Protobuf, TIMEOUT).await?;
    conn.request(pb::LoginRequest {
        user_id: login.user.clone(),
        credential: Some(pb::login_request::Credential::Password(
            login.password.clone(),
        )),
        device_id: format!("cli-{:016x}", rand::random::<u64>()),
        platform: pb::Platform::Unspecified as i32,
    })
    .await
    .with_context(|| format!("logging in as {}", login.user))?;
    Ok(conn)
}

/// Revokes the throwaway device's token and closes.
async fn finish(conn: Connection) {
    let _ = conn.request(pb::LogoutRequest {}).await;
    conn.close();
}

pub(crate) async fn send(login: &Login, to: &str, text: &str) -> anyhow::Result<()> {
    let conn = connect(login).await?;
    let request = pb::SendRequest {
        target: Some(pb::send_request::Target::ToUser(to.to_owned())),
        client_msg_id: new_client_msg_id(),
        content: Some(pb::Content {
            body: Some(pb::content::Body::Text(pb::Text {
                text: text.to_owned(),
            })),
        }),
    };
    let ack = conn.request(request).await;
    finish(conn).await;
    let ack = ack.with_context(|| format!("sending to {to}"))?;
    println!(
        "seq={} message_id={} conversation={}",
        ack.seq, ack.message_id, ack.conversation_id
    );
    Ok(())
}

pub(crate) async fn history(login: &Login, with: &str, limit: u32) -> anyhow::Result<()> {
    let conn = connect(login).await?;
    let page = conn
        .request(pb::HistoryRequest {
            target: Some(pb::history_request::Target::Peer(with.to_owned())),
            anchor_seq: 0,
            direction: pb::Direction::Backward as i32,
            limit,
        })
        .await;
    finish(conn).await;
    let page = page.with_context(|| format!("reading the conversation with {with}"))?;
    for m in &page.messages {
        println!("{}", message_line(m));
    }
    Ok(())
}
