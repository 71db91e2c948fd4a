//! What one node tells the others over Redis: a committed batch's publications and the
//! ephemeral signals, as one protobuf envelope per batch.
//!
//! The envelope is internal to a deployment (every node runs the same binary during a rolling
//! restart only briefly), but it is still protobuf so that a field added later is skipped by an
//! older node rather than breaking it. A message that reaches several inboxes in one batch is
//! carried once and referred to by index.
//!
//! A large group's member list is carried once per change: the sender numbers each list it
//! sends for a group ([`MemberLists`]) and afterwards refers to it by that number; receivers keep
//! the lists they saw ([`KnownMembers`]). A receiver that lacks one (it missed the envelope)
//! cannot tell which of its connections are members, and has them all sync instead.

use std::sync::Arc;

use tern_core::{
    ConnectionId, ConversationId, DeviceId, MessageId, NodeId, Platform, UserId,
    content::Content,
    groups::{Member, Members, Role},
    pb,
    presence::DevicePresence,
    store::{InboxEntry, InboxEvent, StoredMessage},
    sync::{KickCause, Publication},
};

/// One node's word to the others.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Envelope {
    /// The node that sent it; a node skips its own envelopes.
    #[prost(uint32, tag = "1")]
    pub node: u32,
    /// The sender's boot epoch (Unix ms when it started).
    #[prost(uint64, tag = "2")]
    pub epoch: u64,
    /// The messages the items refer to.
    #[prost(message, repeated, tag = "3")]
    pub messages: Vec<WireMessage>,
    /// What happened, in order.
    #[prost(message, repeated, tag = "4")]
    pub items: Vec<Item>,
}

/// A stored message, complete (the client-facing `Message` lacks the sender's inbox seq).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireMessage {
    #[prost(message, optional, tag = "1")]
    pub message: Option<pb::Message>,
    #[prost(uint64, tag = "2")]
    pub sender_inbox_seq: u64,
}

/// One thing the envelope says.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Item {
    #[prost(oneof = "Kind", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9")]
    pub kind: Option<Kind>,
}

/// The kinds of item.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Kind {
    /// A new inbox entry.
    #[prost(message, tag = "1")]
    Entry(EntryItem),
    /// A read-diffusion group message for the members online.
    #[prost(message, tag = "2")]
    Group(GroupItem),
    /// Someone is typing.
    #[prost(message, tag = "3")]
    Typing(TypingItem),
    /// A device logged in: other nodes close the connections it replaces.
    #[prost(message, tag = "4")]
    Login(LoginItem),
    /// The sender may have failed to publish something: every node tells its connections to
    /// sync.
    #[prost(message, tag = "5")]
    Resync(ResyncItem),
    /// A connection of the sender ended.
    #[prost(message, tag = "6")]
    Logout(LogoutItem),
    /// Every device connected to the sender now.
    #[prost(message, tag = "7")]
    Snapshot(SnapshotItem),
    /// The sender (re)joined: every node answers with its snapshot.
    #[prost(message, tag = "8")]
    Hello(HelloItem),
    /// An administrator disconnected a user's device (or all of them).
    #[prost(message, tag = "9")]
    Kick(KickItem),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct KickItem {
    #[prost(string, tag = "1")]
    pub user: String,
    /// Empty: every device.
    #[prost(string, tag = "2")]
    pub device: String,
    /// 1: logged out, 2: disabled.
    #[prost(uint32, tag = "3")]
    pub cause: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LogoutItem {
    #[prost(string, tag = "1")]
    pub user: String,
    #[prost(uint64, tag = "2")]
    pub connection: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SnapshotItem {
    #[prost(message, repeated, tag = "1")]
    pub devices: Vec<LoginItem>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloItem {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EntryItem {
    #[prost(string, tag = "1")]
    pub user: String,
    #[prost(uint64, tag = "2")]
    pub seq: u64,
    /// Index into the envelope's messages.
    #[prost(uint32, tag = "3")]
    pub message: u32,
    /// The connection not to push it to (0: none).
    #[prost(uint64, tag = "4")]
    pub skip: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GroupItem {
    #[prost(uint32, tag = "1")]
    pub message: u32,
    /// The members when the message took its seq.
    #[prost(string, repeated, tag = "2")]
    pub members: Vec<String>,
    /// Members that got an inbox entry instead, sorted.
    #[prost(string, repeated, tag = "3")]
    pub except: Vec<String>,
    #[prost(uint64, tag = "4")]
    pub skip: u64,
    /// 0: `members` is the list, used once. Otherwise the number of the sender's list for this
    /// group: given with `members` the first time, and alone while the list is unchanged.
    #[prost(uint64, tag = "5")]
    pub members_list: u64,
}

/// Lists above this many members are numbered and sent once per change.
const INLINE_MEMBERS: usize = 64;

/// The sender's side: the member list last sent for each large group, and its number.
#[derive(Debug, Default)]
pub struct MemberLists {
    sent: std::collections::HashMap<ConversationId, (Arc<Members>, u64)>,
    next: u64,
}

impl MemberLists {
    /// The number of `members` for `conversation`, and whether the list must go with it.
    /// Members are shared while a group does not change, so the same allocation means the
    /// same list; the entry keeps it alive, so an address is never reused for another.
    fn number(&mut self, conversation: &ConversationId, members: &Arc<Members>) -> (u64, bool) {
        if members.len() <= INLINE_MEMBERS {
            return (0, true);
        }
        if let Some((sent, n)) = self.sent.get(conversation)
            && Arc::ptr_eq(sent, members)
        {
            return (*n, false);
        }
        self.next += 1;
        self.sent
            .insert(conversation.clone(), (members.clone(), self.next));
        (self.next, true)
    }

    /// Sends every list again from now on (a node missed envelopes, or joined).
    pub fn forget(&mut self) {
        self.sent.clear();
    }
}

/// The receiver's side: lists other nodes numbered, by node, boot and group.
#[derive(Debug)]
pub struct KnownMembers {
    lists: lru::LruCache<(u32, u64, ConversationId), (u64, Arc<Members>)>,
}

impl Default for KnownMembers {
    fn default() -> Self {
        Self {
            lists: lru::LruCache::new(
                std::num::NonZeroUsize::new(4096).unwrap_or(std::num::NonZeroUsize::MIN),
            ),
        }
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TypingItem {
    #[prost(string, tag = "1")]
    pub to: String,
    #[prost(string, tag = "2")]
    pub from: String,
    #[prost(string, tag = "3")]
    pub conversation: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LoginItem {
    #[prost(string, tag = "1")]
    pub user: String,
    #[prost(string, tag = "2")]
    pub device: String,
    #[prost(int32, tag = "3")]
    pub platform: i32,
    /// The new connection, which stays.
    #[prost(uint64, tag = "4")]
    pub connection: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ResyncItem {}

/// A change to a node's connection registry in Redis.
#[derive(Debug, Clone, PartialEq)]
pub enum RegistryChange {
    /// A connection logged in.
    Set(u64, String),
    /// A connection ended.
    Remove(u64),
    /// These are all the node's connections.
    Replace(Vec<(u64, String)>),
}

/// What a received envelope asks of this node, in order.
#[derive(Debug)]
pub enum Received {
    /// Publications to hand to the local fan-out.
    Published(Vec<Publication>),
    /// A typing notice.
    Typing {
        to: UserId,
        from: UserId,
        conversation: ConversationId,
    },
    /// A login elsewhere.
    Login {
        user: UserId,
        device: DeviceId,
        platform: Platform,
        connection: ConnectionId,
    },
    /// Tell every connection to sync.
    Resync,
    /// Disconnect a user's device (or all of them).
    Kick {
        user: UserId,
        device: Option<DeviceId>,
        cause: KickCause,
    },
    /// A connection on the sending node ended.
    Logout {
        user: UserId,
        connection: ConnectionId,
    },
    /// The sending node's devices, all of them.
    Snapshot {
        node: NodeId,
        devices: Vec<DevicePresence>,
    },
    /// The sending node asks for every node's snapshot.
    Hello,
}

/// Why an envelope could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// Not a valid envelope.
    #[error("cannot decode an envelope: {0}")]
    Decode(#[from] prost::DecodeError),
    /// A field holds what no node would have sent.
    #[error("invalid envelope: {0}")]
    Invalid(String),
}

impl Envelope {
    /// An empty envelope from `node`.
    pub fn new(node: NodeId, epoch: u64) -> Envelope {
        Envelope {
            node: node.get(),
            epoch,
            messages: Vec::new(),
            items: Vec::new(),
        }
    }

    /// Adds a committed batch's publications, each message once, and each large group's
    /// member list only when `lists` says it changed.
    pub fn publish(&mut self, published: &[Publication], lists: &mut MemberLists) {
        let mut last: Option<(MessageId, u32)> = None;
        for p in published {
            let message = match p {
                Publication::Entry { entry, .. } => {
                    let InboxEvent::Message(m) = &entry.event;
                    m
                }
                Publication::Group { message, .. } => message,
            };
            // A batch lists a message's inbox entries together, so remembering the last one
            // shares it without a map.
            let index = match last {
                Some((id, i)) if id == message.id => i,
                _ => {
                    let i = self.messages.len() as u32;
                    self.messages.push(WireMessage {
                        message: Some(tern_api::wire::message_to_wire(message)),
                        sender_inbox_seq: message.sender_inbox_seq,
                    });
                    last = Some((message.id, i));
                    i
                }
            };
            let kind = match p {
                Publication::Entry { user, entry, skip } => Kind::Entry(EntryItem {
                    user: user.to_string(),
                    seq: entry.seq,
                    message: index,
                    skip: skip.map_or(0, ConnectionId::get),
                }),
                Publication::Group {
                    message,
                    members,
                    except,
                    skip,
                } => {
                    let (members_list, with_list) = lists.number(&message.conversation, members);
                    Kind::Group(GroupItem {
                        message: index,
                        members: if with_list {
                            members.keys().map(|u| u.to_string()).collect()
                        } else {
                            Vec::new()
                        },
                        except: except.iter().map(|u| u.to_string()).collect(),
                        skip: skip.map_or(0, ConnectionId::get),
                        members_list,
                    })
                }
            };
            self.items.push(Item { kind: Some(kind) });
        }
    }

    /// Adds a typing notice.
    pub fn typing(&mut self, to: &UserId, from: &UserId, conversation: &ConversationId) {
        self.items.push(Item {
            kind: Some(Kind::Typing(TypingItem {
                to: to.to_string(),
                from: from.to_string(),
                conversation: conversation.to_string(),
            })),
        });
    }

    /// Adds a login.
    pub fn login(
        &mut self,
        user: &UserId,
        device: &DeviceId,
        platform: Platform,
        connection: ConnectionId,
    ) {
        self.items.push(Item {
            kind: Some(Kind::Login(LoginItem {
                user: user.to_string(),
                device: device.to_string(),
                platform: tern_core::wire::platform(platform),
                connection: connection.get(),
            })),
        });
    }

    /// Adds a kick of `user`'s `device` (every device: `None`).
    pub fn kick(&mut self, user: &UserId, device: Option<&DeviceId>, cause: KickCause) {
        self.items.push(Item {
            kind: Some(Kind::Kick(KickItem {
                user: user.to_string(),
                device: device.map(DeviceId::to_string).unwrap_or_default(),
                cause: match cause {
                    KickCause::LoggedOut => 1,
                    KickCause::Disabled => 2,
                },
            })),
        });
    }

    /// Adds the end of a connection.
    pub fn logout(&mut self, user: &UserId, connection: ConnectionId) {
        self.items.push(Item {
            kind: Some(Kind::Logout(LogoutItem {
                user: user.to_string(),
                connection: connection.get(),
            })),
        });
    }

    /// Adds this node's whole device list.
    pub fn snapshot(&mut self, devices: &[DevicePresence]) {
        let devices = devices
            .iter()
            .map(|d| LoginItem {
                user: d.user.to_string(),
                device: d.device.to_string(),
                platform: tern_core::wire::platform(d.platform),
                connection: d.connection.get(),
            })
            .collect();
        self.items.push(Item {
            kind: Some(Kind::Snapshot(SnapshotItem { devices })),
        });
    }

    /// Adds a request for every node's snapshot.
    pub fn hello(&mut self) {
        self.items.push(Item {
            kind: Some(Kind::Hello(HelloItem {})),
        });
    }

    /// Adds a request that every node tell its connections to sync.
    pub fn resync(&mut self) {
        self.items.push(Item {
            kind: Some(Kind::Resync(ResyncItem {})),
        });
    }

    /// The connection registry changes this envelope carries, for the sender's registry hash in
    /// Redis: each login as `(connection, Some("user device platform"))`, each close as
    /// `(connection, None)`, a whole list as `Err` with every entry.
    pub fn registry_changes(&self) -> Vec<RegistryChange> {
        let entry = |l: &LoginItem| format!("{} {} {}", l.user, l.device, l.platform);
        self.items
            .iter()
            .filter_map(|i| match &i.kind {
                Some(Kind::Login(l)) => Some(RegistryChange::Set(l.connection, entry(l))),
                Some(Kind::Logout(l)) => Some(RegistryChange::Remove(l.connection)),
                Some(Kind::Snapshot(s)) => Some(RegistryChange::Replace(
                    s.devices.iter().map(|l| (l.connection, entry(l))).collect(),
                )),
                _ => None,
            })
            .collect()
    }

    /// Whether it says nothing.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The envelope's bytes.
    pub fn encode(&self) -> Vec<u8> {
        prost::Message::encode_to_vec(self)
    }

    /// Reads an envelope.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        Ok(<Envelope as prost::Message>::decode(bytes)?)
    }

    /// What the envelope asks of a node, in order; consecutive publications stay together.
    /// Member lists it numbers are kept in `known`; a group message whose list is not known
    /// becomes a [`Received::Resync`].
    pub fn into_received(self, known: &mut KnownMembers) -> Result<Vec<Received>, EnvelopeError> {
        let (origin, epoch) = (self.node, self.epoch);
        let messages = self
            .messages
            .into_iter()
            .map(|m| message_from_wire(m).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let message = |i: u32| {
            messages
                .get(i as usize)
                .cloned()
                .ok_or_else(|| EnvelopeError::Invalid(format!("no message {i}")))
        };
        let node = NodeId::new(self.node)
            .ok_or_else(|| EnvelopeError::Invalid(format!("node id {}", self.node)))?;
        let mut out: Vec<Received> = Vec::new();
        for item in self.items {
            let Some(kind) = item.kind else {
                // An item of a kind a newer node added: nothing this node can do with it.
                continue;
            };
            let publication = match kind {
                Kind::Entry(e) => Publication::Entry {
                    user: user(&e.user)?,
                    entry: Arc::new(InboxEntry {
                        seq: e.seq,
                        event: InboxEvent::Message(message(e.message)?),
                    }),
                    skip: connection(e.skip),
                },
                Kind::Group(g) => {
                    let message = message(g.message)?;
                    let key = (origin, epoch, message.conversation.clone());
                    let members = if g.members_list != 0 && g.members.is_empty() {
                        match known.lists.get(&key) {
                            Some((n, list)) if *n == g.members_list => list.clone(),
                            _ => {
                                tracing::debug!(conversation = %message.conversation, "a group's member list was missed; connections sync");
                                out.push(Received::Resync);
                                continue;
                            }
                        }
                    } else {
                        let mut members = Members::default();
                        for m in &g.members {
                            // Fan-out reads only who the members are.
                            members.insert(
                                user(m)?,
                                Member {
                                    role: Role::Member,
                                    joined_seq: 0,
                                    muted_until_ms: 0,
                                },
                            );
                        }
                        let members = Arc::new(members);
                        if g.members_list != 0 {
                            known.lists.put(key, (g.members_list, members.clone()));
                        }
                        members
                    };
                    Publication::Group {
                        message,
                        members,
                        except: g.except.iter().map(|u| user(u)).collect::<Result<_, _>>()?,
                        skip: connection(g.skip),
                    }
                }
                Kind::Typing(t) => {
                    let (conversation, _) = ConversationId::parse(&t.conversation)
                        .map_err(|e| EnvelopeError::Invalid(e.to_string()))?;
                    out.push(Received::Typing {
                        to: user(&t.to)?,
                        from: user(&t.from)?,
                        conversation,
                    });
                    continue;
                }
                Kind::Kick(k) => {
                    out.push(Received::Kick {
                        user: user(&k.user)?,
                        device: if k.device.is_empty() {
                            None
                        } else {
                            Some(
                                DeviceId::parse(&k.device)
                                    .map_err(|e| EnvelopeError::Invalid(e.to_string()))?,
                            )
                        },
                        cause: match k.cause {
                            1 => KickCause::LoggedOut,
                            2 => KickCause::Disabled,
                            other => {
                                return Err(EnvelopeError::Invalid(format!(
                                    "unknown kick cause {other}"
                                )));
                            }
                        },
                    });
                    continue;
                }
                Kind::Login(l) => {
                    out.push(Received::Login {
                        user: user(&l.user)?,
                        device: DeviceId::parse(&l.device)
                            .map_err(|e| EnvelopeError::Invalid(e.to_string()))?,
                        platform: tern_core::wire::platform_of(l.platform),
                        connection: ConnectionId::from_u64(l.connection),
                    });
                    continue;
                }
                Kind::Resync(_) => {
                    out.push(Received::Resync);
                    continue;
                }
                Kind::Logout(l) => {
                    out.push(Received::Logout {
                        user: user(&l.user)?,
                        connection: ConnectionId::from_u64(l.connection),
                    });
                    continue;
                }
                Kind::Snapshot(s) => {
                    let devices = s
                        .devices
                        .into_iter()
                        .map(|d| {
                            Ok(DevicePresence {
                                user: user(&d.user)?,
                                connection: ConnectionId::from_u64(d.connection),
                                device: DeviceId::parse(&d.device)
                                    .map_err(|e| EnvelopeError::Invalid(e.to_string()))?,
                                platform: tern_core::wire::platform_of(d.platform),
                            })
                        })
                        .collect::<Result<_, EnvelopeError>>()?;
                    out.push(Received::Snapshot { node, devices });
                    continue;
                }
                Kind::Hello(_) => {
                    out.push(Received::Hello);
                    continue;
                }
            };
            match out.last_mut() {
                Some(Received::Published(p)) => p.push(publication),
                _ => out.push(Received::Published(vec![publication])),
            }
        }
        Ok(out)
    }
}

fn user(s: &str) -> Result<UserId, EnvelopeError> {
    UserId::parse(s).map_err(|e| EnvelopeError::Invalid(e.to_string()))
}

fn connection(raw: u64) -> Option<ConnectionId> {
    (raw != 0).then(|| ConnectionId::from_u64(raw))
}

/// The stored message a [`WireMessage`] carries.
fn message_from_wire(w: WireMessage) -> Result<StoredMessage, EnvelopeError> {
    let m = w
        .message
        .ok_or_else(|| EnvelopeError::Invalid("a message without its fields".into()))?;
    let (conversation, _) = ConversationId::parse(&m.conversation_id)
        .map_err(|e| EnvelopeError::Invalid(e.to_string()))?;
    Ok(StoredMessage {
        id: MessageId(m.message_id),
        conversation,
        seq: m.seq,
        sender: user(&m.sender)?,
        client_msg_id: m.client_msg_id,
        server_time_ms: m.server_time_ms,
        sender_inbox_seq: w.sender_inbox_seq,
        // A recalled message keeps no content.
        content: match m.content {
            Some(c) => {
                tern_core::wire::content_of(c).map_err(|e| EnvelopeError::Invalid(e.to_string()))?
            }
            None => Content::Empty,
        },
        recalled_by: if m.recalled {
            Some(user(&m.recalled_by)?)
        } else {
            None
        },
        edited_ms: m.edited_at_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    fn message(id: u64, recalled: bool) -> Arc<StoredMessage> {
        Arc::new(StoredMessage {
            id: MessageId(id),
            conversation: ConversationId::direct(&u("a"), &u("b")),
            seq: id,
            sender: u("a"),
            client_msg_id: format!("c{id}"),
            server_time_ms: 1_700_000_000_000,
            sender_inbox_seq: 40 + id,
            content: if recalled {
                Content::Empty
            } else {
                Content::text("hi")
            },
            recalled_by: recalled.then(|| u("a")),
            edited_ms: 7,
        })
    }

    #[test]
    fn publications_survive_the_trip_and_share_their_message() {
        let node = NodeId::new(9).unwrap();
        let m = message(1, false);
        let r = message(2, true);
        let entry = |user: &str, seq, m: &Arc<StoredMessage>, skip| Publication::Entry {
            user: u(user),
            entry: Arc::new(InboxEntry {
                seq,
                event: InboxEvent::Message(m.clone()),
            }),
            skip,
        };
        let mut members = Members::default();
        for who in ["a", "b", "c"] {
            members.insert(
                u(who),
                Member {
                    role: Role::Member,
                    joined_seq: 0,
                    muted_until_ms: 0,
                },
            );
        }
        let published = vec![
            entry("a", 3, &m, Some(ConnectionId::new(node, 5))),
            entry("b", 8, &m, None),
            entry("b", 9, &r, None),
            Publication::Group {
                message: r.clone(),
                members: Arc::new(members),
                except: vec![u("b")],
                skip: None,
            },
        ];
        let mut envelope = Envelope::new(node, 11);
        envelope.publish(&published, &mut MemberLists::default());
        envelope.typing(&u("b"), &u("a"), &m.conversation);
        assert_eq!(envelope.messages.len(), 2, "each message is carried once");
        let back = Envelope::decode(&envelope.encode()).unwrap();
        assert_eq!((back.node, back.epoch), (9, 11));
        let received = back.into_received(&mut KnownMembers::default()).unwrap();
        assert_eq!(received.len(), 2);
        let Received::Published(p) = &received[0] else {
            panic!("publications first: {received:?}")
        };
        assert_eq!(p.len(), 4);
        match (&p[0], &published[0]) {
            (
                Publication::Entry { user, entry, skip },
                Publication::Entry {
                    user: u0,
                    entry: e0,
                    skip: s0,
                },
            ) => {
                assert_eq!((user, entry, skip), (u0, e0, s0));
            }
            other => panic!("{other:?}"),
        }
        let Publication::Entry { entry, .. } = &p[2] else {
            panic!()
        };
        assert_eq!(
            **entry,
            InboxEntry {
                seq: 9,
                event: InboxEvent::Message(r.clone())
            }
        );
        let Publication::Group {
            members, except, ..
        } = &p[3]
        else {
            panic!()
        };
        assert_eq!(members.len(), 3);
        assert_eq!(except, &vec![u("b")]);
        assert!(matches!(&received[1], Received::Typing { to, .. } if *to == u("b")));
    }

    #[test]
    fn kicks_survive_the_trip() {
        let mut e = Envelope::new(NodeId::new(2).unwrap(), 7);
        let alice = UserId::parse("alice").unwrap();
        let phone = DeviceId::parse("phone").unwrap();
        e.kick(&alice, Some(&phone), KickCause::LoggedOut);
        e.kick(&alice, None, KickCause::Disabled);
        let back = Envelope::decode(&e.encode())
            .unwrap()
            .into_received(&mut KnownMembers::default())
            .unwrap();
        match back.as_slice() {
            [
                Received::Kick {
                    user: u1,
                    device: Some(d),
                    cause: KickCause::LoggedOut,
                },
                Received::Kick {
                    user: u2,
                    device: None,
                    cause: KickCause::Disabled,
                },
            ] => assert!(*u1 == alice && *u2 == alice && *d == phone),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Envelope::decode(&[0xff, 0xff, 0xff]).is_err());
        let mut bad = Envelope::new(NodeId::new(1).unwrap(), 1);
        bad.items.push(Item {
            kind: Some(Kind::Entry(EntryItem {
                user: "a".into(),
                seq: 1,
                message: 3,
                skip: 0,
            })),
        });
        assert!(
            bad.into_received(&mut KnownMembers::default()).is_err(),
            "a missing message is refused"
        );
    }

    #[test]
    fn a_large_member_list_is_sent_once_per_change_and_a_missed_one_asks_for_a_sync() {
        let node = NodeId::new(3).unwrap();
        let group = |members: &Arc<Members>, id: u64| Publication::Group {
            message: Arc::new(StoredMessage {
                conversation: ConversationId::group(tern_core::GroupId(7)),
                ..(*message(id, false)).clone()
            }),
            members: members.clone(),
            except: Vec::new(),
            skip: None,
        };
        let big: Arc<Members> = Arc::new(
            (0..100)
                .map(|i| {
                    (
                        u(&format!("m{i}")),
                        Member {
                            role: Role::Member,
                            joined_seq: 0,
                            muted_until_ms: 0,
                        },
                    )
                })
                .collect(),
        );
        let mut lists = MemberLists::default();
        let send = |lists: &mut MemberLists, p: Publication| {
            let mut e = Envelope::new(node, 1);
            e.publish(&[p], lists);
            e
        };
        let first = send(&mut lists, group(&big, 1));
        let second = send(&mut lists, group(&big, 2));
        let group_item = |e: &Envelope| match &e.items[0].kind {
            Some(Kind::Group(g)) => g.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(group_item(&first).members.len(), 100);
        assert!(
            group_item(&second).members.is_empty(),
            "referred to, not sent again"
        );
        assert_eq!(
            group_item(&first).members_list,
            group_item(&second).members_list
        );

        // A receiver that saw the first knows the second's members.
        let mut known = KnownMembers::default();
        first.clone().into_received(&mut known).unwrap();
        match &second.clone().into_received(&mut known).unwrap()[0] {
            Received::Published(p) => match &p[0] {
                Publication::Group { members, .. } => assert_eq!(members.len(), 100),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
        // One that missed it has its connections sync.
        let fresh = second.into_received(&mut KnownMembers::default()).unwrap();
        assert!(matches!(fresh[0], Received::Resync));
        // After a forget, the list goes again.
        lists.forget();
        assert_eq!(
            group_item(&send(&mut lists, group(&big, 3))).members.len(),
            100
        );
    }
}
