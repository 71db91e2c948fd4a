//! The supervisor task: owns the connection, logs in, syncs from the cursor, follows pushes,
//! acknowledges the cursor, and reconnects with backoff when the connection is lost.

use super::*;

/// Why a connection ended, as the supervisor sees it.
pub(super) enum Ended {
    Lost(String),
    Kicked(pb::Kick),
    Stopped,
    Goodbye(Duration),
}

pub(super) struct Supervisor {
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
    /// The endpoint (of `endpoint` and the fallbacks) to try first.
    at: usize,
}

impl Supervisor {
    /// A supervisor for a client that has not connected yet.
    pub(super) fn new(
        shared: Arc<Shared>,
        events: mpsc::UnboundedSender<Event>,
        current: watch::Sender<Option<Connection>>,
        own_rx: mpsc::UnboundedReceiver<Own>,
    ) -> Self {
        Self {
            shared,
            events,
            current,
            own_rx,
            cursor: 0,
            acked_cursor: 0,
            own_seqs: BTreeSet::new(),
            groups: GroupTracker::default(),
            pull_groups: false,
            at: 0,
        }
    }

    pub(super) async fn run(mut self, ready: oneshot::Sender<Result<(), ClientError>>) {
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
                            // The node may be gone: another one is tried first.
                            self.at += 1;
                        }
                        Ended::Goodbye(after) => {
                            let _ = self.events.send(Event::Disconnected {
                                reason: "server is shutting down".into(),
                            });
                            backoff = if self.shared.config.fallbacks.is_empty() {
                                after.max(policy.initial_backoff)
                            } else {
                                // Another node is up: go there without waiting for this one.
                                policy.initial_backoff
                            };
                            self.at += 1;
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
                    self.at += 1;
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
        let endpoints = config.endpoints();
        let (conn, server_events, at) =
            Connection::connect_any(&endpoints, self.at % endpoints.len(), &options).await?;
        self.at = at;
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
            return lost(&mut server_events, e.to_string());
        }
        if let Err(e) = self.follow_again(conn).await {
            return lost(&mut server_events, e.to_string());
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
                    None => return lost(&mut server_events, "connection closed".into()),
                    Some(ServerEvent::Push(push)) => {
                        if let Some(entry) = push.entry
                            && !self.apply_push(entry)
                            && let Err(e) = self.sync(conn).await
                        {
                            return lost(&mut server_events, e.to_string());
                        }
                        if let Some(message) = push.group_message {
                            self.offer_group(message);
                        }
                        if let Some(message) = push.observed {
                            let _ = self.events.send(Event::Observed(message));
                        }
                        if self.pull_groups && let Err(e) = self.pull_groups(conn).await {
                            return lost(&mut server_events, e.to_string());
                        }
                    }
                    Some(ServerEvent::SyncNotify(_)) => {
                        // Dropped pushes may include group pushes, which only the groups'
                        // heads reveal.
                        if let Err(e) = self.catch_up(conn).await {
                            return lost(&mut server_events, e.to_string());
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
                        return lost(&mut server_events, "connection closed".into());
                    }
                }
                _ = ack_timer.tick() => {
                    if let Err(e) = self.ack(conn).await {
                        return lost(&mut server_events, e.to_string());
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
    /// the conversations it observed, and says again that the app is in the background.
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
        if self
            .shared
            .background
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            match conn
                .request(pb::PushAppStateRequest { background: true })
                .await
            {
                Ok(_) => {}
                // No registration (removed as dead, say): nothing to keep marked.
                Err(e) if e.code().is_some() => {
                    tracing::warn!(error = %e, "saying the app is in the background was refused");
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

/// How a connection that failed under a request ended: a kick or goodbye the server sent just
/// before closing is still queued, and says more than the failed request (a kicked device must
/// not log in again, or it would kick the device that replaced it).
fn lost(server_events: &mut mpsc::UnboundedReceiver<ServerEvent>, reason: String) -> Ended {
    while let Ok(event) = server_events.try_recv() {
        match event {
            ServerEvent::Kick(kick) => return Ended::Kicked(kick),
            ServerEvent::Goodbye(g) => {
                return Ended::Goodbye(Duration::from_millis(u64::from(g.reconnect_after_ms)));
            }
            _ => {}
        }
    }
    Ended::Lost(reason)
}
