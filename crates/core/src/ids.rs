//! Identifiers: users, devices, conversations, messages and connections, validated on entry.

use std::{fmt, sync::Arc};

use crate::ServiceError;

/// The longest user id or device id, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// A registered user's id: 1 to 64 characters from `[A-Za-z0-9_.@-]`.
///
/// The character set leaves `:` free so that conversation ids can be built from user ids
/// without escaping. Cloning is cheap: the string is shared.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(Arc<str>);

impl UserId {
    /// Validates `s` as a user id.
    pub fn parse(s: &str) -> Result<Self, ServiceError> {
        if valid_id(s, |c| {
            c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '-')
        }) {
            Ok(UserId(Arc::from(s)))
        } else {
            Err(ServiceError::InvalidUserId)
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({})", self.0)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A device's id, chosen by the client and stable per installation: 1 to 64 characters from
/// `[A-Za-z0-9_.:-]`. Each device of a user has its own sync cursor.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(Arc<str>);

impl DeviceId {
    /// Validates `s` as a device id.
    pub fn parse(s: &str) -> Result<Self, ServiceError> {
        if valid_id(s, |c| {
            c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')
        }) {
            Ok(DeviceId(Arc::from(s)))
        } else {
            Err(ServiceError::InvalidDevice)
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({})", self.0)
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn valid_id(s: &str, allowed: impl Fn(char) -> bool) -> bool {
    !s.is_empty() && s.len() <= MAX_ID_LEN && s.chars().all(allowed)
}

/// The kind of device a connection comes from; the kick policy works per platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Platform {
    /// The client did not say.
    Unspecified,
    /// An iPhone or iPad app.
    Ios,
    /// An Android app.
    Android,
    /// A browser.
    Web,
    /// A desktop app.
    Desktop,
    /// The command line.
    Cli,
}

impl Platform {
    /// A short lowercase name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Unspecified => "unspecified",
            Platform::Ios => "ios",
            Platform::Android => "android",
            Platform::Web => "web",
            Platform::Desktop => "desktop",
            Platform::Cli => "cli",
        }
    }

    /// The platform for a stored name; unknown names count as unspecified.
    pub fn from_name(s: &str) -> Platform {
        match s {
            "ios" => Platform::Ios,
            "android" => Platform::Android,
            "web" => Platform::Web,
            "desktop" => Platform::Desktop,
            "cli" => Platform::Cli,
            _ => Platform::Unspecified,
        }
    }
}

/// The id of a conversation: `p:{a}:{b}` for the one-to-one conversation of users `a` and `b`
/// (the smaller id first, bytewise), so both sides derive the same id without a lookup, and
/// `g:{id}` for the timeline of group `id`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConversationId(Arc<str>);

/// What a conversation id names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConversationKind {
    /// The one-to-one conversation of two users (possibly the same user twice: notes to self).
    Direct(UserId, UserId),
    /// A group's timeline; who takes part is the group's membership.
    Group(GroupId),
    /// A user's notice timeline (`u:{user}`): read marks and list flags that the user's devices
    /// (and, for read receipts, peers) learn through their inboxes. Only the user reads it.
    Notices(UserId),
}

impl ConversationId {
    /// The one-to-one conversation of `a` and `b`, in either order.
    pub fn direct(a: &UserId, b: &UserId) -> Self {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        ConversationId(Arc::from(format!("p:{lo}:{hi}")))
    }

    /// The timeline of group `id`.
    pub fn group(id: GroupId) -> Self {
        ConversationId(Arc::from(format!("g:{}", id.0)))
    }

    /// The notice timeline of `user`.
    pub fn notices(user: &UserId) -> Self {
        ConversationId(Arc::from(format!("u:{user}")))
    }

    /// What this id names, for an id built or validated by this type.
    pub fn kind(&self) -> Result<ConversationKind, ServiceError> {
        ConversationId::parse(&self.0).map(|(_, k)| k)
    }

    /// The other user of a one-to-one conversation, seen from `me` (`me` for notes to self);
    /// `None` for other kinds or when `me` is not in it.
    pub fn peer_of(&self, me: &UserId) -> Option<UserId> {
        match self.kind() {
            Ok(ConversationKind::Direct(a, b)) if &a == me => Some(b),
            Ok(ConversationKind::Direct(a, b)) if &b == me => Some(a),
            _ => None,
        }
    }

    /// Parses and validates a conversation id from the wire.
    pub fn parse(s: &str) -> Result<(Self, ConversationKind), ServiceError> {
        let bad = || ServiceError::NotAParticipant;
        if let Some(id) = s.strip_prefix("g:") {
            // Canonical decimal only, so each group has exactly one id string.
            let id: u64 = id.parse().map_err(|_| bad())?;
            if id == 0 || s.len() != 2 + id.to_string().len() {
                return Err(bad());
            }
            return Ok((
                ConversationId(Arc::from(s)),
                ConversationKind::Group(GroupId(id)),
            ));
        }
        if let Some(user) = s.strip_prefix("u:") {
            let user = UserId::parse(user).map_err(|_| bad())?;
            return Ok((
                ConversationId(Arc::from(s)),
                ConversationKind::Notices(user),
            ));
        }
        let rest = s.strip_prefix("p:").ok_or_else(bad)?;
        let (a, b) = rest.split_once(':').ok_or_else(bad)?;
        let (a, b) = (
            UserId::parse(a).map_err(|_| bad())?,
            UserId::parse(b).map_err(|_| bad())?,
        );
        if a > b {
            return Err(bad());
        }
        Ok((ConversationId(Arc::from(s)), ConversationKind::Direct(a, b)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Rebuilds an id read back from storage, where it was validated on the way in.
    pub fn from_stored(s: &str) -> Self {
        ConversationId(Arc::from(s))
    }
}

impl fmt::Debug for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConversationId({})", self.0)
    }
}

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A group's server-assigned id (from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(pub u64);

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A stored message's server-assigned id, unique across all conversations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub u64);

/// A node of a deployment: one Tern process that holds connections. A single server is one
/// node; in a cluster each node has its own (configured, or drawn at boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(u32);

impl NodeId {
    /// The largest node id: node ids take the top 24 bits of a [`ConnectionId`].
    pub const MAX: u32 = (1 << 24) - 1;

    /// A node id; `None` above [`NodeId::MAX`].
    pub fn new(id: u32) -> Option<NodeId> {
        (id <= Self::MAX).then_some(NodeId(id))
    }

    /// A node id drawn at random, for a node that was given none.
    pub fn random() -> NodeId {
        NodeId(rand::random::<u32>() & Self::MAX)
    }

    /// The number.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A live connection, named across a deployment: the node that holds it and its number there.
/// Fan-out uses it to skip the connection a message came from, wherever that connection is.
///
/// Both parts fit one `u64` (24 bits of node, 40 of connection), so the id costs what a plain
/// counter did in every connection's state and every registry entry.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(u64);

impl ConnectionId {
    const LOCAL_BITS: u32 = 40;

    /// The `local`-th connection of `node` (`local` wraps after 2^40 connections).
    pub fn new(node: NodeId, local: u64) -> ConnectionId {
        ConnectionId(
            (u64::from(node.0) << Self::LOCAL_BITS) | (local & ((1 << Self::LOCAL_BITS) - 1)),
        )
    }

    /// The node that holds the connection.
    pub fn node(self) -> NodeId {
        NodeId((self.0 >> Self::LOCAL_BITS) as u32)
    }

    /// Its number on that node.
    pub fn local(self) -> u64 {
        self.0 & ((1 << Self::LOCAL_BITS) - 1)
    }

    /// Node and number in one `u64`, as another node is told it.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The connection [`ConnectionId::get`] gave `raw` for.
    pub fn from_u64(raw: u64) -> ConnectionId {
        ConnectionId(raw)
    }
}

impl std::fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.node(), self.local())
    }
}

impl std::fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConnectionId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_accept_the_documented_characters_only() {
        assert!(UserId::parse("alice.b-2@x_y").is_ok());
        for bad in ["", "a:b", "a b", "ä", &"x".repeat(65)] {
            assert!(UserId::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(UserId::parse(&"x".repeat(64)).is_ok());
    }

    #[test]
    fn direct_conversation_ids_do_not_depend_on_order() {
        let (a, b) = (
            UserId::parse("bob").unwrap(),
            UserId::parse("alice").unwrap(),
        );
        let id = ConversationId::direct(&a, &b);
        assert_eq!(id, ConversationId::direct(&b, &a));
        assert_eq!(id.as_str(), "p:alice:bob");
        let (parsed, kind) = ConversationId::parse("p:alice:bob").unwrap();
        assert_eq!(parsed, id);
        assert_eq!(kind, ConversationKind::Direct(b, a));
        assert!(
            ConversationId::parse("p:bob:alice").is_err(),
            "non-canonical order"
        );
        let (g, kind) = ConversationId::parse("g:12").unwrap();
        assert_eq!(g, ConversationId::group(GroupId(12)));
        assert_eq!(kind, ConversationKind::Group(GroupId(12)));
        for bad in ["g:0", "g:012", "g:+1", "g:", "g:1a", "g:-1"] {
            assert!(ConversationId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
