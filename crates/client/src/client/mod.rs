//! The high-level client: login, ordered sync, retrying sends, reconnect. The supervisor that
//! owns the connection is in `supervisor.rs`, the settings in `config.rs`, the events in
//! `events.rs`, and the requests by domain in `chats.rs` (groups, conversations, history) and
//! `people.rs` (profiles, friends, blocks, presence, observing).
//!
//! A supervisor task owns the connection. It logs in, pulls the inbox from the device's cursor
//! until nothing is left, then follows pushes. Pushes are applied only when they continue the
//! cursor (seq = cursor + 1); anything else means something was missed, and the client syncs
//! again from its cursor. So the app sees every inbox entry exactly once, in seq order, across
//! reconnects — except entries for messages this client sent itself, which it already knows
//! from their acks.
//!
//! Group messages are followed per group (see `groups.rs`): after each inbox sync the client
//! compares every group's timeline head (GROUP_LIST) with its position and pulls what it lacks,
//! so large groups, whose messages have no inbox entry, converge the same way.

use std::{
    collections::{BTreeSet, HashSet, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use tern_proto::{Encoding, ErrorCode, ServerEvent, pb};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

mod chats;
mod config;
mod events;
mod people;
mod push;
mod supervisor;

pub use config::{ClientConfig, ReconnectPolicy};
pub use events::{Conversation, Event, HistoryQuery};
use supervisor::Supervisor;

use crate::{
    ClientError, Connection, CursorStore, Endpoint, MemoryCursorStore, groups::GroupTracker,
    new_client_msg_id,
};
use events::typed_event;

/// Creates an account (no login needed).
pub async fn register(endpoint: &Endpoint, user: &str, password: &str) -> Result<(), ClientError> {
    let options = crate::ConnectOptions::new(Encoding::Protobuf, Duration::from_secs(10));
    register_with(endpoint, &options, user, password).await
}

/// [`register`] with connection options (a TLS trust, say).
pub async fn register_with(
    endpoint: &Endpoint,
    options: &crate::ConnectOptions,
    user: &str,
    password: &str,
) -> Result<(), ClientError> {
    let (conn, _events) = Connection::connect_with(endpoint, options).await?;
    let result = conn
        .request(pb::RegisterRequest {
            user_id: user.to_owned(),
            password: password.to_owned(),
        })
        .await;
    conn.close();
    result.map(|_| ())
}

/// A logged-in client. Cloning shares it; dropping the last clone closes it, like
/// [`Client::close`].
#[derive(Debug, Clone)]
pub struct Client {
    shared: Arc<Shared>,
    _open: Arc<StopOnDrop>,
}

/// Stops the client's background task when the last handle goes (the task itself holds the
/// shared state, so that state alone cannot notice).
#[derive(Debug)]
struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

#[derive(Debug)]
struct Shared {
    config: ClientConfig,
    /// The live connection, when there is one.
    current: watch::Receiver<Option<Connection>>,
    /// This client's own sends, reported by their acks.
    own: mpsc::UnboundedSender<Own>,
    /// Client message ids of this client's recent sends, to recognise them in sync pages.
    sent: Mutex<RecentIds>,
    stop: CancellationToken,
    /// Cancelled by the supervisor when it has finished (after its last cursor ack).
    finished: CancellationToken,
    token: Mutex<Option<String>>,
    /// Set by `logout`: the connection's end is the logout's, not a loss.
    logging_out: std::sync::atomic::AtomicBool,
    /// Users whose presence this client follows; followed again after each reconnect.
    followed: Mutex<std::collections::BTreeSet<String>>,
    /// Conversations this client observes; observed again after each reconnect.
    observed: Mutex<std::collections::BTreeSet<String>>,
    /// The app is in the background: said again after each reconnect (a new connection
    /// starts in the foreground).
    background: std::sync::atomic::AtomicBool,
}

/// Where an acknowledged own send sits.
#[derive(Debug)]
enum Own {
    /// At this seq of the user's inbox.
    Inbox(u64),
    /// At this seq of a group's timeline (by conversation id).
    Group(String, u64),
}

/// A bounded set of recent client message ids.
#[derive(Debug, Default)]
struct RecentIds {
    order: VecDeque<String>,
    set: HashSet<String>,
}

impl RecentIds {
    const CAP: usize = 4096;

    fn insert(&mut self, id: &str) {
        if self.set.insert(id.to_owned()) {
            self.order.push_back(id.to_owned());
            if self.order.len() > Self::CAP
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
        }
    }

    fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }
}

impl Client {
    /// Connects, logs in, and starts following the inbox. Returns once the first login
    /// succeeded (or failed); events arrive on the returned receiver.
    pub async fn connect(
        config: ClientConfig,
    ) -> Result<(Client, mpsc::UnboundedReceiver<Event>), ClientError> {
        let (events_tx, events) = mpsc::unbounded_channel();
        let (current_tx, current) = watch::channel(None);
        let (own_tx, own_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            token: Mutex::new(config.token.clone()),
            logging_out: std::sync::atomic::AtomicBool::new(false),
            followed: Mutex::default(),
            observed: Mutex::default(),
            background: std::sync::atomic::AtomicBool::new(false),
            config,
            current,
            own: own_tx,
            sent: Mutex::default(),
            stop: CancellationToken::new(),
            finished: CancellationToken::new(),
        });
        let (ready_tx, ready) = oneshot::channel();
        let supervisor = Supervisor::new(shared.clone(), events_tx, current_tx, own_rx);
        tokio::spawn(supervisor.run(ready_tx));
        match ready.await {
            Ok(Ok(())) => Ok((
                Client {
                    _open: Arc::new(StopOnDrop(shared.stop.clone())),
                    shared,
                },
                events,
            )),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ClientError::Closed),
        }
    }

    /// The token of the current login, for logging in again later without the password.
    pub fn token(&self) -> Option<String> {
        self.shared
            .token
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Sends a text message to `to`.
    pub async fn send_text(&self, to: &str, text: &str) -> Result<pb::SendAck, ClientError> {
        let content = pb::Content {
            body: Some(pb::content::Body::Text(pb::Text {
                text: text.to_owned(),
            })),
        };
        self.send(to, content, &new_client_msg_id()).await
    }

    /// Sends a message with the given client message id, retrying (with the same id, so the
    /// server stores it once) across reconnects until the send deadline.
    pub async fn send(
        &self,
        to: &str,
        content: pb::Content,
        client_msg_id: &str,
    ) -> Result<pb::SendAck, ClientError> {
        self.send_to(
            pb::send_request::Target::ToUser(to.to_owned()),
            content,
            client_msg_id,
        )
        .await
    }

    /// Sends a text message to group `group`.
    pub async fn send_group_text(
        &self,
        group: u64,
        text: &str,
    ) -> Result<pb::SendAck, ClientError> {
        let content = pb::Content {
            body: Some(pb::content::Body::Text(pb::Text {
                text: text.to_owned(),
            })),
        };
        self.send_to(
            pb::send_request::Target::GroupId(group),
            content,
            &new_client_msg_id(),
        )
        .await
    }

    /// Sends a message to a user or a group, retrying like [`Client::send`].
    pub async fn send_to(
        &self,
        target: pb::send_request::Target,
        content: pb::Content,
        client_msg_id: &str,
    ) -> Result<pb::SendAck, ClientError> {
        self.shared
            .sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(client_msg_id);
        let req = pb::SendRequest {
            target: Some(target),
            client_msg_id: client_msg_id.to_owned(),
            content: Some(content),
        };
        let ack = self
            .with_retry(|conn| {
                let req = req.clone();
                async move { conn.request(req).await }
            })
            .await?;
        if ack.inbox_seq > 0 {
            let _ = self.shared.own.send(Own::Inbox(ack.inbox_seq));
        }
        if ack.conversation_id.starts_with("g:") {
            let _ = self
                .shared
                .own
                .send(Own::Group(ack.conversation_id.clone(), ack.seq));
        }
        Ok(ack)
    }

    /// Runs one request on the current connection, retrying like sends: for reads and other
    /// requests that are safe to repeat.
    pub async fn request<R>(&self, req: R) -> Result<R::Response, ClientError>
    where
        R: tern_proto::RequestPayload + Clone + Send + 'static,
        R::Response: Send + 'static,
    {
        self.with_retry(|conn| {
            let req = req.clone();
            async move { conn.request(req).await }
        })
        .await
    }

    /// The current connection, waiting for one while reconnecting.
    pub async fn connection(&self) -> Result<Connection, ClientError> {
        let mut current = self.shared.current.clone();
        loop {
            if self.shared.stop.is_cancelled() {
                return Err(ClientError::Closed);
            }
            if let Some(conn) = current.borrow_and_update().clone()
                && !conn.is_closed()
            {
                return Ok(conn);
            }
            tokio::select! {
                _ = self.shared.stop.cancelled() => return Err(ClientError::Closed),
                changed = current.changed() => if changed.is_err() { return Err(ClientError::Closed) },
            }
        }
    }

    async fn with_retry<T, F, Fut>(&self, f: F) -> Result<T, ClientError>
    where
        F: Fn(Connection) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let deadline = tokio::time::Instant::now() + self.shared.config.send_deadline;
        let mut backoff = Duration::from_millis(50);
        loop {
            let attempt = async {
                let conn = self.connection().await?;
                f(conn).await
            };
            let result = match tokio::time::timeout_at(deadline, attempt).await {
                Ok(r) => r,
                Err(_) => return Err(ClientError::Timeout),
            };
            match result {
                Err(e) if e.is_retryable() && tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                other => return other,
            }
        }
    }

    /// Stops the client and closes its connection, in the background.
    pub fn close(&self) {
        self.shared.stop.cancel();
    }

    /// Stops the client and waits until it has acknowledged its cursor to the server and closed.
    pub async fn close_and_wait(&self) {
        self.shared.stop.cancel();
        self.shared.finished.cancelled().await;
    }

    /// Logs out (revoking the token) and stops the client.
    pub async fn logout(&self) -> Result<(), ClientError> {
        let conn = self.connection().await?;
        // The server closes the connection once it has answered: that must neither be taken
        // for a loss (and a new login) nor be raced by closing the connection from this side
        // before the answer arrives.
        self.shared
            .logging_out
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let result = conn.request(pb::LogoutRequest {}).await.map(|_| ());
        self.shared.stop.cancel();
        result
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
