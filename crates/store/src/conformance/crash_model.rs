//! The crash model every backend runs: a child process runs random writes against a real store
//! and reports every acknowledged one; the parent kills it with SIGKILL at random moments
//! (within milliseconds of an ack, right after recovery, mid-batch), many times in a row, and
//! after each restart checks everything the store answers against a model of everything
//! acknowledged: history, every inbox, heads, cursors, read marks, groups, friends, blocks, and
//! the answer to retried client message ids.
//!
//! A backend's test file holds the two halves: in the child ([`child_location`] is set), it
//! calls [`child_main`] with a function that opens its store; in the parent, it calls
//! [`run_seed`] (random writes) or [`run`] with a [`Script`] over a fresh location. The child is
//! the same test binary, started again with the test's own name and an environment variable
//! that turns the test into the child's main.
//!
//! The normal suite runs a fixed list of seeds for a few seconds. A soak runs fresh seeds until
//! time is up (see [`soak_secs`]). A failing seed prints itself; freeze it as a named test.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    io::{BufRead, BufReader, Write as _},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use super::Backend;
use crate::conformance;
use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};
use serde::{Deserialize, Serialize};
use tern_core::{
    ConversationId, DeviceId, GroupId, MessageId, UserId,
    groups::GroupChange,
    social::{SocialChange, SocialWrite},
    store::{
        Amend, Amendment, AppendOutcome, Direction, MarkRead, SetFlags, Stored, StoredMessage,
        Write,
    },
};

/// Set in the child: the store's location (a data directory, a database URL).
const CHILD_DIR: &str = "TERN_CRASH_MODEL_DIR";
/// Set in the child: the backend's settings, as the backend's test wrote them.
const CHILD_CONFIG: &str = "TERN_CRASH_MODEL_CONFIG";
/// Runs fresh seeds for this many seconds instead of the fixed list.
const SOAK: &str = "TERN_CRASH_SOAK_SECS";

/// In the child: the location its store is at. `None` in the parent.
pub fn child_location() -> Option<String> {
    std::env::var(CHILD_DIR).ok()
}

/// How long a soak runs (`TERN_CRASH_SOAK_SECS`), if one was asked for.
pub fn soak_secs() -> Option<u64> {
    std::env::var(SOAK).ok().and_then(|s| s.parse().ok())
}

/// The users every run registers.
pub const USERS: [&str; 6] = ["u0", "u1", "u2", "u3", "u4", "u5"];
/// Groups with more members than this store each message once (read diffusion).
const WRITE_DIFFUSION_MAX: usize = 3;
/// The server time of every write; recalls happen within the window after it.
const NOW_MS: i64 = 1_700_000_000_000;

// ---------------------------------------------------------------------------------------------
// What travels between the parent and the child, one JSON document per line.

/// One write (or read of everything) the parent asks of the child.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Op {
    Register {
        user: String,
    },
    Send {
        from: String,
        to: String,
        cmid: String,
    },
    GroupSend {
        from: String,
        group: u64,
        cmid: String,
    },
    CreateGroup {
        owner: String,
        members: Vec<String>,
    },
    AddMembers {
        group: u64,
        actor: String,
        users: Vec<String>,
    },
    RemoveMembers {
        group: u64,
        actor: String,
        users: Vec<String>,
    },
    Recall {
        actor: String,
        message: u64,
    },
    MarkRead {
        user: String,
        conversation: String,
        seq: u64,
    },
    Pin {
        user: String,
        conversation: String,
        pinned: bool,
    },
    Social {
        actor: String,
        change: Social,
    },
    Cursor {
        user: String,
        device: String,
        seq: u64,
    },
    /// Sleeps in the child before answering: lets a scripted run wait for the indexer.
    Wait {
        ms: u64,
    },
    Dump {
        conversations: Vec<String>,
        devices: Vec<(String, String)>,
        groups_upto: u64,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Social {
    Request(String),
    Accept(String),
    Unfriend(String),
    Block(String),
    Unblock(String),
}

impl Social {
    fn other(&self) -> &str {
        match self {
            Social::Request(o)
            | Social::Accept(o)
            | Social::Unfriend(o)
            | Social::Block(o)
            | Social::Unblock(o) => o,
        }
    }
}

/// A stored message (or event), as the model keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Rec {
    id: u64,
    conversation: String,
    seq: u64,
    sender: String,
    cmid: String,
    sender_inbox_seq: u64,
}

impl From<&StoredMessage> for Rec {
    fn from(m: &StoredMessage) -> Self {
        Rec {
            id: m.id.0,
            conversation: m.conversation.as_str().to_owned(),
            seq: m.seq,
            sender: m.sender.as_str().to_owned(),
            cmid: m.client_msg_id.clone(),
            sender_inbox_seq: m.sender_inbox_seq,
        }
    }
}

/// A message or event stored by a write, with the inbox entries it got.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredRec {
    message: Rec,
    inbox: Vec<(String, u64)>,
}

impl From<&Stored> for StoredRec {
    fn from(s: &Stored) -> Self {
        StoredRec {
            message: Rec::from(&*s.message),
            inbox: s
                .inbox_seqs
                .iter()
                .map(|(u, seq)| (u.as_str().to_owned(), *seq))
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct GroupRec {
    id: u64,
    owner: String,
    dissolved: bool,
    members: BTreeSet<String>,
    head: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Reply {
    Registered(bool),
    Stored(StoredRec),
    Duplicate(Rec),
    Refused(String),
    Applied {
        value: u64,
        event: Option<StoredRec>,
    },
    Group {
        group: GroupRec,
        event: Option<StoredRec>,
    },
    Cursor(u64),
    Waited,
    Dump(Box<Dump>),
    /// The store failed the write: never expected here.
    Failed(String),
}

/// Everything the store answers after a restart.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Dump {
    /// Each conversation's whole history, forward.
    histories: BTreeMap<String, Vec<Rec>>,
    /// Each user's inbox.
    inboxes: BTreeMap<String, InboxDump>,
    cursors: BTreeMap<String, u64>,
    groups: BTreeMap<u64, GroupRec>,
    /// `(user, conversation)` → read mark.
    read_marks: BTreeMap<String, u64>,
    /// `(user, other)` pairs that are friends / that `user` blocks.
    friends: BTreeSet<(String, String)>,
    blocks: BTreeSet<(String, String)>,
    /// Messages in history that a search for the text they say does not find (the search
    /// index lost them): always empty in a correct store.
    unsearchable: Vec<u64>,
}

/// One user's inbox as the store answers it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct InboxDump {
    /// What `inbox_head` says.
    head: u64,
    /// The head a read of the inbox reported.
    page_head: u64,
    /// `(seq, message id)`, in seq order.
    entries: Vec<(u64, u64)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Request {
    id: u64,
    op: Op,
}

#[derive(Debug, Serialize, Deserialize)]
struct Response {
    id: u64,
    reply: Reply,
}

// ---------------------------------------------------------------------------------------------
// The child: opens the store (recovering it), says READY, then runs each request as it
// arrives, many at once, and prints each answer the moment the store gives it.

/// The child's main: opens the store with `open(location, settings)` (recovering it), says
/// READY, then runs each request as it arrives, many at once, and prints each answer the moment
/// the store gives it. Never returns: it dies as a crash would.
pub fn child_main<F, Fut>(open: F) -> !
where
    F: FnOnce(String, String) -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Backend>>,
{
    let location = child_location().expect("the parent sets the location");
    let settings = std::env::var(CHILD_CONFIG).expect("the parent sets the config");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = open(location, settings).await;
        let out = Arc::new(Mutex::new(std::io::stdout()));
        say(&out, "READY");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Request>();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                    break;
                }
            }
        });
        while let Some(req) = rx.recv().await {
            let (store, out) = (store.clone(), out.clone());
            tokio::spawn(async move {
                let reply = execute(&*store, req.op).await;
                let line = serde_json::to_string(&Response { id: req.id, reply }).unwrap();
                say(&out, &format!("R {line}"));
            });
        }
        // The parent closed the pipe: die as a crash would.
        std::process::abort();
    })
}

fn say(out: &Mutex<std::io::Stdout>, line: &str) {
    let mut out = out.lock().unwrap_or_else(|p| p.into_inner());
    // A line of its own: the test harness may have printed a partial line before. A parent
    // that stopped listening is about to kill this process anyway.
    let _ = writeln!(out, "\n{line}");
    let _ = out.flush();
}

fn uid(s: &str) -> UserId {
    conformance::user(s)
}

fn conversation(s: &str) -> ConversationId {
    ConversationId::parse(s).expect("a valid conversation id").0
}

async fn execute(store: &dyn Backend, op: Op) -> Reply {
    let write = match op {
        Op::Register { user } => {
            return match store.create_user(&uid(&user), "$argon2id$x", 0).await {
                Ok(created) => Reply::Registered(created),
                Err(e) => Reply::Failed(e.to_string()),
            };
        }
        Op::Cursor { user, device, seq } => {
            let device = DeviceId::parse(&device).unwrap();
            return match store.save_cursor(&uid(&user), &device, seq).await {
                Ok(c) => Reply::Cursor(c),
                Err(e) => Reply::Failed(e.to_string()),
            };
        }
        Op::Wait { ms } => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            return Reply::Waited;
        }
        Op::Dump {
            conversations,
            devices,
            groups_upto,
        } => {
            return match dump(store, conversations, devices, groups_upto).await {
                Ok(d) => Reply::Dump(Box::new(d)),
                Err(e) => Reply::Failed(e.to_string()),
            };
        }
        Op::Send { from, to, cmid } => conformance::text(&from, &to, &cmid, &cmid),
        Op::GroupSend { from, group, cmid } => {
            conformance::group_text(&from, GroupId(group), &cmid, WRITE_DIFFUSION_MAX)
        }
        Op::CreateGroup { owner, members } => {
            let members: Vec<&str> = members.iter().map(String::as_str).collect();
            conformance::create_group(&owner, &members, WRITE_DIFFUSION_MAX)
        }
        Op::AddMembers {
            group,
            actor,
            users,
        } => conformance::change_group(
            GroupId(group),
            &actor,
            GroupChange::AddMembers(users.iter().map(|u| uid(u)).collect()),
            WRITE_DIFFUSION_MAX,
        ),
        Op::RemoveMembers {
            group,
            actor,
            users,
        } => conformance::change_group(
            GroupId(group),
            &actor,
            GroupChange::RemoveMembers(users.iter().map(|u| uid(u)).collect()),
            WRITE_DIFFUSION_MAX,
        ),
        Op::Recall { actor, message } => Write::Amend(Amend {
            actor: uid(&actor),
            message: MessageId(message),
            change: Amendment::Recall,
            now_ms: NOW_MS + 1,
            window_ms: 120_000,
            write_diffusion_max: WRITE_DIFFUSION_MAX,
        }),
        Op::MarkRead {
            user,
            conversation: c,
            seq,
        } => Write::MarkRead(MarkRead {
            user: uid(&user),
            conversation: conversation(&c),
            seq,
            now_ms: NOW_MS,
        }),
        Op::Pin {
            user,
            conversation: c,
            pinned,
        } => Write::SetFlags(SetFlags {
            user: uid(&user),
            conversation: conversation(&c),
            pinned: Some(pinned),
            muted: None,
            now_ms: NOW_MS,
        }),
        Op::Social { actor, change } => Write::Social(SocialWrite {
            actor: uid(&actor),
            change: match change {
                Social::Request(o) => SocialChange::FriendRequest {
                    to: uid(&o),
                    message: "hi".into(),
                },
                Social::Accept(o) => SocialChange::FriendRespond {
                    from: uid(&o),
                    accept: true,
                },
                Social::Unfriend(o) => SocialChange::FriendDelete(uid(&o)),
                Social::Block(o) => SocialChange::Block(uid(&o)),
                Social::Unblock(o) => SocialChange::Unblock(uid(&o)),
            },
            now_ms: NOW_MS,
        }),
    };
    let outcome = match store.commit(vec![write]).await {
        Ok(mut o) => o.remove(0),
        Err(e) => return Reply::Failed(e.to_string()),
    };
    match outcome {
        AppendOutcome::Stored(s) => Reply::Stored(StoredRec::from(&s)),
        AppendOutcome::Duplicate(m) => Reply::Duplicate(Rec::from(&*m)),
        AppendOutcome::UnknownUser(u) => Reply::Refused(format!("unknown user {u}")),
        AppendOutcome::Refused(e) => Reply::Refused(format!("{e:?}")),
        AppendOutcome::ReadMark { mark, notice, .. } => Reply::Applied {
            value: mark,
            event: notice.as_ref().map(StoredRec::from),
        },
        AppendOutcome::Amended { event: notice, .. } | AppendOutcome::Flags { notice, .. } => {
            Reply::Applied {
                value: notice.as_ref().map_or(0, |n| n.message.seq),
                event: notice.as_ref().map(StoredRec::from),
            }
        }
        AppendOutcome::Social {
            friends, notice, ..
        } => Reply::Applied {
            value: u64::from(friends),
            event: notice.as_ref().map(StoredRec::from),
        },
        AppendOutcome::Group {
            state,
            head_seq,
            event,
        } => Reply::Group {
            group: GroupRec {
                id: state.id.0,
                owner: state.settings.owner.as_str().to_owned(),
                dissolved: state.settings.dissolved,
                members: state
                    .members
                    .keys()
                    .map(|u| u.as_str().to_owned())
                    .collect(),
                head: head_seq,
            },
            event: event.as_ref().map(StoredRec::from),
        },
    }
}

async fn dump(
    store: &dyn Backend,
    mut conversations: Vec<String>,
    devices: Vec<(String, String)>,
    groups_upto: u64,
) -> Result<Dump, tern_core::StoreError> {
    let mut d = Dump::default();
    for g in 1..=groups_upto {
        let Some((record, _)) = store.group(GroupId(g), &uid(USERS[0])).await? else {
            continue;
        };
        let mut members = BTreeSet::new();
        let mut after = None;
        loop {
            let page = store.group_members(GroupId(g), after.clone(), 100).await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            members.extend(page.iter().map(|(u, _)| u.as_str().to_owned()));
        }
        d.groups.insert(
            g,
            GroupRec {
                id: g,
                owner: record.settings.owner.as_str().to_owned(),
                dissolved: record.settings.dissolved,
                members,
                head: record.head_seq,
            },
        );
        conversations.push(ConversationId::group(GroupId(g)).as_str().to_owned());
    }
    conversations.sort();
    conversations.dedup();
    for c in &conversations {
        let id = conversation(c);
        let mut messages = Vec::new();
        let mut anchor = 0;
        loop {
            let page = store.history(&id, anchor, Direction::Forward, 97).await?;
            anchor = page.messages.last().map_or(anchor, |m| m.seq);
            messages.extend(page.messages.iter().map(Rec::from));
            for m in &page.messages {
                if !findable(store, m).await? {
                    d.unsearchable.push(m.id.0);
                }
            }
            if !page.has_more {
                break;
            }
        }
        if !messages.is_empty() {
            d.histories.insert(c.clone(), messages);
        }
        for u in USERS {
            let mark = store.read_marks(&id, vec![uid(u)]).await?[0];
            if mark > 0 {
                d.read_marks.insert(format!("{u} {c}"), mark);
            }
        }
    }
    for u in USERS {
        let user = uid(u);
        let head = store.inbox_head(&user).await?;
        let mut entries = Vec::new();
        let mut after = 0;
        let page_head = loop {
            let page = store.read_inbox(&user, after, 89).await?;
            let Some(last) = page.entries.last() else {
                break page.head;
            };
            after = last.seq;
            for e in &page.entries {
                let tern_core::store::InboxEvent::Message(m) = &e.event;
                entries.push((e.seq, m.id.0));
            }
        };
        d.inboxes.insert(
            u.to_owned(),
            InboxDump {
                head,
                page_head,
                entries,
            },
        );
        let others: Vec<UserId> = USERS.iter().map(|o| uid(o)).collect();
        for (other, yes) in USERS.iter().zip(store.are_friends(&user, others).await?) {
            if yes {
                d.friends.insert((u.to_owned(), (*other).to_owned()));
            }
        }
        for blocked in store.blocked(&user).await? {
            d.blocks.insert((u.to_owned(), blocked.as_str().to_owned()));
        }
    }
    for (user, device) in devices {
        let cursor = store
            .load_cursor(&uid(&user), &DeviceId::parse(&device).unwrap())
            .await?;
        d.cursors.insert(format!("{user}/{device}"), cursor);
    }
    Ok(d)
}

/// Whether a search for the text `m` says finds it; true for what says no text (events, a
/// recalled message). A sent message's text is its client message id, which other texts may
/// contain, so the search pages back until it reaches `m`.
async fn findable(store: &dyn Backend, m: &StoredMessage) -> Result<bool, tern_core::StoreError> {
    let text = match &m.content {
        tern_core::content::Content::Text(t) if m.recalled_by.is_none() => &t.text,
        _ => return Ok(true),
    };
    let mut before = 0;
    loop {
        let found = store
            .search(tern_core::search::SearchRequest {
                scope: None,
                query: tern_core::search::fold(text),
                sender: Some(m.sender.clone()),
                before,
                limit: 100,
            })
            .await?;
        if found.iter().any(|c| c.id == m.id) {
            return Ok(true);
        }
        match found.last() {
            Some(last) if found.len() == 100 && last.id.0 > m.id.0 => before = last.id.0,
            _ => return Ok(false),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The parent's model of everything acknowledged.

/// What the parent knows to be durable: every acknowledged write, and every write that was in
/// flight at a kill and was found stored after the restart.
#[derive(Debug, Default)]
struct Model {
    registered: BTreeSet<String>,
    /// Every stored message and event by id.
    messages: BTreeMap<u64, Rec>,
    /// `(conversation, seq)` → message id.
    positions: HashMap<(String, u64), u64>,
    /// Each user's inbox: seq → message id.
    inboxes: HashMap<String, BTreeMap<u64, u64>>,
    /// The highest inbox and conversation heads any restart reported: they never go back.
    inbox_heads: HashMap<String, u64>,
    conversation_heads: HashMap<String, u64>,
    /// Sends by `(sender, client message id)`: the target and the message, for retries.
    sends: HashMap<(String, String), (Target, u64)>,
    cursors: BTreeMap<String, u64>,
    read_marks: BTreeMap<String, u64>,
    groups: BTreeMap<u64, GroupRec>,
    friends: BTreeSet<(String, String)>,
    blocks: BTreeSet<(String, String)>,
    /// One-to-one conversations with a message.
    directs: BTreeSet<String>,
    next_cmid: u64,
}

#[derive(Debug, Clone, PartialEq)]
enum Target {
    User(String),
    Group(u64),
}

impl Model {
    fn add_stored(&mut self, s: &StoredRec) -> Result<(), String> {
        let m = &s.message;
        if let Some(old) = self.messages.get(&m.id)
            && old != m
        {
            return Err(format!(
                "message {} acked twice differently: {old:?} then {m:?}",
                m.id
            ));
        }
        if let Some(other) = self.positions.get(&(m.conversation.clone(), m.seq))
            && *other != m.id
        {
            return Err(format!(
                "{} seq {} given to message {} and again to {}",
                m.conversation, m.seq, other, m.id
            ));
        }
        self.positions.insert((m.conversation.clone(), m.seq), m.id);
        self.messages.insert(m.id, m.clone());
        if m.conversation.starts_with("p:") {
            self.directs.insert(m.conversation.clone());
        }
        for (user, seq) in &s.inbox {
            let inbox = self.inboxes.entry(user.clone()).or_default();
            if let Some(other) = inbox.insert(*seq, m.id)
                && other != m.id
            {
                return Err(format!(
                    "{user}'s inbox seq {seq} given to message {other} and again to {}",
                    m.id
                ));
            }
        }
        Ok(())
    }

    fn inbox_head(&self, user: &str) -> u64 {
        let acked = self
            .inboxes
            .get(user)
            .and_then(|i| i.last_key_value())
            .map_or(0, |(s, _)| *s);
        acked.max(self.inbox_heads.get(user).copied().unwrap_or(0))
    }

    fn conversations(&self) -> Vec<String> {
        let mut all: Vec<String> = self.directs.iter().cloned().collect();
        for u in USERS {
            all.push(format!("u:{u}"));
        }
        for (i, a) in USERS.iter().enumerate() {
            for b in &USERS[i + 1..] {
                all.push(format!("p:{a}:{b}"));
            }
        }
        all.sort();
        all.dedup();
        all
    }

    fn devices() -> Vec<(String, String)> {
        USERS
            .iter()
            .flat_map(|u| ["d0", "d1"].map(|d| (u.to_string(), d.to_string())))
            .collect()
    }

    fn cmid(&mut self) -> String {
        self.next_cmid += 1;
        format!("c{}", self.next_cmid)
    }

    /// Applies an acknowledged answer to `op`; checks what an answer can be checked against.
    fn acked(&mut self, op: &Op, reply: &Reply, expect: &Expect) -> Result<(), String> {
        if let Reply::Failed(e) = reply {
            return Err(format!("{op:?} failed in the store: {e}"));
        }
        match (expect, reply) {
            (Expect::Stored, Reply::Stored(_) | Reply::Duplicate(_)) => {}
            (Expect::Refused, Reply::Refused(_)) => {}
            (Expect::Duplicate(id), Reply::Duplicate(m)) if m.id == *id => {
                let want = &self.messages[id];
                if m != want {
                    return Err(format!(
                        "retry of {op:?} answered {m:?}, first ack was {want:?}"
                    ));
                }
            }
            (Expect::Anything, _) => {}
            (want, got) => return Err(format!("{op:?}: expected {want:?}, got {got:?}")),
        }
        match (op, reply) {
            (Op::Register { user }, Reply::Registered(_)) => {
                self.registered.insert(user.clone());
            }
            (Op::Send { from, to, cmid }, Reply::Stored(s)) => {
                self.add_stored(s)?;
                self.sends.insert(
                    (from.clone(), cmid.clone()),
                    (Target::User(to.clone()), s.message.id),
                );
            }
            (Op::GroupSend { from, group, cmid }, Reply::Stored(s)) => {
                self.add_stored(s)?;
                self.sends.insert(
                    (from.clone(), cmid.clone()),
                    (Target::Group(*group), s.message.id),
                );
            }
            (
                Op::Send { from, cmid, .. } | Op::GroupSend { from, cmid, .. },
                Reply::Duplicate(m),
            ) => {
                // A retry of a send that was in flight at a kill: the restart found it stored.
                match self.sends.get(&(from.clone(), cmid.clone())) {
                    Some((_, id)) if *id == m.id => {}
                    other => {
                        return Err(format!(
                            "{op:?} answered as a duplicate of {m:?}, but the model has {other:?}"
                        ));
                    }
                }
            }
            (_, Reply::Group { group, event }) => {
                if let Some(e) = event {
                    self.add_stored(e)?;
                }
                self.groups.insert(group.id, group.clone());
            }
            (_, Reply::Applied { value, event }) => {
                if let Some(e) = event {
                    self.add_stored(e)?;
                }
                match op {
                    Op::MarkRead {
                        user, conversation, ..
                    } => {
                        // Answers of concurrent writes may arrive out of commit order.
                        let key = format!("{user} {conversation}");
                        let before = self.read_marks.get(&key).copied().unwrap_or(0);
                        self.read_marks.insert(key, before.max(*value));
                    }
                    Op::Social { actor, change } => {
                        let pair = (actor.clone(), change.other().to_owned());
                        let back = (pair.1.clone(), pair.0.clone());
                        match change {
                            Social::Request(_) | Social::Accept(_) if *value == 1 => {
                                self.friends.insert(pair);
                                self.friends.insert(back);
                            }
                            Social::Unfriend(_) => {
                                self.friends.remove(&pair);
                                self.friends.remove(&back);
                            }
                            Social::Block(_) => {
                                self.blocks.insert(pair);
                            }
                            Social::Unblock(_) => {
                                self.blocks.remove(&pair);
                            }
                            _ => {}
                        }
                    }
                    _ => {}
                }
            }
            (Op::Cursor { user, device, seq }, Reply::Cursor(c)) => {
                // Answers of concurrent saves may arrive out of commit order.
                let key = format!("{user}/{device}");
                if *c < *seq {
                    return Err(format!("{key}: saved {seq}, the store says {c}"));
                }
                let before = self.cursors.get(&key).copied().unwrap_or(0);
                self.cursors.insert(key, before.max(*c));
            }
            _ => {}
        }
        Ok(())
    }

    /// Checks what a restarted store answers against the model, and adopts what writes in
    /// flight at the kill (`in_doubt`) left behind.
    fn check(&mut self, d: &Dump, in_doubt: &[Op]) -> Result<(), String> {
        if !d.unsearchable.is_empty() {
            return Err(format!(
                "messages {:?} are in history but a search for their text misses them",
                d.unsearchable
            ));
        }
        let mut used = vec![false; in_doubt.len()];
        let mut adopted = HashSet::new();
        // History: gapless, every known message where it was acked, anything else attributable
        // to a write in doubt.
        let mut ids = HashSet::new();
        let mut keys = HashSet::new();
        for (c, messages) in &d.histories {
            let seqs: Vec<u64> = messages.iter().map(|m| m.seq).collect();
            if seqs != (1..=seqs.len() as u64).collect::<Vec<_>>() {
                return Err(format!("{c}: history seqs {seqs:?} are not 1..n"));
            }
            for m in messages {
                if !ids.insert(m.id) {
                    return Err(format!("message {} appears twice in history", m.id));
                }
                if !m.cmid.is_empty() && !keys.insert((m.sender.clone(), m.cmid.clone())) {
                    return Err(format!("({}, {}) stored twice", m.sender, m.cmid));
                }
                match self.messages.get(&m.id) {
                    Some(known) if known == m => {}
                    Some(known) => {
                        return Err(format!(
                            "message {} was acked as {known:?}, stored as {m:?}",
                            m.id
                        ));
                    }
                    None => {
                        let Some(i) = (0..in_doubt.len())
                            .find(|&i| !used[i] && could_have_written(&in_doubt[i], m, self))
                        else {
                            return Err(format!("{m:?} is stored but no write produced it"));
                        };
                        used[i] = true;
                        adopted.insert(m.id);
                        self.positions.insert((m.conversation.clone(), m.seq), m.id);
                        self.messages.insert(m.id, m.clone());
                        if m.conversation.starts_with("p:") {
                            self.directs.insert(m.conversation.clone());
                        }
                        if !m.cmid.is_empty() {
                            let target = match &in_doubt[i] {
                                Op::Send { to, .. } => Target::User(to.clone()),
                                Op::GroupSend { group, .. } => Target::Group(*group),
                                _ => unreachable!("only sends carry a client message id"),
                            };
                            self.sends
                                .insert((m.sender.clone(), m.cmid.clone()), (target, m.id));
                        }
                    }
                }
            }
            let head = seqs.len() as u64;
            let before = self.conversation_heads.get(c).copied().unwrap_or(0);
            if head < before {
                return Err(format!("{c}: head went back from {before} to {head}"));
            }
            self.conversation_heads.insert(c.clone(), head);
        }
        for (id, m) in &self.messages {
            if !ids.contains(id) {
                return Err(format!("acked {m:?} is missing from history"));
            }
        }
        // Inboxes: gapless, heads agree, every acked entry present, entries of messages in
        // doubt adopted, nothing else.
        let mut seen_entries: HashMap<u64, Vec<(String, u64)>> = HashMap::new();
        for (
            user,
            InboxDump {
                head,
                page_head,
                entries,
            },
        ) in &d.inboxes
        {
            let seqs: Vec<u64> = entries.iter().map(|e| e.0).collect();
            if seqs != (1..=seqs.len() as u64).collect::<Vec<_>>() {
                return Err(format!("{user}'s inbox seqs are not 1..n: {seqs:?}"));
            }
            if *head != seqs.len() as u64 || *page_head != *head {
                return Err(format!(
                    "{user}: inbox_head {head}, read head {page_head}, {} entries",
                    seqs.len()
                ));
            }
            let before = self.inbox_head(user);
            if *head < before {
                return Err(format!(
                    "{user}'s inbox head went back from {before} to {head} (entries lost, seqs to be reused)"
                ));
            }
            self.inbox_heads.insert(user.clone(), *head);
            let mut in_this = HashSet::new();
            for (seq, id) in entries {
                if !in_this.insert(*id) {
                    return Err(format!("message {id} appears twice in {user}'s inbox"));
                }
                if !ids.contains(id) {
                    return Err(format!(
                        "{user}'s inbox seq {seq} points at unknown message {id}"
                    ));
                }
                seen_entries
                    .entry(*id)
                    .or_default()
                    .push((user.clone(), *seq));
            }
        }
        for (user, inbox) in &self.inboxes {
            let stored = &d.inboxes[user].entries;
            for (seq, id) in inbox {
                match stored.get(*seq as usize - 1) {
                    Some((_, got)) if got == id => {}
                    got => {
                        return Err(format!(
                            "{user}'s acked inbox seq {seq} (message {id}) is {got:?} after the restart"
                        ));
                    }
                }
            }
        }
        for (id, entries) in &seen_entries {
            for (user, seq) in entries {
                let inbox = self.inboxes.entry(user.clone()).or_default();
                match inbox.get(seq) {
                    Some(known) if known == id => {}
                    Some(known) => {
                        return Err(format!("{user} seq {seq}: acked {known}, stored {id}"));
                    }
                    None if adopted.contains(id) => {
                        inbox.insert(*seq, *id);
                    }
                    None => {
                        return Err(format!(
                            "{user}'s inbox has message {id} at seq {seq}, which its ack did not report"
                        ));
                    }
                }
            }
        }
        // Cursors and read marks only go up; a write in doubt may have raised them.
        for (key, got) in &d.cursors {
            let acked = self.cursors.get(key).copied().unwrap_or(0);
            let doubt = in_doubt
                .iter()
                .filter_map(|op| match op {
                    Op::Cursor { user, device, seq } if format!("{user}/{device}") == *key => {
                        Some(*seq)
                    }
                    _ => None,
                })
                .max()
                .unwrap_or(0);
            if *got < acked || *got > acked.max(doubt) {
                return Err(format!(
                    "{key}: cursor {got}, acked {acked}, in doubt {doubt}"
                ));
            }
            self.cursors.insert(key.clone(), *got);
        }
        for (key, acked) in self.read_marks.clone() {
            let got = d.read_marks.get(&key).copied().unwrap_or(0);
            if got < acked {
                return Err(format!(
                    "{key}: read mark {got} after the restart, acked {acked}"
                ));
            }
        }
        self.read_marks.extend(d.read_marks.clone());
        // Groups: as last acked, unless a change in doubt touched them.
        for (id, got) in &d.groups {
            let history_head = d
                .histories
                .get(&format!("g:{id}"))
                .map_or(0, |h| h.len() as u64);
            if got.head != history_head {
                return Err(format!(
                    "group {id}: head {} but history ends at {history_head}",
                    got.head
                ));
            }
            let doubted = in_doubt.iter().any(|op| touches_group(op, *id));
            match self.groups.get(id) {
                Some(want)
                    if !doubted && (&want.members, &want.owner) != (&got.members, &got.owner) =>
                {
                    return Err(format!("group {id}: acked {want:?}, stored {got:?}"));
                }
                None if !in_doubt
                    .iter()
                    .any(|op| matches!(op, Op::CreateGroup { .. })) =>
                {
                    return Err(format!("group {id} exists but was never created: {got:?}"));
                }
                _ => {}
            }
            self.groups.insert(*id, got.clone());
        }
        for id in self.groups.keys() {
            if !d.groups.contains_key(id) {
                return Err(format!("acked group {id} is gone"));
            }
        }
        // Friends and blocks: as last acked, unless a change in doubt touched the pair.
        let doubted = |a: &str, b: &str| {
            in_doubt.iter().any(|op| match op {
                Op::Social { actor, change } => {
                    let o = change.other();
                    (actor == a && o == b) || (actor == b && o == a)
                }
                _ => false,
            })
        };
        for (name, model, got) in [
            ("friends", &self.friends, &d.friends),
            ("blocks", &self.blocks, &d.blocks),
        ] {
            for (a, b) in model.symmetric_difference(got) {
                if !doubted(a, b) {
                    return Err(format!(
                        "{name} ({a}, {b}): acked {}, stored {}",
                        model.contains(&(a.clone(), b.clone())),
                        got.contains(&(a.clone(), b.clone()))
                    ));
                }
            }
        }
        self.friends = d.friends.clone();
        self.blocks = d.blocks.clone();
        Ok(())
    }
}

/// Whether the write `op`, in flight at a kill, may have stored `m`.
fn could_have_written(op: &Op, m: &Rec, model: &Model) -> bool {
    let event = |actor: &str, conversation: &str| {
        m.cmid.is_empty() && m.sender == actor && m.conversation == conversation
    };
    match op {
        Op::Send { from, cmid, .. } | Op::GroupSend { from, cmid, .. } => {
            m.sender == *from && m.cmid == *cmid
        }
        Op::CreateGroup { owner, .. } => {
            m.cmid.is_empty()
                && m.sender == *owner
                && m.seq == 1
                && m.conversation
                    .strip_prefix("g:")
                    .and_then(|g| g.parse::<u64>().ok())
                    .is_some_and(|g| !model.groups.contains_key(&g))
        }
        Op::AddMembers { group, actor, .. } | Op::RemoveMembers { group, actor, .. } => {
            event(actor, &format!("g:{group}"))
        }
        Op::Recall { actor, message } => model
            .messages
            .get(message)
            .is_some_and(|target| event(actor, &target.conversation)),
        Op::MarkRead { user, .. } | Op::Pin { user, .. } => event(user, &format!("u:{user}")),
        Op::Social { actor, .. } => event(actor, &format!("u:{actor}")),
        Op::Register { .. } | Op::Cursor { .. } | Op::Wait { .. } | Op::Dump { .. } => false,
    }
}

/// Whether `op`, committed first, may change what `earlier` is answered.
fn may_change_answer(op: &Op, earlier: &Op) -> bool {
    match (op, earlier) {
        (Op::Social { actor, change }, Op::Send { from, to, .. }) => {
            let o = change.other();
            (actor == from && o == to) || (actor == to && o == from)
        }
        (_, Op::GroupSend { group, .. }) => touches_group(op, *group),
        _ => false,
    }
}

fn touches_group(op: &Op, id: u64) -> bool {
    match op {
        Op::CreateGroup { .. } => true,
        Op::AddMembers { group, .. } | Op::RemoveMembers { group, .. } => *group == id,
        _ => false,
    }
}

/// What the parent expects of an answer, decided when the write is issued.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    Anything,
    Stored,
    Refused,
    /// A retry of the acknowledged message with this id.
    Duplicate(u64),
}

// ---------------------------------------------------------------------------------------------
// The parent: runs rounds of child, writes, kill; checks after every restart.

/// How a round ends.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// Right after the restart's checks, before any new write.
    AfterRecovery,
    /// Within a millisecond of the n-th acknowledgement of the round.
    AfterAcks(usize),
    /// At a random moment.
    AfterMillis(u64),
    /// Within a millisecond of the last acknowledgement, once the round's writes are done.
    WhenDone,
}

/// Decides each round's writes and how it ends.
trait Workload {
    fn kill(&mut self, round: usize, rng: &mut StdRng) -> Kill;
    /// The most writes in flight at once.
    fn window(&mut self, round: usize, rng: &mut StdRng) -> usize;
    /// The next write of the round, with what its answer must be; `None` when the round has
    /// no more.
    fn next(
        &mut self,
        round: usize,
        model: &mut Model,
        pending: &[Op],
        rng: &mut StdRng,
    ) -> Option<(Op, Expect)>;
}

/// A running child and the lines it prints.
struct ChildProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

fn spawn_child(test: &str, location: &str, settings: &str) -> ChildProcess {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, location)
        .env(CHILD_CONFIG, settings)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if (line == "READY" || line.starts_with("R ")) && tx.send(line).is_err() {
                break;
            }
        }
    });
    ChildProcess {
        child,
        stdin,
        lines,
    }
}

impl ChildProcess {
    fn send(&mut self, id: u64, op: &Op) {
        let line = serde_json::to_string(&Request { id, op: op.clone() }).unwrap();
        // The child may already be dead (killed): its answers decide, not the write.
        if let Some(stdin) = &mut self.stdin {
            let _ = writeln!(stdin, "{line}");
            let _ = stdin.flush();
        }
    }

    fn recv(&self, timeout: Duration) -> Option<Response> {
        let line = self.lines.recv_timeout(timeout).ok()?;
        let json = line.strip_prefix("R ")?;
        Some(serde_json::from_str(json).unwrap())
    }

    /// SIGKILL, then every answer the child printed before it died.
    fn kill(mut self) -> Vec<Response> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        drop(self.stdin.take());
        self.lines
            .iter()
            .filter_map(|l| {
                l.strip_prefix("R ")
                    .map(|j| serde_json::from_str(j).unwrap())
            })
            .collect()
    }
}

/// Runs `rounds` of child, writes and kill over one fresh location (the child opens it with
/// `settings`); the error says what differed from the model, and when.
fn run(
    test: &str,
    location: &str,
    settings: &str,
    seed: u64,
    rounds: usize,
    workload: &mut dyn Workload,
) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = Model::default();
    let mut in_doubt: Vec<Op> = Vec::new();
    let mut next_id = 0u64;
    let trace = std::env::var_os("TERN_CRASH_MODEL_TRACE").is_some();
    // One round more than asked: the last only recovers and checks.
    for round in 0..=rounds {
        let mut child = spawn_child(test, location, settings);
        match child.lines.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line == "READY" => {}
            other => return Err(format!("round {round}: the child did not start: {other:?}")),
        }
        next_id += 1;
        let dump_op = Op::Dump {
            conversations: model.conversations(),
            devices: Model::devices(),
            // Ids of creations in doubt may exceed the known ones, and a backend may skip ids
            // (a rolled-back insert burns a PostgreSQL identity value): look well beyond.
            groups_upto: model.groups.keys().max().copied().unwrap_or(0)
                + in_doubt
                    .iter()
                    .filter(|op| matches!(op, Op::CreateGroup { .. }))
                    .count() as u64
                + 32,
        };
        child.send(next_id, &dump_op);
        let dump = match child.recv(Duration::from_secs(60)) {
            Some(Response {
                reply: Reply::Dump(d),
                ..
            }) => d,
            other => return Err(format!("round {round}: no dump: {other:?}")),
        };
        model
            .check(&dump, &in_doubt)
            .map_err(|e| format!("after restart {round}: {e}"))?;
        // Sends in doubt are retried first, as a client would, with the same ids.
        let retries: Vec<Op> = in_doubt
            .drain(..)
            .filter(|op| matches!(op, Op::Send { .. } | Op::GroupSend { .. }))
            .collect();
        if round == rounds {
            child.kill();
            break;
        }
        let kill = workload.kill(round, &mut rng);
        let window = workload.window(round, &mut rng).max(1);
        let mut pending: BTreeMap<u64, (Op, Expect)> = BTreeMap::new();
        let mut retries = retries.into_iter();
        let started = Instant::now();
        let mut acks = 0usize;
        let mut done = matches!(kill, Kill::AfterRecovery);
        let answers = loop {
            if done {
                break child.kill();
            }
            let mut exhausted = false;
            while pending.len() < window {
                let pending_ops: Vec<Op> = pending.values().map(|(op, _)| op.clone()).collect();
                let next = match retries.next() {
                    Some(op) => Some((op, Expect::Anything)),
                    None => workload.next(round, &mut model, &pending_ops, &mut rng),
                };
                let Some((op, expect)) = next else {
                    exhausted = true;
                    break;
                };
                // Writes in flight together may commit in either order: an earlier write's
                // answer no longer follows from the model once this one may come first.
                for (earlier, expect) in pending.values_mut() {
                    if may_change_answer(&op, earlier) {
                        *expect = Expect::Anything;
                    }
                }
                next_id += 1;
                child.send(next_id, &op);
                pending.insert(next_id, (op, expect));
            }
            // Out of writes: whatever the plan, the kill comes right after the last ack.
            if exhausted && pending.is_empty() {
                break child.kill();
            }
            let wait = match kill {
                Kill::AfterMillis(ms) => {
                    let deadline = Duration::from_millis(ms);
                    match deadline.checked_sub(started.elapsed()) {
                        Some(left) => left,
                        None => break child.kill(),
                    }
                }
                _ => Duration::from_secs(60),
            };
            let Some(Response { id, reply }) = child.recv(wait) else {
                if matches!(kill, Kill::AfterMillis(_)) {
                    continue;
                }
                return Err(format!("round {round}: no answer within a minute"));
            };
            let (op, expect) = pending.remove(&id).expect("an answer to a request");
            if trace {
                eprintln!("round {round} ack {op:?} -> {reply:?}");
            }
            model
                .acked(&op, &reply, &expect)
                .map_err(|e| format!("round {round}: {e}"))?;
            acks += 1;
            done = match kill {
                Kill::AfterAcks(n) => acks >= n,
                _ => false,
            };
        };
        // Answers printed before the kill are acknowledgements too.
        for Response { id, reply } in answers {
            if let Some((op, expect)) = pending.remove(&id) {
                if trace {
                    eprintln!("round {round} ack after kill {op:?} -> {reply:?}");
                }
                model
                    .acked(&op, &reply, &expect)
                    .map_err(|e| format!("round {round}: {e}"))?;
            }
        }
        in_doubt = pending.into_values().map(|(op, _)| op).collect();
    }
    Ok(())
}

/// Random writes of every kind, from what the model knows.
struct RandomWorkload {
    /// Writes left in this round.
    budget: usize,
}

impl Workload for RandomWorkload {
    fn kill(&mut self, _round: usize, rng: &mut StdRng) -> Kill {
        self.budget = rng.random_range(1..400);
        match rng.random_range(0..100) {
            0..15 => Kill::AfterRecovery,
            15..55 => Kill::AfterAcks(rng.random_range(1..=self.budget)),
            55..85 => Kill::AfterMillis(rng.random_range(0..400)),
            _ => Kill::WhenDone,
        }
    }

    fn window(&mut self, _round: usize, rng: &mut StdRng) -> usize {
        *[1, 4, 16, 32, 64].choose(rng).unwrap()
    }

    fn next(
        &mut self,
        _round: usize,
        model: &mut Model,
        pending: &[Op],
        rng: &mut StdRng,
    ) -> Option<(Op, Expect)> {
        let unregistered: Vec<&str> = USERS
            .iter()
            .copied()
            .filter(|u| !model.registered.contains(*u))
            .collect();
        if !unregistered.is_empty() {
            if pending.iter().any(|op| matches!(op, Op::Register { .. })) {
                return None;
            }
            let user = unregistered[0].to_owned();
            return Some((Op::Register { user }, Expect::Anything));
        }
        // A round has a bounded number of writes, so that `WhenDone` comes.
        if self.budget == 0 {
            return None;
        }
        self.budget -= 1;
        let pick = |rng: &mut StdRng| USERS.choose(rng).unwrap().to_string();
        let social_pending = |a: &str, b: &str| {
            pending.iter().any(|op| match op {
                Op::Social { actor, change } => {
                    let o = change.other();
                    (actor == a && o == b) || (actor == b && o == a)
                }
                _ => false,
            })
        };
        let group_pending = |g: u64| pending.iter().any(|op| touches_group(op, g));
        Some(match rng.random_range(0..100) {
            0..40 => {
                let from = pick(rng);
                let mut to = pick(rng);
                while to == from {
                    to = pick(rng);
                }
                let cmid = model.cmid();
                // Blocks are known exactly when no change to them is in flight.
                let expect = if social_pending(&from, &to) {
                    Expect::Anything
                } else if model.blocks.contains(&(to.clone(), from.clone())) {
                    Expect::Refused
                } else {
                    Expect::Stored
                };
                (Op::Send { from, to, cmid }, expect)
            }
            40..55 if !model.groups.is_empty() => {
                let (&group, state) = model
                    .groups
                    .iter()
                    .collect::<Vec<_>>()
                    .choose(rng)
                    .copied()
                    .unwrap();
                let members: Vec<&String> = state.members.iter().collect();
                let from = if rng.random_bool(0.9) && !members.is_empty() {
                    members.choose(rng).unwrap().to_string()
                } else {
                    pick(rng)
                };
                let expect = if group_pending(group) {
                    Expect::Anything
                } else if !state.dissolved && state.members.contains(&from) {
                    Expect::Stored
                } else {
                    Expect::Refused
                };
                let cmid = model.cmid();
                (Op::GroupSend { from, group, cmid }, expect)
            }
            55..60 => {
                let owner = pick(rng);
                let n = rng.random_range(1..USERS.len());
                let members: Vec<String> = USERS
                    .choose_multiple(rng, n)
                    .filter(|u| **u != owner)
                    .map(|u| u.to_string())
                    .collect();
                (Op::CreateGroup { owner, members }, Expect::Anything)
            }
            60..66 if !model.groups.is_empty() => {
                let (&group, state) = model
                    .groups
                    .iter()
                    .collect::<Vec<_>>()
                    .choose(rng)
                    .copied()
                    .unwrap();
                // One change per group at a time: answers may arrive out of commit order, and
                // the model keeps the state the last answer reported.
                if group_pending(group) {
                    return Some(cursor(model, rng));
                }
                let actor = state.owner.clone();
                let users = vec![pick(rng)];
                if rng.random_bool(0.5) {
                    (
                        Op::AddMembers {
                            group,
                            actor,
                            users,
                        },
                        Expect::Anything,
                    )
                } else {
                    (
                        Op::RemoveMembers {
                            group,
                            actor,
                            users,
                        },
                        Expect::Anything,
                    )
                }
            }
            66..72 if !model.sends.is_empty() => {
                // A retry of an acknowledged send: the original answer, nothing new stored.
                let keys: Vec<&(String, String)> = model.sends.keys().collect();
                let (from, cmid) = (*keys.choose(rng).unwrap()).clone();
                let (target, id) = model.sends[&(from.clone(), cmid.clone())].clone();
                let op = match target {
                    Target::User(to) => Op::Send { from, to, cmid },
                    Target::Group(group) => Op::GroupSend { from, group, cmid },
                };
                (op, Expect::Duplicate(id))
            }
            72..76 if !model.sends.is_empty() => {
                let ids: Vec<u64> = model.sends.values().map(|(_, id)| *id).collect();
                let message = *ids.choose(rng).unwrap();
                let actor = model.messages[&message].sender.clone();
                (Op::Recall { actor, message }, Expect::Anything)
            }
            76..82 if !model.directs.is_empty() => {
                let conversation = model
                    .directs
                    .iter()
                    .collect::<Vec<_>>()
                    .choose(rng)
                    .unwrap()
                    .to_string();
                let user = conversation
                    .split(':')
                    .nth(rng.random_range(1..3))
                    .unwrap()
                    .to_owned();
                let seq = if rng.random_bool(0.5) {
                    0
                } else {
                    rng.random_range(1..20)
                };
                if rng.random_bool(0.8) {
                    (
                        Op::MarkRead {
                            user,
                            conversation,
                            seq,
                        },
                        Expect::Anything,
                    )
                } else {
                    let pinned = rng.random_bool(0.5);
                    (
                        Op::Pin {
                            user,
                            conversation,
                            pinned,
                        },
                        Expect::Anything,
                    )
                }
            }
            82..90 => {
                let actor = pick(rng);
                let mut other = pick(rng);
                while other == actor {
                    other = pick(rng);
                }
                if social_pending(&actor, &other) {
                    return Some(cursor(model, rng));
                }
                let change = match rng.random_range(0..5) {
                    0 => Social::Request(other),
                    1 => Social::Accept(other),
                    2 => Social::Unfriend(other),
                    3 => Social::Block(other),
                    _ => Social::Unblock(other),
                };
                (Op::Social { actor, change }, Expect::Anything)
            }
            _ => cursor(model, rng),
        })
    }
}

/// A device saving a cursor at or below its user's inbox head.
fn cursor(model: &Model, rng: &mut StdRng) -> (Op, Expect) {
    let user = USERS.choose(rng).unwrap().to_string();
    let device = ["d0", "d1"].choose(rng).unwrap().to_string();
    let seq = rng.random_range(0..=model.inbox_head(&user));
    (Op::Cursor { user, device, seq }, Expect::Anything)
}

/// Runs `rounds` of random writes of every kind from `seed` over one fresh location.
pub fn run_seed(
    test: &str,
    location: &str,
    settings: &str,
    seed: u64,
    rounds: usize,
) -> Result<(), String> {
    run(
        test,
        location,
        settings,
        seed,
        rounds,
        &mut RandomWorkload { budget: 0 },
    )
    .map_err(|e| format!("seed {seed} ({settings}): {e}"))
}

/// A scripted run: each round's writes in order, then a kill right after the last ack.
#[derive(Debug)]
pub struct Script {
    /// Each round's writes, and how many may be in flight at once.
    rounds: Vec<(Vec<Op>, usize)>,
}

impl Workload for Script {
    fn kill(&mut self, _round: usize, _rng: &mut StdRng) -> Kill {
        Kill::WhenDone
    }

    fn window(&mut self, round: usize, _rng: &mut StdRng) -> usize {
        self.rounds[round].1
    }

    fn next(
        &mut self,
        round: usize,
        _model: &mut Model,
        pending: &[Op],
        _rng: &mut StdRng,
    ) -> Option<(Op, Expect)> {
        // A wait is a barrier: nothing is issued beside it.
        if pending.iter().any(|op| matches!(op, Op::Wait { .. })) {
            return None;
        }
        let ops = &mut self.rounds[round].0;
        if ops.is_empty() {
            return None;
        }
        if matches!(ops[0], Op::Wait { .. }) && !pending.is_empty() {
            return None;
        }
        let op = ops.remove(0);
        let expect = match op {
            Op::Send { .. } => Expect::Stored,
            _ => Expect::Anything,
        };
        Some((op, expect))
    }
}

fn sends(from: &str, to: &str, range: std::ops::Range<usize>) -> Vec<Op> {
    range
        .map(|i| Op::Send {
            from: from.into(),
            to: to.into(),
            cmid: format!("{from}-{i}"),
        })
        .collect()
}

/// Runs a script over one fresh location: each round's writes, then a kill right after the
/// last ack, and a last restart that only checks.
pub fn run_script(
    test: &str,
    location: &str,
    settings: &str,
    mut script: Script,
) -> Result<(), String> {
    let rounds = script.rounds.len();
    run(test, location, settings, 0, rounds, &mut script)
}

/// The script of a regression the SQLite store had: after a crash, the recovered tail was
/// indexed and its `inbox_log` rows deleted; the emptied table then handed out row ids from 1
/// again, below the index file's persisted release mark, so the next recovery deleted the new,
/// unindexed rows as if indexed. The receiver's inbox lost them, and their seqs went to new
/// messages. Every backend runs it: 300 sends killed right after the last ack, a restart, a
/// cursor and 300 more, another kill, 300 more.
pub fn sends_across_restarts() -> Script {
    let register: Vec<Op> = USERS[..2]
        .iter()
        .map(|u| Op::Register {
            user: u.to_string(),
        })
        .collect();
    Script {
        rounds: vec![
            // 300 sends, 32 in flight; killed before the SQLite indexer's first pass.
            (
                [
                    register,
                    vec![Op::Wait { ms: 0 }],
                    sends("u0", "u1", 0..300),
                ]
                .concat(),
                32,
            ),
            // The SQLite restart indexes the recovered tail at once; a write with no inbox
            // entry then releases every inbox_log row; 300 more sends, and the receiver's cursor.
            (
                [
                    vec![
                        Op::Wait { ms: 300 },
                        Op::Cursor {
                            user: "u1".into(),
                            device: "d0".into(),
                            seq: 300,
                        },
                        Op::Wait { ms: 0 },
                    ],
                    sends("u0", "u1", 300..600),
                ]
                .concat(),
                32,
            ),
            (sends("u0", "u1", 600..900), 32),
        ],
    }
}
