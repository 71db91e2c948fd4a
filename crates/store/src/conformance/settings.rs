//! Settings changed at run time: set, replaced, listed by prefix, removed, and kept over a
//! reopen; the fingerprint nodes watch changes with every change.

use super::*;

/// Sets, replaces, lists and removes settings; every change moves the fingerprint.
pub async fn settings_are_set_listed_and_removed(store: &dyn Backend) {
    assert!(store.settings("").await.unwrap().is_empty());
    let mut seen = vec![store.settings_fingerprint().await.unwrap()];
    let mut moved = |f: i64| {
        assert!(
            !seen.contains(&f),
            "the fingerprint {f} was seen before: {seen:?}"
        );
        seen.push(f);
    };
    store.put_setting("webhook:b", Some("B")).await.unwrap();
    moved(store.settings_fingerprint().await.unwrap());
    store.put_setting("webhook:a", Some("A")).await.unwrap();
    moved(store.settings_fingerprint().await.unwrap());
    store.put_setting("filter", Some("F")).await.unwrap();
    moved(store.settings_fingerprint().await.unwrap());
    let pair = |n: &str, v: &str| (n.to_owned(), v.to_owned());
    assert_eq!(
        store.settings("webhook:").await.unwrap(),
        vec![pair("webhook:a", "A"), pair("webhook:b", "B")]
    );
    store.put_setting("webhook:a", Some("A2")).await.unwrap();
    moved(store.settings_fingerprint().await.unwrap());
    store.put_setting("webhook:b", None).await.unwrap();
    moved(store.settings_fingerprint().await.unwrap());
    assert_eq!(
        store.settings("webhook:").await.unwrap(),
        vec![pair("webhook:a", "A2")]
    );
    assert_eq!(
        store.settings("").await.unwrap(),
        vec![pair("filter", "F"), pair("webhook:a", "A2")]
    );
    // Removing what is not there still counts as a change nobody can miss.
    store.put_setting("observer:x", None).await.unwrap();
    moved(store.settings_fingerprint().await.unwrap());
    assert!(store.settings("observer:").await.unwrap().is_empty());
    // A prefix is matched as text, not as a pattern.
    store.put_setting("a%b", Some("1")).await.unwrap();
    assert!(store.settings("a_").await.unwrap().is_empty());
    assert_eq!(store.settings("a%").await.unwrap(), vec![pair("a%b", "1")]);
    // A first value is kept; a later one does not replace it; a removed one may be set anew.
    assert_eq!(store.init_setting("key", "one").await.unwrap(), "one");
    assert_eq!(store.init_setting("key", "two").await.unwrap(), "one");
    assert_eq!(
        store.settings("key").await.unwrap(),
        vec![pair("key", "one")]
    );
    store.put_setting("key", None).await.unwrap();
    assert_eq!(store.init_setting("key", "three").await.unwrap(), "three");
}

/// Settings survive a close and a reopen, and the fingerprint does not go back.
pub async fn settings_survive_a_reopen<H: Harness>(h: &H) {
    let loc = h.location().await;
    let store = h.open(&loc).await;
    store.put_setting("filter", Some("F")).await.unwrap();
    store.put_setting("gone", Some("x")).await.unwrap();
    store.put_setting("gone", None).await.unwrap();
    let before = store.settings_fingerprint().await.unwrap();
    h.close(store).await;

    let store = h.open(&loc).await;
    assert_eq!(
        store.settings("").await.unwrap(),
        vec![("filter".to_owned(), "F".to_owned())]
    );
    assert_eq!(store.settings_fingerprint().await.unwrap(), before);
    store.put_setting("filter", Some("G")).await.unwrap();
    assert_ne!(store.settings_fingerprint().await.unwrap(), before);
    h.close(store).await;
}
