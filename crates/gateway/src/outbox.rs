//! A connection's outbound queue: where fan-out leaves frames for the connection's task.
//!
//! Fan-out must never wait for a slow connection, so pushing is synchronous and bounded. When
//! the queue is full the frame is dropped and the connection is marked lagged; its task then
//! tells the client to sync, which recovers the dropped entries from the store. A queue that is
//! empty holds no heap memory.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use tern_proto::pb;

/// Why a connection's task must end, as told by another task.
#[derive(Debug, Clone, PartialEq)]
pub enum CloseReason {
    /// Another login replaced this one, or the token was revoked: send the notice, then close.
    Kick(pb::Kick),
}

/// The sending side, held by the registry.
#[derive(Debug, Clone)]
pub struct Outbox(Arc<Shared>);

/// The receiving side, held by the connection's task.
#[derive(Debug)]
pub struct OutboxReceiver(Arc<Shared>);

/// One producer side per registry entry, one consumer: the connection's task. The task is
/// woken through an `AtomicWaker` rather than a `Notify`: waiting then needs no waiter of its
/// own in the task's future (every idle connection holds that future) and no lock per wait.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Something was queued (or a close asked for) since the receiver last looked.
    signalled: AtomicBool,
    waker: AtomicWaker,
    capacity: usize,
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Bytes>,
    /// The newest inbox seq among dropped frames, if any were dropped since the last drain.
    lagged: Option<u64>,
    close: Option<CloseReason>,
}

/// What the connection's task takes from its queue in one go.
#[derive(Debug, Default)]
pub struct Drained {
    /// Frames to write, in the order they were queued.
    pub frames: Vec<Bytes>,
    /// Frames were dropped since the last drain: the client must sync up to at least this seq.
    pub lagged: Option<u64>,
    /// The connection must close after writing.
    pub close: Option<CloseReason>,
}

/// A queue holding at most `capacity` frames.
pub fn outbox(capacity: usize) -> (Outbox, OutboxReceiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        signalled: AtomicBool::new(false),
        waker: AtomicWaker::new(),
        capacity: capacity.max(1),
    });
    (Outbox(shared.clone()), OutboxReceiver(shared))
}

impl Shared {
    /// Tells the receiver to look; called after the state's lock is released.
    fn signal(&self) {
        self.signalled.store(true, Ordering::Release);
        self.waker.wake();
    }
}

impl Outbox {
    /// Queues the push of inbox entry `seq`; returns `false` (and marks the queue lagged) when
    /// the queue is full.
    pub fn push(&self, frame: Bytes, seq: u64) -> bool {
        let accepted = {
            let mut state = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
            if state.close.is_some() {
                return false;
            }
            if state.frames.len() >= self.0.capacity {
                state.lagged = Some(state.lagged.map_or(seq, |s| s.max(seq)));
                false
            } else {
                state.frames.push_back(frame);
                true
            }
        };
        self.0.signal();
        accepted
    }

    /// Queues an ephemeral frame (one that is never stored, such as a typing notice). A queue
    /// half full drops it without marking the connection lagged: there is nothing to sync, and
    /// the other half stays free for pushes of stored entries.
    pub fn push_ephemeral(&self, frame: Bytes) -> bool {
        {
            let mut state = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
            if state.close.is_some() || state.frames.len() >= self.0.capacity / 2 {
                return false;
            }
            state.frames.push_back(frame);
        }
        self.0.signal();
        true
    }

    /// Tells the client to sync, as a dropped push would: something meant for it may have been
    /// lost on the way (head 0: the client syncs from its cursor, whatever the head).
    pub fn resync(&self) {
        {
            let mut state = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
            if state.close.is_some() {
                return;
            }
            state.lagged.get_or_insert(0);
        }
        self.0.signal();
    }

    /// Asks the connection's task to close for `reason`. The first reason wins.
    pub fn close(&self, reason: CloseReason) {
        {
            let mut state = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
            state.close.get_or_insert(reason);
        }
        self.0.signal();
    }

    /// Whether both ends are the same queue.
    pub fn same_queue(&self, receiver: &OutboxReceiver) -> bool {
        Arc::ptr_eq(&self.0, &receiver.0)
    }
}

impl OutboxReceiver {
    /// Takes everything queued. Never waits.
    pub fn drain(&self) -> Drained {
        let mut state = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
        let frames: Vec<Bytes> = state.frames.drain(..).collect();
        if state.frames.capacity() > 64 {
            // Give back the memory of a burst; an idle connection should hold none.
            state.frames = VecDeque::new();
        }
        Drained {
            frames,
            lagged: state.lagged.take(),
            close: state.close.clone(),
        }
    }

    /// Waits until something may have been queued since the last drain.
    ///
    /// Cancel safety: dropping the future loses no signal for later calls: the signal stays set
    /// until a wait sees it. Callers drain after every wake anyway.
    pub fn changed(&self) -> impl Future<Output = ()> + Send + '_ {
        std::future::poll_fn(move |cx| self.poll_changed(cx))
    }

    /// Ready once something was signalled since the last ready poll.
    fn poll_changed(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.signalled.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        // Register, then look again: a signal sent between the two is seen now, and one sent
        // after wakes the registered task.
        self.0.waker.register(cx.waker());
        if self.0.signalled.swap(false, Ordering::AcqRel) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_full_queue_drops_and_marks_lagged_until_drained() {
        let (tx, rx) = outbox(2);
        assert!(tx.push(Bytes::from_static(b"1"), 1));
        assert!(tx.push(Bytes::from_static(b"2"), 2));
        assert!(!tx.push(Bytes::from_static(b"3"), 3));
        assert!(!tx.push(Bytes::from_static(b"4"), 4));
        let d = rx.drain();
        assert_eq!(d.frames.len(), 2);
        assert_eq!(d.lagged, Some(4));
        assert!(tx.push(Bytes::from_static(b"5"), 5));
        let d = rx.drain();
        assert_eq!(d.frames, vec![Bytes::from_static(b"5")]);
        assert_eq!(d.lagged, None);
    }

    #[test]
    fn ephemeral_frames_use_half_the_queue_and_never_mark_it_lagged() {
        let (tx, rx) = outbox(4);
        assert!(tx.push_ephemeral(Bytes::from_static(b"t1")));
        assert!(tx.push_ephemeral(Bytes::from_static(b"t2")));
        assert!(!tx.push_ephemeral(Bytes::from_static(b"t3")), "half full");
        assert!(
            tx.push(Bytes::from_static(b"m1"), 1),
            "room is left for stored entries"
        );
        assert!(tx.push(Bytes::from_static(b"m2"), 2));
        let d = rx.drain();
        assert_eq!(d.frames.len(), 4);
        assert_eq!(d.lagged, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_push_wakes_the_waiting_receiver_and_one_made_before_waiting_is_not_lost() {
        let (tx, rx) = outbox(8);
        // Made before anyone waits: the next wait returns at once.
        assert!(tx.push(Bytes::from_static(b"1"), 1));
        tokio::time::timeout(Duration::from_secs(1), rx.changed())
            .await
            .expect("an earlier push is seen");
        // Nothing new: a wait stays pending.
        assert!(
            tokio::time::timeout(Duration::from_secs(1), rx.changed())
                .await
                .is_err()
        );
        // Made while the receiver waits: it wakes.
        let rx = Arc::new(rx);
        let waiting = tokio::spawn({
            let rx = rx.clone();
            async move { rx.changed().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        tx.close(CloseReason::Kick(pb::Kick::default()));
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("the waiting receiver woke")
            .unwrap();
        assert!(rx.drain().close.is_some());
    }

    #[test]
    fn a_closed_queue_refuses_frames_and_keeps_the_first_reason() {
        let (tx, rx) = outbox(8);
        let kick = |m: &str| {
            CloseReason::Kick(pb::Kick {
                reason: pb::KickReason::Replaced as i32,
                message: m.into(),
            })
        };
        tx.close(kick("first"));
        tx.close(kick("second"));
        assert!(!tx.push(Bytes::from_static(b"x"), 1));
        assert_eq!(rx.drain().close, Some(kick("first")));
    }
}
