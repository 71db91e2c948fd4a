//! `register`, `send`, `history` and `group ...`: connect, do one thing, log out; and the
//! helper the other one-shot commands share.

use std::time::Duration;

use anyhow::Context;
use tern_client::{Connection, new_client_msg_id, pb};

use crate::{HistoryTarget, Login, SearchTarget, Target, format::message_line};

const TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn register(login: &Login) -> anyhow::Result<()> {
    let options = login.options(TIMEOUT)?;
    let mut result = Err(anyhow::anyhow!("no server address given"));
    // The first node that answers registers the user (a refusal is an answer).
    for endpoint in login.endpoints() {
        result = tern_client::register_with(&endpoint, &options, &login.user, &login.password)
            .await
            .with_context(|| format!("registering {}", login.user));
        match &result {
            Err(e)
                if e.downcast_ref::<tern_client::ClientError>()
                    .is_some_and(|c| matches!(c, tern_client::ClientError::Connect { .. })) => {}
            _ => break,
        }
    }
    result?;
    println!("registered {}", login.user);
    Ok(())
}

/// Logs in as a throwaway device that states no platform, so it replaces no other connection.
async fn connect(login: &Login) -> anyhow::Result<Connection> {
    Ok(connect_with_token(login).await?.0)
}

/// [`connect`], with the device's token (for the HTTP API); [`finish`] revokes it.
pub(crate) async fn connect_with_token(login: &Login) -> anyhow::Result<(Connection, String)> {
    let (conn, _events, _) =
        Connection::connect_any(&login.endpoints(), 0, &login.options(TIMEOUT)?).await?;
    let answer = conn
        .request(pb::LoginRequest {
            user_id: login.user.clone(),
            credential: Some(pb::login_request::Credential::Password(
                login.password.clone(),
            )),
            device_id: format!("cli-{:016x}", rand::random::<u64>()),
            platform: pb::Platform::Unspecified as i32,
        })
        .await
        .with_context(|| format!("logging in as {}", login.user))?;
    Ok((conn, answer.token))
}

/// Logs in, makes one request, logs out; the error names what was being done.
pub(crate) async fn call<R>(login: &Login, request: R, doing: &str) -> anyhow::Result<R::Response>
where
    R: tern_client::RequestPayload,
{
    let conn = connect(login).await?;
    let answer = conn.request(request).await;
    finish(conn).await;
    answer.with_context(|| doing.to_owned())
}

/// Revokes the throwaway device's token and closes.
pub(crate) async fn finish(conn: Connection) {
    let _ = conn.request(pb::LogoutRequest {}).await;
    conn.close();
}

/// Attempts of `send` when the connection fails or the server asks for a retry.
const SEND_ATTEMPTS: u32 = 6;

/// Sends one message. A dropped connection, an unreachable server or a retryable error is
/// retried with the same client message id (the server stores the message once, whichever
/// attempt landed), after 0.2, 0.4, 0.8, 1.6 and 3.2 s or what the server asked for.
pub(crate) async fn send(
    login: &Login,
    target: &Target,
    content: pb::Content,
    client_msg_id: Option<String>,
) -> anyhow::Result<()> {
    let (target, name) = match (&target.to, target.group) {
        (Some(to), _) => (pb::send_request::Target::ToUser(to.clone()), to.clone()),
        (None, Some(g)) => (pb::send_request::Target::GroupId(g), format!("group {g}")),
        (None, None) => anyhow::bail!("--to or --group is required"),
    };
    let request = pb::SendRequest {
        target: Some(target),
        client_msg_id: client_msg_id.unwrap_or_else(new_client_msg_id),
        content: Some(content),
    };
    let mut delay = Duration::from_millis(200);
    let mut attempt = 1;
    let ack = loop {
        let result = async {
            let conn = connect(login).await?;
            let ack = conn.request(request.clone()).await;
            finish(conn).await;
            ack.with_context(|| format!("sending to {name}"))
        }
        .await;
        let error = match result {
            Ok(ack) => break ack,
            Err(e) => e,
        };
        let client_error = error.downcast_ref::<tern_client::ClientError>();
        if attempt >= SEND_ATTEMPTS || !client_error.is_some_and(|e| e.is_retryable()) {
            return Err(error);
        }
        let wait = client_error.and_then(|e| e.retry_after()).unwrap_or(delay);
        eprintln!(
            "tern: {error:#}; retrying in {} ms with client message id {}",
            wait.as_millis(),
            request.client_msg_id
        );
        tokio::time::sleep(wait).await;
        delay *= 2;
        attempt += 1;
    };
    println!(
        "seq={} message_id={} conversation={}{}",
        ack.seq,
        ack.message_id,
        ack.conversation_id,
        if ack.duplicate { " duplicate" } else { "" }
    );
    Ok(())
}

pub(crate) async fn history(login: &Login, with: &HistoryTarget, limit: u32) -> anyhow::Result<()> {
    let (target, name) = match (&with.with, with.group) {
        (Some(peer), _) => (
            pb::history_request::Target::Peer(peer.clone()),
            format!("the conversation with {peer}"),
        ),
        (None, Some(g)) => (
            pb::history_request::Target::GroupId(g),
            format!("group {g}"),
        ),
        (None, None) => anyhow::bail!("--with or --group is required"),
    };
    let conn = connect(login).await?;
    let page = conn
        .request(pb::HistoryRequest {
            target: Some(target),
            anchor_seq: 0,
            direction: pb::Direction::Backward as i32,
            limit,
        })
        .await;
    finish(conn).await;
    let page = page.with_context(|| format!("reading {name}"))?;
    for m in &page.messages {
        println!("{}", message_line(m));
    }
    Ok(())
}

pub(crate) async fn search(
    login: &Login,
    within: &SearchTarget,
    text: &str,
    limit: u32,
) -> anyhow::Result<()> {
    let conversation_id = match (&within.with, within.group) {
        (Some(peer), _) => {
            let (a, b) = if login.user <= *peer {
                (login.user.as_str(), peer.as_str())
            } else {
                (peer.as_str(), login.user.as_str())
            };
            format!("p:{a}:{b}")
        }
        (None, Some(g)) => format!("g:{g}"),
        (None, None) => String::new(),
    };
    let conn = connect(login).await?;
    let found = conn
        .request(pb::MessageSearchRequest {
            query: text.to_owned(),
            conversation_id,
            limit,
            ..Default::default()
        })
        .await;
    finish(conn).await;
    let found = found.with_context(|| format!("searching for {text:?}"))?;
    for m in &found.messages {
        println!("{}\t{}", m.conversation_id, message_line(m));
    }
    Ok(())
}

pub(crate) async fn group_create(
    login: &Login,
    name: &str,
    members: &[String],
) -> anyhow::Result<()> {
    let conn = connect(login).await?;
    let created = conn
        .request(pb::GroupCreateRequest {
            name: name.to_owned(),
            members: members.iter().filter(|m| !m.is_empty()).cloned().collect(),
            ..Default::default()
        })
        .await;
    finish(conn).await;
    let group = created
        .with_context(|| format!("creating group {name:?}"))?
        .group
        .context("the server answered without the group")?;
    println!("{}", group.group_id);
    Ok(())
}

pub(crate) async fn group_members(
    login: &Login,
    group: u64,
    members: &[String],
    add: bool,
) -> anyhow::Result<()> {
    let list = pb::StringList {
        values: members.to_vec(),
    };
    let change = if add {
        pb::group_update_request::Change::AddMembers(list)
    } else {
        pb::group_update_request::Change::RemoveMembers(list)
    };
    let conn = connect(login).await?;
    let done = conn
        .request(pb::GroupUpdateRequest {
            group_id: group,
            change: Some(change),
        })
        .await;
    finish(conn).await;
    let done = done.with_context(|| {
        format!(
            "{} members of group {group}",
            if add { "adding" } else { "removing" }
        )
    })?;
    let members = done.group.map_or(0, |g| g.member_count);
    println!(
        "group {group}: {members} members (event seq {})",
        done.event_seq
    );
    Ok(())
}
