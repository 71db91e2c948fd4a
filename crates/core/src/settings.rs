//! Settings operators change while Tern runs, through the HTTP API: the content filter's word
//! list, webhooks and observer grants. They are kept in the store ([`SettingsStore`]), so a
//! restart keeps them and every node of a cluster applies the same ones: the node that makes a
//! change applies it at once, and every node reads them all again whenever the store's
//! fingerprint moves (it looks every `poll`).
//!
//! They apply over what the configuration file says: a word list set through the API replaces
//! the file's until it is cleared; webhooks and observers through the API come beside the
//! file's, and those of the file cannot be changed through the API.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::{
    Clock, ServiceError, UserId,
    conversations::ObserverRoles,
    filter::{ContentFilter, FilterAction, WordFilter},
    store::SettingsStore,
    webhooks::{Routes, Webhook},
};

/// The stored word list.
const FILTER: &str = "filter";
/// Stored webhooks, by name after the prefix.
const WEBHOOK: &str = "webhook:";
/// Stored observer grants, by user after the prefix.
const OBSERVER: &str = "observer:";

/// The most words a list set through the API holds.
pub const MAX_WORDS: usize = 100_000;
/// The longest word, in characters.
pub const MAX_WORD_CHARS: usize = 100;

/// Where something in force comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The configuration file (changed there, and read again on SIGHUP where that applies).
    File,
    /// The HTTP API (kept in the store).
    Api,
}

/// The word list as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterWords {
    /// What a match does.
    pub action: FilterAction,
    /// The words, as given.
    pub words: Vec<String>,
}

/// A webhook as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredWebhook {
    url: String,
    secret: String,
    events: Vec<String>,
    created_ms: i64,
}

/// An observer grant as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredGrant {
    granted_ms: i64,
}

/// A webhook in force and where it comes from.
#[derive(Debug, Clone)]
pub struct WebhookEntry {
    /// The webhook.
    pub hook: Webhook,
    /// Where it comes from.
    pub source: Source,
    /// When it was added through the API (Unix ms; 0 for the file's).
    pub created_ms: i64,
}

/// The content filter in force, as operators see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterView {
    /// Where the list in force comes from; `None` when no word is in force.
    pub source: Option<Source>,
    /// What a match does.
    pub action: FilterAction,
    /// How many words are in force.
    pub word_count: usize,
    /// The words set through the API (the file's are in the file).
    pub words: Vec<String>,
}

/// What the configuration file says.
#[derive(Debug, Default)]
struct Baseline {
    filter: Option<Arc<WordFilter>>,
    filter_action: FilterAction,
    webhooks: Vec<Webhook>,
    observers: Vec<UserId>,
}

/// What the store said when last read.
#[derive(Debug, Default)]
struct Stored {
    fingerprint: Option<i64>,
    /// The list set through the API (compiled; `None` when it holds no word).
    filter: Option<(FilterWords, Option<Arc<WordFilter>>)>,
    webhooks: Vec<WebhookEntry>,
    observers: Vec<UserId>,
}

/// The settings in force on this node, over the store that keeps them.
#[derive(Debug)]
pub struct LiveSettings {
    store: Arc<dyn SettingsStore>,
    clock: Arc<dyn Clock>,
    filter: ContentFilter,
    routes: Arc<Routes>,
    observers: ObserverRoles,
    baseline: Mutex<Baseline>,
    stored: Mutex<Stored>,
    /// One read-and-apply at a time, so an older read never replaces a newer one.
    refreshing: tokio::sync::Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl LiveSettings {
    /// Settings kept in `store`, applied to `filter`, `routes` (the webhooks) and `observers`
    /// over the file's `webhooks` and `observers` (the file's word list is given with
    /// [`LiveSettings::set_file_filter`]). Nothing is read until [`LiveSettings::refresh`].
    pub fn new(
        store: Arc<dyn SettingsStore>,
        clock: Arc<dyn Clock>,
        filter: ContentFilter,
        routes: Arc<Routes>,
        observers: ObserverRoles,
        file_webhooks: Vec<Webhook>,
        file_observers: Vec<UserId>,
    ) -> LiveSettings {
        LiveSettings {
            store,
            clock,
            filter,
            routes,
            observers,
            baseline: Mutex::new(Baseline {
                webhooks: file_webhooks,
                observers: file_observers,
                ..Baseline::default()
            }),
            stored: Mutex::new(Stored::default()),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    /// The file's word list (read again on SIGHUP): in force unless the API set one.
    pub fn set_file_filter(&self, filter: Option<WordFilter>, action: FilterAction) {
        {
            let mut b = lock(&self.baseline);
            b.filter = filter.map(Arc::new);
            b.filter_action = action;
        }
        self.apply();
    }

    /// Reads the settings again if the store says they changed, and puts them in force.
    pub async fn refresh(&self) -> Result<(), ServiceError> {
        let _one = self.refreshing.lock().await;
        let fingerprint = self.store.settings_fingerprint().await?;
        if lock(&self.stored).fingerprint == Some(fingerprint) {
            return Ok(());
        }
        let rows = self.store.settings("").await?;
        let mut stored = Stored {
            fingerprint: Some(fingerprint),
            ..Stored::default()
        };
        for (name, value) in rows {
            // A row this version cannot read is skipped, not fatal: the rest still apply.
            if let Err(e) = parse_row(&name, &value, &mut stored) {
                tracing::warn!(setting = %name, error = %e, "a stored setting is skipped");
            }
        }
        *lock(&self.stored) = stored;
        self.apply();
        Ok(())
    }

    /// Reads the settings again every `every` until the returned task is aborted.
    pub fn watch(self: &Arc<Self>, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = me.refresh().await {
                    tracing::warn!(error = %e, "cannot read the settings; keeping those in force");
                }
            }
        })
    }

    /// Puts the file's settings and the stored ones in force.
    fn apply(&self) {
        let baseline = lock(&self.baseline);
        let stored = lock(&self.stored);
        self.filter.replace_shared(match &stored.filter {
            Some((_, f)) => f.clone(),
            None => baseline.filter.clone(),
        });
        let mut hooks = baseline.webhooks.clone();
        hooks.extend(
            stored
                .webhooks
                .iter()
                .filter(|e| !baseline.webhooks.iter().any(|h| h.name == e.hook.name))
                .map(|e| e.hook.clone()),
        );
        self.routes.set(hooks);
        self.observers.set(
            baseline
                .observers
                .iter()
                .chain(stored.observers.iter())
                .cloned(),
        );
    }

    async fn put(&self, name: &str, value: Option<String>) -> Result<(), ServiceError> {
        self.store.put_setting(name, value.as_deref()).await?;
        self.refresh().await
    }

    /// The content filter in force.
    pub fn filter(&self) -> FilterView {
        let baseline = lock(&self.baseline);
        let stored = lock(&self.stored);
        match (&stored.filter, &baseline.filter) {
            (Some((words, f)), _) => FilterView {
                source: Some(Source::Api),
                action: words.action,
                word_count: f.as_ref().map_or(0, |f| f.len()),
                words: words.words.clone(),
            },
            (None, Some(f)) => FilterView {
                source: Some(Source::File),
                action: baseline.filter_action,
                word_count: f.len(),
                words: Vec::new(),
            },
            (None, None) => FilterView {
                source: None,
                action: baseline.filter_action,
                word_count: 0,
                words: Vec::new(),
            },
        }
    }

    /// Puts `words` in force on every node, in place of the file's list, with `action`.
    pub async fn set_filter(&self, words: FilterWords) -> Result<FilterView, ServiceError> {
        if words.words.len() > MAX_WORDS {
            return Err(ServiceError::InvalidArgument(format!(
                "a word list holds at most {MAX_WORDS} words"
            )));
        }
        if let Some(long) = words
            .words
            .iter()
            .find(|w| w.chars().count() > MAX_WORD_CHARS)
        {
            return Err(ServiceError::InvalidArgument(format!(
                "a word is at most {MAX_WORD_CHARS} characters: {:?}…",
                long.chars().take(20).collect::<String>()
            )));
        }
        compile(&words).map_err(ServiceError::InvalidArgument)?;
        let value =
            serde_json::to_string(&words).map_err(|e| ServiceError::Internal(e.to_string()))?;
        self.put(FILTER, Some(value)).await?;
        Ok(self.filter())
    }

    /// Drops the list set through the API: the file's is in force again.
    pub async fn clear_filter(&self) -> Result<FilterView, ServiceError> {
        self.put(FILTER, None).await?;
        Ok(self.filter())
    }

    /// The webhooks in force, the file's first, then the API's by name.
    pub fn webhooks(&self) -> Vec<WebhookEntry> {
        let baseline = lock(&self.baseline);
        let stored = lock(&self.stored);
        baseline
            .webhooks
            .iter()
            .map(|h| WebhookEntry {
                hook: h.clone(),
                source: Source::File,
                created_ms: 0,
            })
            .chain(
                stored
                    .webhooks
                    .iter()
                    // One the file has since taken the name of is not in force.
                    .filter(|e| !baseline.webhooks.iter().any(|h| h.name == e.hook.name))
                    .cloned(),
            )
            .collect()
    }

    /// Adds webhook `name` on every node, or replaces the one the API added before under that
    /// name (its queued events then go to the new address). Without a secret one is made.
    /// Answers the webhook and its secret.
    pub async fn put_webhook(
        &self,
        name: &str,
        url: &str,
        secret: Option<&str>,
        events: &[String],
    ) -> Result<(WebhookEntry, String), ServiceError> {
        if lock(&self.baseline).webhooks.iter().any(|h| h.name == name) {
            return Err(ServiceError::PermissionDenied(
                "this webhook is configured in the file and is changed there",
            ));
        }
        let secret = secret.map_or_else(Webhook::new_secret, str::to_owned);
        Webhook::new(name, url, &secret, events.iter().map(String::as_str))
            .map_err(ServiceError::InvalidArgument)?;
        let stored = StoredWebhook {
            url: url.to_owned(),
            secret: secret.clone(),
            events: events.to_vec(),
            created_ms: self.clock.now_ms(),
        };
        let value =
            serde_json::to_string(&stored).map_err(|e| ServiceError::Internal(e.to_string()))?;
        self.put(&format!("{WEBHOOK}{name}"), Some(value)).await?;
        let entry = self
            .webhooks()
            .into_iter()
            .find(|e| e.hook.name == name)
            .ok_or_else(|| ServiceError::Internal("a stored webhook was not read back".into()))?;
        Ok((entry, secret))
    }

    /// Removes webhook `name` (one the API added) on every node. Its queued events are retried
    /// until they become dead letters, which a webhook added again under the name can replay.
    pub async fn remove_webhook(&self, name: &str) -> Result<(), ServiceError> {
        let stored = lock(&self.stored)
            .webhooks
            .iter()
            .any(|e| e.hook.name == name);
        // A row the file has since shadowed can still be removed; the file's own cannot.
        if !stored {
            if lock(&self.baseline).webhooks.iter().any(|h| h.name == name) {
                return Err(ServiceError::PermissionDenied(
                    "this webhook is configured in the file and is removed there",
                ));
            }
            return Err(ServiceError::InvalidArgument(format!(
                "no webhook added through the API is named {name:?}"
            )));
        }
        self.put(&format!("{WEBHOOK}{name}"), None).await
    }

    /// Who has the observer role, and from where (a user named in both shows the file).
    pub fn observers(&self) -> Vec<(UserId, Source)> {
        let baseline = lock(&self.baseline);
        let stored = lock(&self.stored);
        let mut all: Vec<(UserId, Source)> = baseline
            .observers
            .iter()
            .map(|u| (u.clone(), Source::File))
            .collect();
        for u in &stored.observers {
            if !baseline.observers.contains(u) {
                all.push((u.clone(), Source::Api));
            }
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Grants `user` the observer role on every node.
    pub async fn grant_observer(&self, user: &UserId) -> Result<(), ServiceError> {
        let value = serde_json::to_string(&StoredGrant {
            granted_ms: self.clock.now_ms(),
        })
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
        self.put(&format!("{OBSERVER}{user}"), Some(value)).await
    }

    /// Takes the role granted through the API from `user` on every node: new observations are
    /// refused and running ones end (the gateway checks the role for every message).
    pub async fn revoke_observer(&self, user: &UserId) -> Result<(), ServiceError> {
        if lock(&self.baseline).observers.contains(user) {
            return Err(ServiceError::PermissionDenied(
                "this observer is configured in the file and is removed there",
            ));
        }
        self.put(&format!("{OBSERVER}{user}"), None).await
    }
}

fn compile(words: &FilterWords) -> Result<Option<WordFilter>, String> {
    WordFilter::new(words.words.iter().map(String::as_str), words.action)
}

fn parse_row(name: &str, value: &str, into: &mut Stored) -> Result<(), String> {
    if name == FILTER {
        let words: FilterWords = serde_json::from_str(value).map_err(|e| e.to_string())?;
        // An empty list set through the API filters nothing, and still replaces the file's.
        let filter = compile(&words)?.map(Arc::new);
        into.filter = Some((words, filter));
    } else if let Some(hook) = name.strip_prefix(WEBHOOK) {
        let w: StoredWebhook = serde_json::from_str(value).map_err(|e| e.to_string())?;
        into.webhooks.push(WebhookEntry {
            hook: Webhook::new(hook, &w.url, &w.secret, w.events.iter().map(String::as_str))?,
            source: Source::Api,
            created_ms: w.created_ms,
        });
    } else if let Some(user) = name.strip_prefix(OBSERVER) {
        into.observers
            .push(UserId::parse(user).map_err(|e| e.to_string())?);
    } else if name == crate::files::LINK_KEY_SETTING {
        // Kept beside these settings, read once at start by the file service.
    } else {
        return Err("not a setting this version knows".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{StoreError, clock::ManualClock};

    /// Each setting's value (none once removed) and version.
    type Rows = BTreeMap<String, (Option<String>, i64)>;

    /// Settings in memory, with the versions a backend keeps and the number of changes.
    #[derive(Debug, Default)]
    struct Memory(Mutex<(Rows, i64)>);

    #[async_trait::async_trait]
    impl SettingsStore for Memory {
        async fn put_setting(&self, name: &str, value: Option<&str>) -> Result<(), StoreError> {
            let mut m = lock(&self.0);
            m.1 += 1;
            let version = m.1;
            m.0.insert(name.to_owned(), (value.map(str::to_owned), version));
            Ok(())
        }

        async fn settings(&self, prefix: &str) -> Result<Vec<(String, String)>, StoreError> {
            Ok(lock(&self.0)
                .0
                .iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .filter_map(|(k, (v, _))| v.clone().map(|v| (k.clone(), v)))
                .collect())
        }

        async fn settings_fingerprint(&self) -> Result<i64, StoreError> {
            Ok(lock(&self.0).1)
        }

        async fn init_setting(&self, name: &str, value: &str) -> Result<String, StoreError> {
            let mut m = lock(&self.0);
            m.1 += 1;
            let version = m.1;
            let row = m.0.entry(name.to_owned()).or_insert((None, version));
            Ok(row.0.get_or_insert_with(|| value.to_owned()).clone())
        }
    }

    fn hook(name: &str) -> Webhook {
        Webhook::new(name, "http://127.0.0.1:9/x", "s", ["*"]).unwrap()
    }

    fn user(u: &str) -> UserId {
        UserId::parse(u).unwrap()
    }

    /// Two nodes over one store: what one changes, the other applies when it reads again.
    fn node(store: &Arc<Memory>) -> (LiveSettings, ContentFilter, Arc<Routes>, ObserverRoles) {
        let (filter, routes, roles) = (
            ContentFilter::default(),
            Arc::new(Routes::default()),
            ObserverRoles::default(),
        );
        let live = LiveSettings::new(
            store.clone(),
            Arc::new(ManualClock::new(1_000)),
            filter.clone(),
            routes.clone(),
            roles.clone(),
            vec![hook("file-hook")],
            vec![user("auditor")],
        );
        live.set_file_filter(
            WordFilter::new(["fileword"], FilterAction::Reject).unwrap(),
            FilterAction::Reject,
        );
        (live, filter, routes, roles)
    }

    fn passes(filter: &ContentFilter, text: &str) -> Result<String, ServiceError> {
        let mut c = crate::content::Content::text(text);
        filter.apply(&mut c)?;
        match c {
            crate::content::Content::Text(t) => Ok(t.text),
            _ => unreachable!(),
        }
    }

    fn names(routes: &Routes) -> Vec<String> {
        routes.hooks().iter().map(|h| h.name.clone()).collect()
    }

    #[tokio::test]
    async fn the_apis_settings_apply_over_the_files_on_every_node() {
        let store = Arc::new(Memory::default());
        let (a, a_filter, a_routes, a_roles) = node(&store);
        let (b, b_filter, b_routes, b_roles) = node(&store);
        a.refresh().await.unwrap();
        b.refresh().await.unwrap();
        assert!(passes(&a_filter, "fileword").is_err(), "the file's list");
        assert_eq!(names(&a_routes), ["file-hook"]);
        assert!(a_roles.contains(&user("auditor")));

        // Node a changes all three; a applies at once, b when it reads again.
        a.set_filter(FilterWords {
            action: FilterAction::Mask,
            words: vec!["坏蛋".into()],
        })
        .await
        .unwrap();
        a.put_webhook(
            "api-hook",
            "http://127.0.0.1:9/y",
            None,
            &["message.created".into()],
        )
        .await
        .unwrap();
        a.grant_observer(&user("sup")).await.unwrap();
        assert_eq!(
            passes(&a_filter, "你坏蛋 fileword").unwrap(),
            "你** fileword"
        );
        assert_eq!(names(&a_routes), ["file-hook", "api-hook"]);
        assert!(passes(&b_filter, "fileword").is_err(), "b has not read yet");
        b.refresh().await.unwrap();
        assert_eq!(passes(&b_filter, "坏蛋").unwrap(), "**");
        assert_eq!(names(&b_routes), ["file-hook", "api-hook"]);
        assert!(b_roles.contains(&user("sup")) && b_roles.contains(&user("auditor")));
        assert_eq!(
            b.observers(),
            [(user("auditor"), Source::File), (user("sup"), Source::Api)]
        );

        // The file's own are changed in the file only; clearing returns to the file's list.
        assert!(matches!(
            a.put_webhook("file-hook", "http://127.0.0.1:9/z", None, &["*".into()])
                .await,
            Err(ServiceError::PermissionDenied(_))
        ));
        assert!(matches!(
            a.remove_webhook("file-hook").await,
            Err(ServiceError::PermissionDenied(_))
        ));
        assert!(matches!(
            a.revoke_observer(&user("auditor")).await,
            Err(ServiceError::PermissionDenied(_))
        ));
        a.clear_filter().await.unwrap();
        a.remove_webhook("api-hook").await.unwrap();
        a.revoke_observer(&user("sup")).await.unwrap();
        b.refresh().await.unwrap();
        assert!(passes(&b_filter, "fileword").is_err());
        assert_eq!(passes(&b_filter, "坏蛋").unwrap(), "坏蛋");
        assert_eq!(names(&b_routes), ["file-hook"]);
        assert!(!b_roles.contains(&user("sup")));
        assert!(matches!(
            a.remove_webhook("api-hook").await,
            Err(ServiceError::InvalidArgument(_))
        ));
    }

    #[tokio::test]
    async fn a_webhook_the_file_takes_the_name_of_is_shadowed_and_still_removable() {
        let store = Arc::new(Memory::default());
        // Stored through the API while the file had no such webhook.
        store
            .put_setting(
                "webhook:file-hook",
                Some(r#"{"url":"http://127.0.0.1:9/api","secret":"s","events":["*"],"created_ms":1}"#),
            )
            .await
            .unwrap();
        let (live, _, routes, _) = node(&store);
        live.refresh().await.unwrap();
        let listed: Vec<(String, Source)> = live
            .webhooks()
            .into_iter()
            .map(|e| (e.hook.name, e.source))
            .collect();
        assert_eq!(listed, [("file-hook".to_owned(), Source::File)]);
        assert_eq!(
            routes.hooks()[0].url,
            "http://127.0.0.1:9/x",
            "the file's is in force"
        );
        live.remove_webhook("file-hook").await.unwrap();
        assert!(store.settings("webhook:").await.unwrap().is_empty());
        assert_eq!(names(&routes), ["file-hook"]);
    }

    #[tokio::test]
    async fn bad_settings_are_refused_and_unreadable_rows_skipped() {
        let store = Arc::new(Memory::default());
        let (live, filter, _, _) = node(&store);
        let long = "x".repeat(MAX_WORD_CHARS + 1);
        assert!(matches!(
            live.set_filter(FilterWords {
                action: FilterAction::Mask,
                words: vec![long],
            })
            .await,
            Err(ServiceError::InvalidArgument(_))
        ));
        for (name, url, events) in [
            ("bad name", "http://127.0.0.1:9/", "*"),
            ("ok", "ftp://x", "*"),
            ("ok", "http://127.0.0.1:9/", "message.sent"),
        ] {
            assert!(matches!(
                live.put_webhook(name, url, None, &[events.into()]).await,
                Err(ServiceError::InvalidArgument(_))
            ));
        }
        // A row this version cannot read leaves the rest in force.
        store.put_setting("filter", Some("not json")).await.unwrap();
        store.put_setting("observer:sup", Some("{}")).await.unwrap();
        live.refresh().await.unwrap();
        assert!(
            passes(&filter, "fileword").is_err(),
            "the file's list still"
        );
        assert_eq!(live.observers().len(), 2);
    }
}
