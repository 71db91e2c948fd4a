//! Uploads: kept with their owner's quota checked in the same step, referred to by
//! conversations, collected only when nothing refers to them, and kept over a reopen.

use tern_core::files::{Deleted, FileRecord, FileStore, ImageInfo, Thumbnail};

use super::*;

fn record(id: &str, owner: Option<&str>, sha: &str, size: u64, created_ms: i64) -> FileRecord {
    FileRecord {
        id: id.to_owned(),
        owner: owner.map(user),
        sha256: sha.repeat(64 / sha.len()),
        size,
        mime: "image/png".into(),
        name: "報告.png".into(),
        created_ms,
        image: Some(ImageInfo {
            width: 800,
            height: 400,
            thumbnails: vec![Thumbnail {
                edge: 160,
                width: 160,
                height: 80,
                size: 999,
            }],
        }),
    }
}

/// Records are stored and read back whole; the quota is the owner's sum; references are
/// kept once each; only old unreferenced uploads are offered for collection, and deleting the
/// last upload of some bytes says so.
pub async fn files_are_kept_referenced_and_collected(store: &dyn Backend) {
    let a = record("tf_a", Some("alice"), "ab", 600, 1_000);
    assert!(store.put_file(&a, Some(1_000)).await.unwrap());
    assert_eq!(store.file("tf_a").await.unwrap(), Some(a.clone()));
    assert_eq!(store.file("tf_missing").await.unwrap(), None);
    // Over the quota: nothing stored.
    let b = record("tf_b", Some("alice"), "ab", 500, 2_000);
    assert!(!store.put_file(&b, Some(1_000)).await.unwrap());
    assert_eq!(store.file("tf_b").await.unwrap(), None);
    // Within it, the same bytes again; and an upload of the app's (no owner, no quota).
    let b = record("tf_b", Some("alice"), "ab", 400, 2_000);
    assert!(store.put_file(&b, Some(1_000)).await.unwrap());
    let mut c = record("tf_c", None, "cd", 10, 3_000);
    c.image = None;
    assert!(store.put_file(&c, None).await.unwrap());
    assert_eq!(store.file("tf_c").await.unwrap(), Some(c.clone()));
    assert_eq!(store.file_usage(&user("alice")).await.unwrap(), 1_000);
    assert_eq!(store.file_usage(&user("bob")).await.unwrap(), 0);

    let conv = ConversationId::direct(&user("alice"), &user("bob"));
    let group = ConversationId::group(GroupId(7));
    store.add_file_ref("tf_a", &conv).await.unwrap();
    store.add_file_ref("tf_a", &conv).await.unwrap();
    store.add_file_ref("tf_a", &group).await.unwrap();
    let mut expected = vec![conv.clone(), group.clone()];
    expected.sort_by(|x, y| x.as_str().cmp(y.as_str()));
    assert_eq!(store.file_refs("tf_a").await.unwrap(), expected);
    assert!(store.file_refs("tf_b").await.unwrap().is_empty());

    let ids = |v: Vec<FileRecord>| v.into_iter().map(|f| f.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.unreferenced_files(10_000, 10).await.unwrap()),
        vec!["tf_b", "tf_c"]
    );
    assert_eq!(
        ids(store.unreferenced_files(2_500, 10).await.unwrap()),
        vec!["tf_b"]
    );
    assert_eq!(
        ids(store.unreferenced_files(10_000, 1).await.unwrap()),
        vec!["tf_b"]
    );
    // A referenced upload is kept; b shares its bytes with a; c was the last of its bytes.
    assert_eq!(store.delete_file("tf_a").await.unwrap(), Deleted::Kept);
    assert_eq!(store.delete_file("tf_b").await.unwrap(), Deleted::Record);
    assert_eq!(store.delete_file("tf_b").await.unwrap(), Deleted::Kept);
    assert_eq!(
        store.delete_file("tf_c").await.unwrap(),
        Deleted::LastOfItsBytes
    );
    assert_eq!(store.file_usage(&user("alice")).await.unwrap(), 600);
    assert!(
        store
            .unreferenced_files(i64::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Uploads and their references survive a close and a reopen.
pub async fn files_survive_a_reopen<H: Harness>(h: &H) {
    let loc = h.location().await;
    let store = h.open(&loc).await;
    let a = record("tf_a", Some("alice"), "ab", 600, 1_000);
    assert!(store.put_file(&a, None).await.unwrap());
    let conv = ConversationId::direct(&user("alice"), &user("bob"));
    store.add_file_ref("tf_a", &conv).await.unwrap();
    h.close(store).await;

    let store = h.open(&loc).await;
    assert_eq!(store.file("tf_a").await.unwrap(), Some(a));
    assert_eq!(store.file_refs("tf_a").await.unwrap(), vec![conv]);
    h.close(store).await;
}
