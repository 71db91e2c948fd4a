//! Following group timelines: each group's messages reach the app exactly once, in seq order,
//! whichever way they arrive.
//!
//! A group message arrives as an inbox entry (small groups, write diffusion), as a group push
//! (large groups, read diffusion), or from a HISTORY pull; a group that crosses the server's
//! threshold switches between the first two. The tracker does not care: it keeps one position
//! per group (every seq up to it was handed over), hands over a message that continues it,
//! ignores one at or below it, and holds one beyond it until a pull fills the gap.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tern_proto::pb;

/// One group's progress.
#[derive(Debug, Default)]
struct Track {
    /// Every seq up to here was handed over; `None` until the group's start is known.
    pos: Option<u64>,
    /// Seqs of this client's own sends (known from their acks) not yet passed.
    own: BTreeSet<u64>,
    /// Messages beyond a gap, with whether each is this client's own.
    held: BTreeMap<u64, (pb::Message, bool)>,
}

/// The positions of every group this client follows.
#[derive(Debug, Default)]
pub(crate) struct GroupTracker {
    groups: HashMap<String, Track>,
}

impl GroupTracker {
    /// Sets a group's starting position if it has none yet (from the persisted position, or
    /// from where the member may start reading), then hands over whatever that releases.
    pub(crate) fn start(&mut self, conversation: &str, pos: u64, out: &mut Vec<pb::Message>) {
        let track = self.groups.entry(conversation.to_owned()).or_default();
        if track.pos.is_none() {
            track.pos = Some(pos);
            release(track, out);
        }
    }

    /// The position of a group, if it is known.
    pub(crate) fn position(&self, conversation: &str) -> Option<u64> {
        self.groups.get(conversation).and_then(|t| t.pos)
    }

    /// Offers a message; what continues the position lands in `out`. Returns `true` when a
    /// gap (or an unknown start) means the group must be pulled.
    pub(crate) fn offer(
        &mut self,
        message: pb::Message,
        own: bool,
        out: &mut Vec<pb::Message>,
    ) -> bool {
        let track = self
            .groups
            .entry(message.conversation_id.clone())
            .or_default();
        if track.pos.is_some_and(|p| message.seq <= p) {
            return false;
        }
        track.held.insert(message.seq, (message, own));
        release(track, out);
        track.pos.is_none() || !track.held.is_empty()
    }

    /// Records one of this client's own sends, acknowledged at `seq`.
    pub(crate) fn own(&mut self, conversation: &str, seq: u64, out: &mut Vec<pb::Message>) {
        let track = self.groups.entry(conversation.to_owned()).or_default();
        if track.pos.is_none_or(|p| seq > p) {
            track.own.insert(seq);
            release(track, out);
        }
    }

    /// Groups whose start is unknown or that wait for a gap to be filled.
    pub(crate) fn needing_pull(&self) -> Vec<String> {
        self.groups
            .iter()
            .filter(|(_, t)| t.pos.is_none() || !t.held.is_empty())
            .map(|(c, _)| c.clone())
            .collect()
    }

    /// Starts a group whose member view is unknown (the user is no longer a member) just
    /// before the first message held for it: a departed member's first message of a group is
    /// the event that added it.
    pub(crate) fn start_at_first_held(&mut self, conversation: &str, out: &mut Vec<pb::Message>) {
        let first = self
            .groups
            .get(conversation)
            .and_then(|t| t.held.keys().next().copied());
        self.start(conversation, first.map_or(0, |s| s - 1), out);
    }

    /// Moves a group's position up to `seq` (the server will not serve what lies between), then
    /// hands over what that releases.
    pub(crate) fn skip_to(&mut self, conversation: &str, seq: u64, out: &mut Vec<pb::Message>) {
        if let Some(track) = self.groups.get_mut(conversation)
            && let Some(pos) = track.pos
            && seq > pos
        {
            track.pos = Some(seq);
            release(track, out);
        }
    }

    /// Gives up on a gap that cannot be filled (the user is no longer a member and may not
    /// read the timeline): hands over what is held, in order.
    pub(crate) fn skip_gap(&mut self, conversation: &str, out: &mut Vec<pb::Message>) {
        if let Some(track) = self.groups.get_mut(conversation) {
            for (seq, (m, own)) in std::mem::take(&mut track.held) {
                track.pos = Some(seq);
                if !own {
                    out.push(m);
                }
            }
            if track.pos.is_none() {
                track.pos = Some(0);
            }
            let pos = track.pos.unwrap_or(0);
            track.own.retain(|s| *s > pos);
        }
    }
}

/// Moves the position over held messages and own sends that continue it.
fn release(track: &mut Track, out: &mut Vec<pb::Message>) {
    let Some(mut pos) = track.pos else {
        return;
    };
    loop {
        if let Some((m, own)) = track.held.remove(&(pos + 1)) {
            pos += 1;
            track.own.remove(&pos);
            if !own {
                out.push(m);
            }
        } else if track.own.remove(&(pos + 1)) {
            pos += 1;
        } else {
            break;
        }
    }
    // Anything at or below the position is already handed over.
    track.held = track.held.split_off(&(pos + 1));
    track.own = track.own.split_off(&(pos + 1));
    track.pos = Some(pos);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: u64) -> pb::Message {
        pb::Message {
            conversation_id: "g:1".into(),
            seq,
            ..Default::default()
        }
    }

    fn seqs(out: &[pb::Message]) -> Vec<u64> {
        out.iter().map(|m| m.seq).collect()
    }

    #[test]
    fn messages_are_handed_over_once_and_in_order() {
        let mut t = GroupTracker::default();
        let mut out = Vec::new();
        assert!(
            t.offer(msg(3), false, &mut out),
            "unknown start needs a pull"
        );
        t.start("g:1", 0, &mut out);
        assert!(out.is_empty());
        assert!(t.offer(msg(1), false, &mut out));
        assert_eq!(seqs(&out), vec![1]);
        t.own("g:1", 2, &mut out);
        assert_eq!(seqs(&out), vec![1, 3], "own send 2 fills the gap");
        assert!(!t.offer(msg(3), false, &mut out), "a repeat is ignored");
        assert!(!t.offer(msg(4), false, &mut out));
        assert!(t.offer(msg(7), false, &mut out));
        assert_eq!(t.needing_pull(), vec!["g:1".to_owned()]);
        assert!(t.offer(msg(9), false, &mut out));
        t.skip_to("g:1", 6, &mut out);
        assert_eq!(
            seqs(&out),
            vec![1, 3, 4, 7],
            "only the gap before 7 is skipped"
        );
        t.skip_gap("g:1", &mut out);
        assert_eq!(seqs(&out), vec![1, 3, 4, 7, 9]);
        assert_eq!(t.position("g:1"), Some(9));
        assert!(t.needing_pull().is_empty());
    }
}
