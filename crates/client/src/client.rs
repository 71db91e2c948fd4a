//! The high-level client: login, ordered sync, retrying sends, reconnect.
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

use crate::{
    ClientError, Connection, CursorStore, Endpoint, MemoryCursorStore, groups::GroupTracker,
    new_client_msg_id,
};

/// How the client reconnects after losing its connection.
#[derive(Debug, Clone)]
pub struct ReconnectPolicy {
    /// Reconnect at all.
    pub enabled: bool,
    /// The first delay; it doubles after each failed attempt.
    pub initial_backoff: Duration,
    /// The longest delay.
    pub max_backoff: Duration,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// Everything a client needs to log in and stay connected.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The server.
    pub endpoint: Endpoint,
    /// Payload encoding for requests (and, chosen at login, for pushes).
    pub encoding: Encoding,
    /// The user to log in as.
    pub user: String,
    /// The password (used for the first login; reconnects use the token it yields).
    pub password: Option<String>,
    /// A token from an earlier login of this device, used when no password is given.
    pub token: Option<String>,
    /// This installation's stable device id.
    pub device_id: String,
    /// The platform (the kick policy works per platform).
    pub platform: pb::Platform,
    /// How long one request may take.
    pub request_timeout: Duration,
    /// How long `send` keeps retrying before giving up.
    pub send_deadline: Duration,
    /// Reconnection behaviour.
    pub reconnect: ReconnectPolicy,
    /// Where the cursor is persisted between runs.
    pub cursor_store: Arc<dyn CursorStore>,
    /// Entries per SYNC page.
    pub sync_page: u32,
    /// How often the cursor is acknowledged to the server when it moved.
    pub cursor_ack_interval: Duration,
    /// The local address to connect from (TCP only); `None` lets the system choose.
    pub local_ip: Option<std::net::IpAddr>,
    /// Which certificate authorities to trust for `tls://` and `wss://` endpoints; `None`
    /// trusts the system's roots.
    pub tls: Option<crate::TlsTrust>,
}

impl ClientConfig {
    /// A configuration with defaults for everything but the essentials.
    pub fn new(endpoint: Endpoint, user: &str, password: &str, device_id: &str) -> Self {
        Self {
            endpoint,
            encoding: Encoding::Protobuf,
            user: user.to_owned(),
            password: Some(password.to_owned()),
            token: None,
            device_id: device_id.to_owned(),
            platform: pb::Platform::Unspecified,
            request_timeout: Duration::from_secs(10),
            send_deadline: Duration::from_secs(30),
            reconnect: ReconnectPolicy::default(),
            cursor_store: Arc::new(MemoryCursorStore::default()),
            sync_page: 500,
            cursor_ack_interval: Duration::from_secs(1),
            local_ip: None,
            tls: None,
        }
    }
}

/// What the app receives, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// An inbox entry: a message this user received, or sent from another device.
    Message {
        /// The entry's seq in this user's inbox.
        inbox_seq: u64,
        /// The message.
        message: pb::Message,
    },
    /// A message (or event) of a group's timeline, each seq once and in seq order per group,
    /// whether it came through the inbox, a push or a pull. Own sends are not repeated.
    GroupMessage {
        /// The message; its `conversation_id` is `g:` and the group id.
        message: pb::Message,
    },
    /// Another user is typing to this one (ephemeral: only while online, never replayed).
    Typing {
        /// Who is typing.
        from: String,
        /// The one-to-one conversation.
        conversation_id: String,
    },
    /// A message was recalled (by its sender, or in a group by an admin): show a tombstone in
    /// its place. Arrives in order with the conversation's other entries (at `event_seq`).
    Recalled {
        /// The conversation.
        conversation_id: String,
        /// The recalled message.
        message_id: u64,
        /// Its seq.
        seq: u64,
        /// Who recalled it.
        by: String,
        /// The recall event's own seq in the conversation.
        event_seq: u64,
    },
    /// A message was edited: it now says `content`.
    Edited {
        /// The conversation.
        conversation_id: String,
        /// The edited message.
        message_id: u64,
        /// Its seq.
        seq: u64,
        /// The new content.
        content: Option<pb::Content>,
        /// When it was edited.
        edited_at_ms: i64,
        /// The edit event's own seq in the conversation.
        event_seq: u64,
    },
    /// This user read a conversation up to `read_seq`, on this device or another: its unread
    /// count changed (ask CONVERSATION_LIST for the new count).
    Read {
        /// The conversation.
        conversation_id: String,
        /// The new read mark.
        read_seq: u64,
    },
    /// The peer of a one-to-one conversation read it up to `read_seq` (a read receipt).
    PeerRead {
        /// The peer.
        user: String,
        /// The conversation.
        conversation_id: String,
        /// The peer's new read mark.
        read_seq: u64,
    },
    /// This user pinned or muted a conversation, on this device or another.
    ConversationFlags {
        /// The conversation.
        conversation_id: String,
        /// Pinned now.
        pinned: bool,
        /// Muted now.
        muted: bool,
    },
    /// A friend request, answer, removal or remark that concerns this user, from whichever
    /// side made it (ask FRIEND_LIST for the list after it).
    Friend {
        /// What happened.
        kind: pb::FriendEventKind,
        /// The other user.
        other: String,
        /// True when this user made the change (on this device or another).
        by_me: bool,
        /// A request's message.
        message: String,
        /// A remark's new text.
        remark: String,
    },
    /// This user's profile or settings changed (on this device or another).
    ProfileChanged {
        /// The profile now.
        profile: pb::Profile,
        /// The stranger policy now.
        stranger_policy: pb::StrangerPolicy,
    },
    /// This user blocked or unblocked someone (on this device or another).
    BlockChanged {
        /// Who.
        user: String,
        /// Blocked now.
        blocked: bool,
    },
    /// A followed user's devices changed (or, after a reconnect, its presence now).
    Presence(pb::Presence),
    /// A message of a conversation this client observes (live only).
    Observed(pb::Message),
    /// The client (re)connected and logged in; `inbox_head` is the server's head at login.
    Connected {
        /// The inbox head at login.
        inbox_head: u64,
    },
    /// The connection was lost; the client is reconnecting.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// Another login replaced this device; the client stops.
    Kicked(pb::Kick),
    /// The client stopped because it cannot continue (for example its token was revoked).
    Stopped(ClientError),
}

/// A conversation, as the app names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conversation {
    /// The one-to-one conversation with this user.
    Peer(String),
    /// This group's timeline.
    Group(u64),
}

impl Conversation {
    fn history_target(&self) -> pb::history_request::Target {
        match self {
            Conversation::Peer(p) => pb::history_request::Target::Peer(p.clone()),
            Conversation::Group(g) => pb::history_request::Target::GroupId(*g),
        }
    }
}

/// Which page of a conversation to fetch.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    /// The conversation.
    pub conversation: Conversation,
    /// Page from this seq (exclusive); 0 with `Backward` means from the newest.
    pub anchor_seq: u64,
    /// Which way.
    pub direction: pb::Direction,
    /// At most this many.
    pub limit: u32,
}

impl HistoryQuery {
    /// The newest `limit` messages of a conversation.
    pub fn newest(conversation: Conversation, limit: u32) -> Self {
        Self {
            conversation,
            anchor_seq: 0,
            direction: pb::Direction::Backward,
            limit,
        }
    }
}

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
            config,
            current,
            own: own_tx,
            sent: Mutex::default(),
            stop: CancellationToken::new(),
            finished: CancellationToken::new(),
        });
        let (ready_tx, ready) = oneshot::channel();
        let supervisor = Supervisor {
            shared: shared.clone(),
            events: events_tx,
            current: current_tx,
            own_rx,
            cursor: 0,
            acked_cursor: 0,
            own_seqs: BTreeSet::new(),
            groups: GroupTracker::default(),
            pull_groups: false,
        };
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

    /// Creates a group owned by this user with `members`; returns it (its id is `group_id`).
    /// Retried like sends, with one request id, so a retry after a lost answer finds the group
    /// the first attempt created instead of creating another.
    pub async fn create_group(
        &self,
        name: &str,
        members: &[&str],
    ) -> Result<pb::GroupInfo, ClientError> {
        let resp = self
            .request(pb::GroupCreateRequest {
                name: name.to_owned(),
                members: members.iter().map(|m| m.to_string()).collect(),
                client_request_id: new_client_msg_id(),
                ..Default::default()
            })
            .await?;
        resp.group
            .ok_or_else(|| ClientError::Protocol("GROUP_CREATE answered without a group".into()))
    }

    /// Applies one change to a group. Not retried: a change that was applied before the
    /// connection dropped would be refused (or do nothing) the second time.
    pub async fn update_group(
        &self,
        group: u64,
        change: pb::group_update_request::Change,
    ) -> Result<pb::GroupUpdateResponse, ClientError> {
        self.connection()
            .await?
            .request(pb::GroupUpdateRequest {
                group_id: group,
                change: Some(change),
            })
            .await
    }

    /// Tells `to`'s online devices that this user is typing to them (rate-limited by the
    /// server: `RATE_LIMITED` when sent too often; not retried).
    pub async fn typing(&self, to: &str) -> Result<(), ClientError> {
        let conn = self.connection().await?;
        conn.request(pb::TypingRequest {
            to_user: to.to_owned(),
        })
        .await
        .map(|_| ())
    }

    /// Marks a conversation read up to `seq` (0: everything) on every device of this user.
    /// Retried like sends: a read mark only moves forward, so repeating it is harmless.
    pub async fn mark_read(
        &self,
        conversation: &Conversation,
        seq: u64,
    ) -> Result<pb::ReadResponse, ClientError> {
        let target = match conversation {
            Conversation::Peer(p) => pb::read_request::Target::Peer(p.clone()),
            Conversation::Group(g) => pb::read_request::Target::GroupId(*g),
        };
        self.request(pb::ReadRequest {
            target: Some(target),
            seq,
        })
        .await
    }

    /// Recalls a message. Retried like sends: recalling a recalled message records nothing.
    pub async fn recall(&self, message_id: u64) -> Result<pb::RecallResponse, ClientError> {
        self.request(pb::RecallRequest { message_id }).await
    }

    /// Replaces a message's text. Retried like sends: an edit to the same content records
    /// nothing.
    pub async fn edit_text(
        &self,
        message_id: u64,
        text: &str,
    ) -> Result<pb::EditResponse, ClientError> {
        self.request(pb::EditRequest {
            message_id,
            content: Some(pb::Content {
                body: Some(pb::content::Body::Text(pb::Text {
                    text: text.to_owned(),
                })),
            }),
        })
        .await
    }

    /// The conversation list: all of it with `since_version` 0, else the changes since an
    /// earlier response's version (see [`crate::ConversationList`], which merges them).
    pub async fn conversations(
        &self,
        since_version: u64,
    ) -> Result<pb::ConversationListResponse, ClientError> {
        self.request(pb::ConversationListRequest { since_version })
            .await
    }

    /// Pins or mutes a conversation (`None` keeps a flag) on every device of this user.
    pub async fn set_conversation_flags(
        &self,
        conversation_id: &str,
        pinned: Option<bool>,
        muted: Option<bool>,
    ) -> Result<pb::Conversation, ClientError> {
        self.request(pb::ConversationUpdateRequest {
            conversation_id: conversation_id.to_owned(),
            pinned,
            muted,
        })
        .await?
        .conversation
        .ok_or_else(|| ClientError::Protocol("CONVERSATION_UPDATE answered without one".into()))
    }

    /// The profiles of `users` (unknown ones are left out).
    pub async fn profiles(&self, users: &[&str]) -> Result<Vec<pb::Profile>, ClientError> {
        Ok(self
            .request(pb::ProfileGetRequest {
                user_ids: users.iter().map(|u| u.to_string()).collect(),
            })
            .await?
            .profiles)
    }

    /// Changes this user's profile fields and settings that are set.
    pub async fn update_profile(
        &self,
        update: pb::ProfileUpdateRequest,
    ) -> Result<pb::ProfileUpdateResponse, ClientError> {
        self.request(update).await
    }

    /// The user whose id is `query`, then users whose nickname starts with it.
    pub async fn search_users(
        &self,
        query: &str,
        limit: u32,
    ) -> Result<Vec<pb::Profile>, ClientError> {
        Ok(self
            .request(pb::UserSearchRequest {
                query: query.to_owned(),
                limit,
            })
            .await?
            .profiles)
    }

    /// Asks `to` to be friends; answers whether they are friends now (when `to` had asked
    /// first). Retried like sends: asking again only replaces the message.
    pub async fn request_friend(&self, to: &str, message: &str) -> Result<bool, ClientError> {
        Ok(self
            .request(pb::FriendRequestRequest {
                to_user: to.to_owned(),
                message: message.to_owned(),
            })
            .await?
            .friends)
    }

    /// Accepts or declines the pending request of `from`. Not retried: a request answered
    /// before the connection dropped is gone the second time.
    pub async fn respond_friend(&self, from: &str, accept: bool) -> Result<(), ClientError> {
        self.connection()
            .await?
            .request(pb::FriendRespondRequest {
                from_user: from.to_owned(),
                accept,
            })
            .await
            .map(drop)
    }

    /// Ends a friendship.
    pub async fn delete_friend(&self, user: &str) -> Result<(), ClientError> {
        self.request(pb::FriendDeleteRequest {
            user_id: user.to_owned(),
        })
        .await
        .map(drop)
    }

    /// Sets this user's private name for a friend.
    pub async fn remark_friend(&self, user: &str, remark: &str) -> Result<(), ClientError> {
        self.request(pb::FriendRemarkRequest {
            user_id: user.to_owned(),
            remark: remark.to_owned(),
        })
        .await
        .map(drop)
    }

    /// Friends and pending requests: all with `since_version` 0, else the changes since.
    pub async fn friends(&self, since_version: u64) -> Result<pb::FriendListResponse, ClientError> {
        self.request(pb::FriendListRequest { since_version }).await
    }

    /// Refuses `user`'s one-to-one messages and friend requests.
    pub async fn block(&self, user: &str) -> Result<(), ClientError> {
        self.request(pb::BlockRequest {
            user_id: user.to_owned(),
        })
        .await
        .map(drop)
    }

    /// Stops refusing `user`.
    pub async fn unblock(&self, user: &str) -> Result<(), ClientError> {
        self.request(pb::UnblockRequest {
            user_id: user.to_owned(),
        })
        .await
        .map(drop)
    }

    /// Everyone this user blocked.
    pub async fn blocked(&self) -> Result<Vec<String>, ClientError> {
        Ok(self.request(pb::BlockListRequest {}).await?.user_ids)
    }

    /// Follows the presence of `users` (friends, or this user): answers with it now, and every
    /// change arrives as [`Event::Presence`], also across reconnects.
    pub async fn follow_presence(&self, users: &[&str]) -> Result<Vec<pb::Presence>, ClientError> {
        let presences = self
            .request(pb::PresenceSubscribeRequest {
                user_ids: users.iter().map(|u| u.to_string()).collect(),
            })
            .await?
            .presences;
        // Only what the server accepted is followed again after a reconnect.
        self.shared
            .followed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(presences.iter().map(|p| p.user_id.clone()));
        Ok(presences)
    }

    /// Observes a conversation's live messages (this user needs the observer role): each
    /// arrives as [`Event::Observed`], also across reconnects (messages stored while the client
    /// was disconnected are not replayed).
    pub async fn observe(&self, conversation_id: &str) -> Result<(), ClientError> {
        self.request(pb::ObserveRequest {
            conversation_id: conversation_id.to_owned(),
            stop: false,
        })
        .await?;
        self.shared
            .observed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(conversation_id.to_owned());
        Ok(())
    }

    /// Stops observing a conversation.
    pub async fn stop_observing(&self, conversation_id: &str) -> Result<(), ClientError> {
        self.shared
            .observed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(conversation_id);
        self.request(pb::ObserveRequest {
            conversation_id: conversation_id.to_owned(),
            stop: true,
        })
        .await
        .map(drop)
    }

    /// Stops following the presence of `users`.
    pub async fn unfollow_presence(&self, users: &[&str]) -> Result<(), ClientError> {
        {
            let mut followed = self
                .shared
                .followed
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            for u in users {
                followed.remove(*u);
            }
        }
        self.request(pb::PresenceUnsubscribeRequest {
            user_ids: users.iter().map(|u| u.to_string()).collect(),
        })
        .await
        .map(drop)
    }

    /// Every group of this user, with each timeline's head.
    pub async fn groups(&self) -> Result<Vec<pb::GroupInfo>, ClientError> {
        Ok(self.request(pb::GroupListRequest {}).await?.groups)
    }

    /// A page of a conversation.
    pub async fn history(&self, query: &HistoryQuery) -> Result<pb::HistoryResponse, ClientError> {
        let req = pb::HistoryRequest {
            target: Some(query.conversation.history_target()),
            anchor_seq: query.anchor_seq,
            direction: query.direction as i32,
            limit: query.limit,
        };
        self.with_retry(|conn| {
            let req = req.clone();
            async move { conn.request(req).await }
        })
        .await
    }

    /// The whole conversation with `peer`, oldest first, fetched page by page.
    pub async fn full_history(&self, peer: &str) -> Result<Vec<pb::Message>, ClientError> {
        self.whole(Conversation::Peer(peer.to_owned())).await
    }

    /// A whole conversation (what this user may read of it), oldest first, page by page.
    pub async fn whole(&self, conversation: Conversation) -> Result<Vec<pb::Message>, ClientError> {
        let mut out = Vec::new();
        let mut anchor = 0;
        loop {
            let page = self
                .history(&HistoryQuery {
                    conversation: conversation.clone(),
                    anchor_seq: anchor,
                    direction: pb::Direction::Forward,
                    limit: 500,
                })
                .await?;
            anchor = page.messages.last().map_or(anchor, |m| m.seq);
            out.extend(page.messages);
            if !page.has_more {
                return Ok(out);
            }
        }
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

/// Why a connection ended, as the supervisor sees it.
enum Ended {
    Lost(String),
    Kicked(pb::Kick),
    Stopped,
    Goodbye(Duration),
}

struct Supervisor {
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<Event>,
    current: watch::Sender<Option<Connection>>,
    own_rx: mpsc::UnboundedReceiver<Own>,
    /// Every inbox entry up to here was handed to the app (or was this client's own send).
    cursor: u64,
    /// The cursor last acknowledged to the server.
    acked_cursor: u64,
    /// Inbox seqs of own sends not yet passed by the cursor.
    own_seqs: BTreeSet<u64>,
    /// Each group's position.
    groups: GroupTracker,
    /// Some group has a gap or an unknown start: pull before waiting for more.
    pull_groups: bool,
}

impl Supervisor {
    async fn run(mut self, ready: oneshot::Sender<Result<(), ClientError>>) {
        let mut ready = Some(ready);
        let policy = self.shared.config.reconnect.clone();
        let mut backoff = policy.initial_backoff;
        loop {
            if self.shared.stop.is_cancelled() {
                break;
            }
            match self.establish().await {
                Ok((conn, server_events, login)) => {
                    backoff = policy.initial_backoff;
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(Ok(()));
                    }
                    let _ = self.events.send(Event::Connected {
                        inbox_head: login.inbox_head,
                    });
                    let ended = self.follow(&conn, server_events, &login).await;
                    self.current.send_replace(None);
                    conn.close();
                    match ended {
                        Ended::Stopped => break,
                        Ended::Kicked(kick) => {
                            let _ = self.events.send(Event::Kicked(kick));
                            self.shared.stop.cancel();
                            break;
                        }
                        Ended::Lost(_)
                            if self
                                .shared
                                .logging_out
                                .load(std::sync::atomic::Ordering::SeqCst) =>
                        {
                            break;
                        }
                        Ended::Lost(reason) => {
                            let _ = self.events.send(Event::Disconnected { reason });
                        }
                        Ended::Goodbye(after) => {
                            let _ = self.events.send(Event::Disconnected {
                                reason: "server is shutting down".into(),
                            });
                            backoff = after.max(policy.initial_backoff);
                        }
                    }
                    if !policy.enabled {
                        break;
                    }
                }
                Err(e) => {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(Err(e));
                        self.shared.stop.cancel();
                        self.shared.finished.cancel();
                        return;
                    }
                    if !e.is_retryable() {
                        let _ = self.events.send(Event::Stopped(e));
                        self.shared.stop.cancel();
                        break;
                    }
                    if !policy.enabled {
                        break;
                    }
                }
            }
            // Jitter spreads reconnects of many clients after a server restart.
            let jitter =
                Duration::from_millis(rand::random::<u64>() % (backoff.as_millis() as u64 / 2 + 1));
            tokio::select! {
                _ = self.shared.stop.cancelled() => break,
                _ = tokio::time::sleep(backoff + jitter) => {}
            }
            backoff = (backoff * 2).min(policy.max_backoff);
        }
        self.current.send_replace(None);
        self.shared.finished.cancel();
    }

    /// Connects and logs in; on success publishes the connection.
    async fn establish(
        &mut self,
    ) -> Result<
        (
            Connection,
            mpsc::UnboundedReceiver<ServerEvent>,
            pb::LoginResponse,
        ),
        ClientError,
    > {
        let config = &self.shared.config;
        let options = crate::ConnectOptions {
            local_ip: config.local_ip,
            tls: config.tls.clone(),
            ..crate::ConnectOptions::new(config.encoding, config.request_timeout)
        };
        let (conn, server_events) = Connection::connect_with(&config.endpoint, &options).await?;
        let token = self
            .shared
            .token
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let credential = match (&token, &config.password) {
            (Some(t), _) => pb::login_request::Credential::Token(t.clone()),
            (None, Some(p)) => pb::login_request::Credential::Password(p.clone()),
            (None, None) => {
                return Err(ClientError::Protocol(
                    "a password or a token is required".into(),
                ));
            }
        };
        let login = conn
            .request(pb::LoginRequest {
                user_id: config.user.clone(),
                credential: Some(credential),
                device_id: config.device_id.clone(),
                platform: config.platform as i32,
            })
            .await;
        let login = match login {
            Err(e)
                if e.code() == Some(ErrorCode::TokenInvalid)
                    && config.password.is_some()
                    && token.is_some() =>
            {
                // The token expired or was replaced; the password still works.
                *self.shared.token.lock().unwrap_or_else(|p| p.into_inner()) = None;
                conn.close();
                return Box::pin(self.establish()).await;
            }
            other => other?,
        };
        *self.shared.token.lock().unwrap_or_else(|p| p.into_inner()) = Some(login.token.clone());
        if self.cursor == 0 {
            // A fresh client resumes from the persisted cursor, or else from the server's.
            self.cursor = config
                .cursor_store
                .load(&config.user, &config.device_id)
                .unwrap_or(login.cursor);
            self.acked_cursor = login.cursor;
        }
        self.current.send_replace(Some(conn.clone()));
        Ok((conn, server_events, login))
    }

    /// Follows the inbox on one connection until it ends.
    async fn follow(
        &mut self,
        conn: &Connection,
        mut server_events: mpsc::UnboundedReceiver<ServerEvent>,
        login: &pb::LoginResponse,
    ) -> Ended {
        if let Err(e) = self.catch_up(conn).await {
            return Ended::Lost(e.to_string());
        }
        if let Err(e) = self.follow_again(conn).await {
            return Ended::Lost(e.to_string());
        }
        let interval = Duration::from_millis(u64::from(login.heartbeat_interval_ms.max(100)));
        let mut heartbeat =
            tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        let mut ack_timer = tokio::time::interval(self.shared.config.cursor_ack_interval);
        loop {
            tokio::select! {
                _ = self.shared.stop.cancelled() => {
                    let _ = self.ack(conn).await;
                    return Ended::Stopped;
                }
                Some(own) = self.own_rx.recv() => match own {
                    Own::Inbox(seq) => {
                        if seq > self.cursor {
                            self.own_seqs.insert(seq);
                        }
                        self.advance_over_own();
                    }
                    Own::Group(conversation, seq) => {
                        let mut out = Vec::new();
                        self.groups.own(&conversation, seq, &mut out);
                        self.emit_group(&conversation, out);
                    }
                },
                event = server_events.recv() => match event {
                    None => return Ended::Lost("connection closed".into()),
                    Some(ServerEvent::Push(push)) => {
                        if let Some(entry) = push.entry
                            && !self.apply_push(entry)
                            && let Err(e) = self.sync(conn).await
                        {
                            return Ended::Lost(e.to_string());
                        }
                        if let Some(message) = push.group_message {
                            self.offer_group(message);
                        }
                        if let Some(message) = push.observed {
                            let _ = self.events.send(Event::Observed(message));
                        }
                        if self.pull_groups && let Err(e) = self.pull_groups(conn).await {
                            return Ended::Lost(e.to_string());
                        }
                    }
                    Some(ServerEvent::SyncNotify(_)) => {
                        // Dropped pushes may include group pushes, which only the groups'
                        // heads reveal.
                        if let Err(e) = self.catch_up(conn).await {
                            return Ended::Lost(e.to_string());
                        }
                    }
                    Some(ServerEvent::TypingNotice(t)) => {
                        let _ = self.events.send(Event::Typing {
                            from: t.from_user,
                            conversation_id: t.conversation_id,
                        });
                    }
                    Some(ServerEvent::Presence(p)) => {
                        let _ = self.events.send(Event::Presence(p));
                    }
                    Some(ServerEvent::Kick(kick)) => return Ended::Kicked(kick),
                    Some(ServerEvent::Goodbye(g)) => return Ended::Goodbye(Duration::from_millis(u64::from(g.reconnect_after_ms))),
                },
                _ = heartbeat.tick() => {
                    if conn.send_only(&tern_proto::Request::Ping(pb::Ping { client_time_ms: 0 })).is_err() {
                        return Ended::Lost("connection closed".into());
                    }
                }
                _ = ack_timer.tick() => {
                    if let Err(e) = self.ack(conn).await {
                        return Ended::Lost(e.to_string());
                    }
                }
            }
        }
    }

    /// Applies a pushed entry if it continues the cursor. Returns `false` when entries are
    /// missing before it (the caller then syncs).
    fn apply_push(&mut self, entry: pb::InboxEntry) -> bool {
        self.advance_over_own();
        if entry.seq <= self.cursor {
            return true;
        }
        if entry.seq != self.cursor + 1 {
            return false;
        }
        self.deliver(entry);
        self.advance_over_own();
        self.save_cursor();
        true
    }

    /// Hands an entry that continues the cursor to the app (unless it is this client's own
    /// send) and moves the cursor.
    fn deliver(&mut self, entry: pb::InboxEntry) {
        self.cursor = entry.seq;
        self.own_seqs.remove(&entry.seq);
        let Some(pb::inbox_entry::Event::Message(message)) = entry.event else {
            return;
        };
        if message.conversation_id.starts_with("g:") {
            self.offer_group(message);
            return;
        }
        if self.is_own(&message) {
            return;
        }
        let event = match typed_event(&message, &self.shared.config.user) {
            Some(event) => event,
            None => Event::Message {
                inbox_seq: entry.seq,
                message,
            },
        };
        let _ = self.events.send(event);
    }

    /// Whether `message` is one this client sent (and so already knows from its ack).
    fn is_own(&self, message: &pb::Message) -> bool {
        message.sender == self.shared.config.user
            && !message.client_msg_id.is_empty()
            && self
                .shared
                .sent
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&message.client_msg_id)
    }

    /// Offers a group message to its group's track.
    fn offer_group(&mut self, message: pb::Message) {
        let own = self.is_own(&message);
        let conversation = message.conversation_id.clone();
        let mut out = Vec::new();
        if self.groups.offer(message, own, &mut out) {
            self.pull_groups = true;
        }
        self.emit_group(&conversation, out);
    }

    /// Hands one group's released messages to the app and persists its position, which may
    /// also have moved over own sends without emitting anything.
    fn emit_group(&mut self, conversation: &str, out: Vec<pb::Message>) {
        let me = &self.shared.config.user;
        for message in out {
            let event = typed_event(&message, me).unwrap_or(Event::GroupMessage { message });
            let _ = self.events.send(event);
        }
        if let Some(pos) = self.groups.position(conversation) {
            let c = &self.shared.config;
            c.cursor_store
                .save_group(&c.user, &c.device_id, conversation, pos);
        }
    }

    /// Follows again, on a new connection, the presence the app followed (and reports it) and
    /// the conversations it observed.
    async fn follow_again(&mut self, conn: &Connection) -> Result<(), ClientError> {
        let users: Vec<String> = self
            .shared
            .followed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        if !users.is_empty() {
            match conn
                .request(pb::PresenceSubscribeRequest { user_ids: users })
                .await
            {
                Ok(resp) => {
                    // Whoever is no longer a friend is left out, and no longer followed.
                    let kept: std::collections::BTreeSet<String> =
                        resp.presences.iter().map(|p| p.user_id.clone()).collect();
                    *self
                        .shared
                        .followed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = kept;
                    for p in resp.presences {
                        let _ = self.events.send(Event::Presence(p));
                    }
                }
                // A refusal will not change by reconnecting: stop asking, keep the connection.
                Err(e) if e.code().is_some() => {
                    tracing::warn!(error = %e, "following presence again was refused");
                    self.shared
                        .followed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clear();
                }
                Err(e) => return Err(e),
            }
        }
        let observed: Vec<String> = self
            .shared
            .observed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        for conversation_id in observed {
            let result = conn
                .request(pb::ObserveRequest {
                    conversation_id: conversation_id.clone(),
                    stop: false,
                })
                .await;
            match result {
                Ok(_) => {}
                // The role was taken away, say: stop asking, keep the connection.
                Err(e) if e.code().is_some() => {
                    tracing::warn!(error = %e, conversation_id, "observing again was refused");
                    self.shared
                        .observed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&conversation_id);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Syncs the inbox, then compares every group's head with its position and pulls the rest.
    async fn catch_up(&mut self, conn: &Connection) -> Result<(), ClientError> {
        self.sync(conn).await?;
        let list = conn.request(pb::GroupListRequest {}).await?;
        let c = self.shared.config.clone();
        let mut behind = Vec::new();
        for g in list.groups {
            let mut out = Vec::new();
            let start = c
                .cursor_store
                .load_group(&c.user, &c.device_id, &g.conversation_id)
                .unwrap_or(g.visible_from_seq.saturating_sub(1));
            self.groups.start(&g.conversation_id, start, &mut out);
            self.emit_group(&g.conversation_id, out);
            if self
                .groups
                .position(&g.conversation_id)
                .is_some_and(|p| g.head_seq > p)
            {
                behind.push(g.conversation_id.clone());
            }
        }
        for conversation in behind {
            self.pull_group(conn, &conversation).await?;
        }
        self.pull_groups(conn).await
    }

    /// Pulls every group with a gap or an unknown start.
    async fn pull_groups(&mut self, conn: &Connection) -> Result<(), ClientError> {
        self.pull_groups = false;
        for conversation in self.groups.needing_pull() {
            if self.groups.position(&conversation).is_none() {
                // Where this member's view starts is in the group's record.
                let id = conversation
                    .strip_prefix("g:")
                    .and_then(|g| g.parse::<u64>().ok())
                    .unwrap_or(0);
                let c = self.shared.config.clone();
                let saved = c
                    .cursor_store
                    .load_group(&c.user, &c.device_id, &conversation);
                let start = match conn.request(pb::GroupInfoRequest { group_id: id }).await {
                    Ok(info) => saved.or(info.group.map(|g| g.visible_from_seq.saturating_sub(1))),
                    Err(e) if e.code() == Some(ErrorCode::NotAParticipant) => saved,
                    Err(e) => return Err(e),
                };
                let mut out = Vec::new();
                match start {
                    Some(start) => self.groups.start(&conversation, start, &mut out),
                    // No longer a member: the server still serves what was stored while it
                    // was one, from the event that added it.
                    None => self.groups.start_at_first_held(&conversation, &mut out),
                }
                self.emit_group(&conversation, out);
            }
            self.pull_group(conn, &conversation).await?;
        }
        Ok(())
    }

    /// Pulls one group's timeline forward from its position until nothing is missing.
    async fn pull_group(
        &mut self,
        conn: &Connection,
        conversation: &str,
    ) -> Result<(), ClientError> {
        loop {
            let Some(pos) = self.groups.position(conversation) else {
                return Ok(());
            };
            let page = conn
                .request(pb::HistoryRequest {
                    target: Some(pb::history_request::Target::ConversationId(
                        conversation.to_owned(),
                    )),
                    anchor_seq: pos,
                    direction: pb::Direction::Forward as i32,
                    limit: self.shared.config.sync_page,
                })
                .await;
            let page = match page {
                Ok(p) => p,
                Err(e) if e.code() == Some(ErrorCode::NotAParticipant) => {
                    let mut out = Vec::new();
                    self.groups.skip_gap(conversation, &mut out);
                    self.emit_group(conversation, out);
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            let more = page.has_more && !page.messages.is_empty();
            let first = page.messages.first().map(|m| m.seq);
            for m in page.messages {
                self.offer_group(m);
            }
            if let Some(first) = first
                && self.groups.position(conversation) == Some(pos)
            {
                // The page starts beyond a gap the server will not fill (seqs outside this
                // member's view, such as while it was away from the group): move to just before
                // the page, and go on from there instead of asking for the same page again.
                let mut out = Vec::new();
                self.groups.skip_to(conversation, first - 1, &mut out);
                self.emit_group(conversation, out);
            }
            if !more {
                // A gap the timeline cannot fill (messages before the member's view) is over.
                if self.groups.needing_pull().iter().any(|c| c == conversation) {
                    let mut out = Vec::new();
                    self.groups.skip_gap(conversation, &mut out);
                    self.emit_group(conversation, out);
                }
                return Ok(());
            }
        }
    }

    /// Moves the cursor over own sends that directly follow it.
    fn advance_over_own(&mut self) {
        while self.own_seqs.first().is_some_and(|s| *s <= self.cursor + 1) {
            if let Some(s) = self.own_seqs.pop_first() {
                self.cursor = self.cursor.max(s);
            }
        }
    }

    /// Pulls every entry after the cursor.
    async fn sync(&mut self, conn: &Connection) -> Result<(), ClientError> {
        loop {
            let page = conn
                .request(pb::SyncRequest {
                    after: self.cursor,
                    limit: self.shared.config.sync_page,
                })
                .await?;
            for entry in page.entries {
                if entry.seq <= self.cursor {
                    continue;
                }
                if entry.seq != self.cursor + 1 {
                    return Err(ClientError::Protocol(format!(
                        "sync returned seq {} after cursor {}",
                        entry.seq, self.cursor
                    )));
                }
                self.deliver(entry);
            }
            self.advance_over_own();
            self.save_cursor();
            if !page.has_more {
                return Ok(());
            }
        }
    }

    fn save_cursor(&self) {
        let c = &self.shared.config;
        c.cursor_store.save(&c.user, &c.device_id, self.cursor);
    }

    /// Tells the server how far this device has synced, when that moved.
    async fn ack(&mut self, conn: &Connection) -> Result<(), ClientError> {
        if self.cursor <= self.acked_cursor {
            return Ok(());
        }
        let resp = conn
            .request(pb::AckCursorRequest { seq: self.cursor })
            .await?;
        self.acked_cursor = resp.cursor;
        Ok(())
    }
}

/// The typed event for a recall, an edit or a notice; `None` for anything else.
fn typed_event(message: &pb::Message, me: &str) -> Option<Event> {
    use pb::content::Body;
    let body = message.content.as_ref().and_then(|c| c.body.as_ref())?;
    Some(match body {
        Body::Recall(r) => Event::Recalled {
            conversation_id: message.conversation_id.clone(),
            message_id: r.message_id,
            seq: r.seq,
            by: message.sender.clone(),
            event_seq: message.seq,
        },
        Body::Edit(e) => Event::Edited {
            conversation_id: message.conversation_id.clone(),
            message_id: e.message_id,
            seq: e.seq,
            content: e.content.as_deref().cloned(),
            edited_at_ms: message.server_time_ms,
            event_seq: message.seq,
        },
        Body::ReadMark(r) if message.sender == me => Event::Read {
            conversation_id: r.conversation_id.clone(),
            read_seq: r.read_seq,
        },
        Body::ReadMark(r) => Event::PeerRead {
            user: message.sender.clone(),
            conversation_id: r.conversation_id.clone(),
            read_seq: r.read_seq,
        },
        Body::ConversationFlags(f) => Event::ConversationFlags {
            conversation_id: f.conversation_id.clone(),
            pinned: f.pinned,
            muted: f.muted,
        },
        Body::FriendEvent(f) => {
            let by_me = message.sender == me;
            Event::Friend {
                kind: pb::FriendEventKind::try_from(f.kind)
                    .unwrap_or(pb::FriendEventKind::Unspecified),
                other: if by_me {
                    f.user_id.clone()
                } else {
                    message.sender.clone()
                },
                by_me,
                message: f.message.clone(),
                remark: f.remark.clone(),
            }
        }
        Body::ProfileChanged(p) => Event::ProfileChanged {
            profile: p.profile.clone().unwrap_or_default(),
            stranger_policy: pb::StrangerPolicy::try_from(p.stranger_policy)
                .unwrap_or(pb::StrangerPolicy::Anyone),
        },
        Body::BlockChanged(b) => Event::BlockChanged {
            user: b.user_id.clone(),
            blocked: b.blocked,
        },
        _ => return None,
    })
}
