//! The numbers every store writes for domain enums, one table for all backends (so a dump moves
//! between them). They are the stores' own, never borrowed from the wire protocol: a protocol
//! enum may be renumbered in a new protocol version, and stored data must not change meaning
//! with it. The values happen to match version 1's wire numbers, which is what the columns held
//! before they were defined here, so no migration was needed.

pub mod content;

use crate::{
    groups::{HistoryVisibility, Role},
    social::StrangerPolicy,
};

/// `group_members.role`: 1 member, 2 admin, 3 owner.
pub fn role(r: Role) -> i64 {
    match r {
        Role::Member => 1,
        Role::Admin => 2,
        Role::Owner => 3,
    }
}

/// The role stored as `code`; `None` for a number this store never writes.
pub fn role_of(code: i64) -> Option<Role> {
    match code {
        1 => Some(Role::Member),
        2 => Some(Role::Admin),
        3 => Some(Role::Owner),
        _ => None,
    }
}

/// `groups.history`: 0 from join, 1 full.
pub fn history(h: HistoryVisibility) -> i64 {
    match h {
        HistoryVisibility::FromJoin => 0,
        HistoryVisibility::Full => 1,
    }
}

/// The history visibility stored as `code`.
pub fn history_of(code: i64) -> Option<HistoryVisibility> {
    match code {
        0 => Some(HistoryVisibility::FromJoin),
        1 => Some(HistoryVisibility::Full),
        _ => None,
    }
}

/// `profiles.stranger_policy`: 0 anyone, 1 friends only.
pub fn policy(p: StrangerPolicy) -> i64 {
    match p {
        StrangerPolicy::Anyone => 0,
        StrangerPolicy::FriendsOnly => 1,
    }
}

/// The policy stored as `code` (an unknown number reads as the default, as it always has).
pub fn policy_of(code: i64) -> StrangerPolicy {
    match code {
        1 => StrangerPolicy::FriendsOnly,
        _ => StrangerPolicy::Anyone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stored numbers are forever: this test fails if one changes.
    #[test]
    fn stored_numbers_do_not_change() {
        assert_eq!(
            [Role::Member, Role::Admin, Role::Owner].map(role),
            [1, 2, 3]
        );
        assert_eq!(
            [HistoryVisibility::FromJoin, HistoryVisibility::Full].map(history),
            [0, 1]
        );
        assert_eq!(
            [StrangerPolicy::Anyone, StrangerPolicy::FriendsOnly].map(policy),
            [0, 1]
        );
        for code in 0..5 {
            if let Some(r) = role_of(code) {
                assert_eq!(role(r), code);
            }
            if let Some(h) = history_of(code) {
                assert_eq!(history(h), code);
            }
        }
    }
}
