//! The before-send hook: an app's own check, called synchronously for every send from either
//! front door before the message takes its seq. It may allow the message, reject it with a
//! code and message the sender sees, or replace its content.
//!
//! What happens when the hook fails (no answer within the timeout, an error, an answer that
//! does not parse or a replacement that is not valid content) is the operator's choice,
//! `on_failure`: let the message through, or refuse it as retryable. The decision is
//! [`settle`], a pure function of the hook's outcome.
//!
//! Checks run concurrently, but one connection's sends still enter the commit pipeline in the
//! order they were sent: [`Turns`] hands each send a turn behind the previous send of the same
//! origin.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use tokio::sync::oneshot;

use crate::{ConnectionId, ConversationId, GroupId, ServiceError, UserId, content::Content};

/// The codes a hook may choose for a rejection; any other (or none) becomes
/// `REJECTED_BY_APP`.
pub const APP_CODES: std::ops::RangeInclusive<u32> = 9000..=9999;

/// The longest rejection message passed on to the sender, in characters.
pub const MAX_REJECTION_MESSAGE: usize = 256;

/// A send as the hook sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    /// Who sends.
    pub sender: UserId,
    /// Where it goes.
    pub conversation: ConversationId,
    /// The recipient of a one-to-one message.
    pub to_user: Option<UserId>,
    /// The group of a group message.
    pub group: Option<GroupId>,
    /// The sender's idempotency key.
    pub client_msg_id: String,
    /// The content, after validation and the content filter.
    pub content: Content,
}

/// What the hook answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Store the message as it is.
    Allow,
    /// Refuse it: the sender gets `code` (within [`APP_CODES`], else `REJECTED_BY_APP`) and
    /// `message`.
    Reject {
        /// The app's code.
        code: Option<u32>,
        /// What the sender is told.
        message: String,
    },
    /// Store it with this content instead.
    Modify(Content),
}

/// An app's check of sends.
#[async_trait]
pub trait BeforeSend: Send + Sync + std::fmt::Debug + 'static {
    /// The verdict on `draft`, or why there is none (the hook could not be asked, or answered
    /// something that is not a verdict).
    async fn check(&self, draft: &Draft) -> Result<Verdict, String>;
}

/// What to do when the hook fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Store the message unchecked.
    Allow,
    /// Refuse it with `UNAVAILABLE` (retryable).
    Reject,
}

impl std::str::FromStr for OnFailure {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "allow" => Ok(OnFailure::Allow),
            "reject" => Ok(OnFailure::Reject),
            other => Err(format!(
                "before_send_on_failure must be \"allow\" or \"reject\", not {other:?}"
            )),
        }
    }
}

/// The hook with its timeout and failure policy.
#[derive(Debug, Clone)]
pub struct BeforeSendHook {
    /// The check.
    pub hook: std::sync::Arc<dyn BeforeSend>,
    /// How long a check may take before it counts as failed.
    pub timeout: Duration,
    /// What a failed check means.
    pub on_failure: OnFailure,
}

/// The hook's outcome: its verdict, its failure, or no answer in time.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// It answered.
    Answered(Verdict),
    /// It failed, for this reason.
    Failed(String),
    /// It did not answer within the timeout.
    TimedOut,
}

/// What becomes of the send: stored with this content, or refused.
pub fn settle(
    outcome: Outcome,
    on_failure: OnFailure,
    content: Content,
    valid: impl Fn(&Content) -> Result<(), ServiceError>,
) -> Result<Content, ServiceError> {
    let failure = match outcome {
        Outcome::Answered(Verdict::Allow) => return Ok(content),
        Outcome::Answered(Verdict::Reject { code, message }) => {
            return Err(ServiceError::RejectedByApp {
                code: code.filter(|c| APP_CODES.contains(c)),
                message: message.chars().take(MAX_REJECTION_MESSAGE).collect(),
            });
        }
        Outcome::Answered(Verdict::Modify(replacement)) => match valid(&replacement) {
            Ok(()) => return Ok(replacement),
            Err(e) => format!("the replacement content is not valid: {e}"),
        },
        Outcome::Failed(why) => why,
        Outcome::TimedOut => "no answer in time".to_owned(),
    };
    metrics::counter!("tern_before_send_failures_total").increment(1);
    match on_failure {
        OnFailure::Allow => {
            tracing::warn!(%failure, "the before-send hook failed; the message goes unchecked");
            Ok(content)
        }
        OnFailure::Reject => {
            tracing::warn!(%failure, "the before-send hook failed; the message is refused");
            Err(ServiceError::HookUnavailable)
        }
    }
}

impl BeforeSendHook {
    /// Asks the hook about `draft` within the timeout and settles the answer.
    pub async fn run(
        &self,
        draft: &Draft,
        valid: impl Fn(&Content) -> Result<(), ServiceError>,
    ) -> Result<Content, ServiceError> {
        let outcome = match tokio::time::timeout(self.timeout, self.hook.check(draft)).await {
            Ok(Ok(verdict)) => Outcome::Answered(verdict),
            Ok(Err(why)) => Outcome::Failed(why),
            Err(_) => Outcome::TimedOut,
        };
        settle(outcome, self.on_failure, draft.content.clone(), valid)
    }
}

/// Per-origin turns: each send of an origin (a connection) waits for the one before it to be
/// queued or refused, so concurrent checks do not reorder a connection's sends.
#[derive(Debug, Default)]
pub struct Turns {
    last: Mutex<HashMap<ConnectionId, (u64, SharedDone)>>,
    next: std::sync::atomic::AtomicU64,
}

type SharedDone = futures_util::future::Shared<oneshot::Receiver<()>>;

/// A send's place in its origin's line, taken when the send arrives: wait for
/// [`Turn::ready`], queue, then drop the turn.
#[derive(Debug)]
pub struct Turn {
    turns: Arc<Turns>,
    origin: Option<(ConnectionId, u64)>,
    before: Option<SharedDone>,
    done: Option<oneshot::Sender<()>>,
}

impl Turns {
    /// Takes the next turn of `origin` (sends without an origin need none).
    pub fn take(self: &Arc<Self>, origin: Option<ConnectionId>) -> Turn {
        let Some(origin) = origin else {
            return Turn {
                turns: self.clone(),
                origin: None,
                before: None,
                done: None,
            };
        };
        use futures_util::FutureExt as _;
        let (done, wait) = oneshot::channel();
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let before = self
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(origin, (id, wait.shared()))
            .map(|(_, before)| before);
        Turn {
            turns: self.clone(),
            origin: Some((origin, id)),
            before,
            done: Some(done),
        }
    }

    /// Origins with a send in line (for tests: the table empties as sends finish).
    pub fn len(&self) -> usize {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no origin has a send in line.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Turn {
    /// Resolves once every earlier send of the same origin was queued or refused.
    pub async fn ready(&mut self) {
        if let Some(before) = &self.before {
            // A dropped sender (its send was refused or abandoned) is its turn ending too.
            let _ = before.clone().await;
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            let _ = done.send(());
        }
        if let Some((origin, id)) = self.origin {
            let mut last = self.turns.last.lock().unwrap_or_else(|p| p.into_inner());
            if last.get(&origin).is_some_and(|(latest, _)| *latest == id) {
                last.remove(&origin);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &str) -> Content {
        Content::text(t)
    }

    fn ok(_: &Content) -> Result<(), ServiceError> {
        Ok(())
    }

    #[test]
    fn verdicts_settle_as_answered() {
        let c = text("hi");
        assert_eq!(
            settle(
                Outcome::Answered(Verdict::Allow),
                OnFailure::Reject,
                c.clone(),
                ok
            )
            .unwrap(),
            c
        );
        assert_eq!(
            settle(
                Outcome::Answered(Verdict::Modify(text("hello"))),
                OnFailure::Reject,
                c.clone(),
                ok
            )
            .unwrap(),
            text("hello")
        );
        let e = settle(
            Outcome::Answered(Verdict::Reject {
                code: Some(9001),
                message: "x".repeat(1000),
            }),
            OnFailure::Allow,
            c.clone(),
            ok,
        )
        .unwrap_err();
        match e {
            ServiceError::RejectedByApp { code, message } => {
                assert_eq!(code, Some(9001));
                assert_eq!(message.chars().count(), MAX_REJECTION_MESSAGE);
            }
            other => panic!("{other:?}"),
        }
        // A code outside the app's range is not passed on.
        let e = settle(
            Outcome::Answered(Verdict::Reject {
                code: Some(2001),
                message: "no".into(),
            }),
            OnFailure::Allow,
            c,
            ok,
        )
        .unwrap_err();
        assert!(matches!(e, ServiceError::RejectedByApp { code: None, .. }));
    }

    #[test]
    fn failures_follow_the_policy() {
        let c = text("hi");
        for outcome in [
            Outcome::TimedOut,
            Outcome::Failed("connection refused".into()),
            Outcome::Answered(Verdict::Modify(Content::Empty)),
        ] {
            let invalid = |x: &Content| {
                if *x == Content::Empty {
                    Err(ServiceError::InvalidContent("empty"))
                } else {
                    Ok(())
                }
            };
            assert_eq!(
                settle(outcome.clone(), OnFailure::Allow, c.clone(), invalid).unwrap(),
                c
            );
            assert!(matches!(
                settle(outcome, OnFailure::Reject, c.clone(), invalid),
                Err(ServiceError::HookUnavailable)
            ));
        }
    }

    #[derive(Debug)]
    struct Slow;

    #[async_trait]
    impl BeforeSend for Slow {
        async fn check(&self, _: &Draft) -> Result<Verdict, String> {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(Verdict::Reject {
                code: None,
                message: "too late".into(),
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_hook_past_its_timeout_counts_as_failed() {
        let draft = Draft {
            sender: UserId::parse("alice").unwrap(),
            conversation: ConversationId::direct(
                &UserId::parse("alice").unwrap(),
                &UserId::parse("bob").unwrap(),
            ),
            to_user: UserId::parse("bob").ok(),
            group: None,
            client_msg_id: "c1".into(),
            content: text("hi"),
        };
        let mut hook = BeforeSendHook {
            hook: std::sync::Arc::new(Slow),
            timeout: Duration::from_millis(500),
            on_failure: OnFailure::Allow,
        };
        let started = tokio::time::Instant::now();
        assert_eq!(hook.run(&draft, ok).await.unwrap(), text("hi"));
        assert_eq!(started.elapsed(), Duration::from_millis(500));
        hook.on_failure = OnFailure::Reject;
        assert!(matches!(
            hook.run(&draft, ok).await,
            Err(ServiceError::HookUnavailable)
        ));
    }

    #[tokio::test]
    async fn turns_keep_an_origins_order_and_empty_when_done() {
        let turns = Arc::new(Turns::default());
        let origin = Some(ConnectionId::from_u64(7));
        let mut first = turns.take(origin);
        let mut second = turns.take(origin);
        let mut other = turns.take(Some(ConnectionId::from_u64(8)));
        first.ready().await;
        other.ready().await;
        // The second waits for the first.
        let waiting = tokio::time::timeout(Duration::from_millis(20), second.ready()).await;
        assert!(
            waiting.is_err(),
            "the second's turn comes after the first's"
        );
        drop(first);
        second.ready().await;
        drop(second);
        drop(other);
        assert!(turns.is_empty());
        let mut none = turns.take(None);
        none.ready().await;
        assert!(turns.is_empty());
    }
}
