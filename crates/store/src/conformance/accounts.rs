//! Accounts and tokens.

use super::*;

/// Users are unique; a device has one token; revoked tokens are gone.
pub async fn accounts_and_tokens(store: &dyn Backend) {
    let a = user("alice");
    assert!(store.create_user(&a, "hash1", 1).await.unwrap());
    assert!(!store.create_user(&a, "hash2", 2).await.unwrap());
    assert_eq!(
        store.password_hash(&a).await.unwrap().as_deref(),
        Some("hash1")
    );
    assert_eq!(store.password_hash(&user("bob")).await.unwrap(), None);
    let token = |hash: &str, device: &str| TokenRecord {
        hash: hash.into(),
        user: a.clone(),
        device: DeviceId::parse(device).unwrap(),
        platform: Platform::Ios,
        issued_ms: 10,
        expires_ms: 20,
    };
    store.put_token(&token("t1", "phone")).await.unwrap();
    store.put_token(&token("t2", "laptop")).await.unwrap();
    assert_eq!(
        store.find_token("t1").await.unwrap(),
        Some(token("t1", "phone"))
    );
    store.put_token(&token("t3", "phone")).await.unwrap();
    assert_eq!(
        store.find_token("t1").await.unwrap(),
        None,
        "replaced by the device's new token"
    );
    assert_eq!(
        store.find_token("t3").await.unwrap(),
        Some(token("t3", "phone"))
    );
    store.revoke_token("t3").await.unwrap();
    store.revoke_token("never-existed").await.unwrap();
    assert_eq!(store.find_token("t3").await.unwrap(), None);
    assert!(store.find_token("t2").await.unwrap().is_some());
}

/// Admin keys: unique ids and hashes, found by hash, listed oldest first, revoked once.
pub async fn admin_keys_are_kept_by_hash_and_revoked_once(store: &dyn Backend) {
    let key = |id: &str, hash: &str, at: i64| AdminKeyRecord {
        id: id.into(),
        name: format!("key {id}"),
        hash: hash.into(),
        created_ms: at,
        revoked_ms: None,
    };
    assert!(store.admin_keys().await.unwrap().is_empty());
    assert!(store.create_admin_key(&key("b", "hb", 20)).await.unwrap());
    assert!(store.create_admin_key(&key("a", "ha", 10)).await.unwrap());
    assert!(
        !store.create_admin_key(&key("a", "hz", 30)).await.unwrap(),
        "id taken"
    );
    assert!(
        !store.create_admin_key(&key("c", "hb", 30)).await.unwrap(),
        "hash taken"
    );
    assert_eq!(
        store.admin_keys().await.unwrap(),
        vec![key("a", "ha", 10), key("b", "hb", 20)]
    );
    assert_eq!(
        store.admin_key_by_hash("hb").await.unwrap(),
        Some(key("b", "hb", 20))
    );
    assert_eq!(store.admin_key_by_hash("nope").await.unwrap(), None);
    assert!(store.revoke_admin_key("b", 50).await.unwrap());
    assert!(
        !store.revoke_admin_key("b", 60).await.unwrap(),
        "revoked once"
    );
    assert!(!store.revoke_admin_key("zz", 60).await.unwrap());
    let revoked = store.admin_key_by_hash("hb").await.unwrap().unwrap();
    assert_eq!(revoked.revoked_ms, Some(50));
}

/// An account is read back as made; disabling and enabling change only its flag; a device's
/// tokens, or all of a user's, are revoked and counted.
pub async fn accounts_are_disabled_and_their_tokens_revoked(store: &dyn Backend) {
    let (a, b) = (user("alice"), user("bob"));
    assert!(store.create_user(&a, "hash1", 5).await.unwrap());
    assert!(
        store
            .create_user(&b, tern_core::accounts::NO_PASSWORD, 6)
            .await
            .unwrap()
    );
    let record = store.user_record(&a).await.unwrap().unwrap();
    assert_eq!(
        record,
        tern_core::store::UserRecord {
            user: a.clone(),
            created_ms: 5,
            has_password: true,
            disabled_ms: None,
        }
    );
    assert!(!store.user_record(&b).await.unwrap().unwrap().has_password);
    assert_eq!(store.user_record(&user("carol")).await.unwrap(), None);

    assert!(store.set_disabled(&a, Some(42)).await.unwrap());
    assert_eq!(
        store.user_record(&a).await.unwrap().unwrap().disabled_ms,
        Some(42)
    );
    assert!(!store.set_disabled(&user("carol"), Some(1)).await.unwrap());
    assert!(store.set_disabled(&a, None).await.unwrap());
    assert_eq!(
        store.user_record(&a).await.unwrap().unwrap().disabled_ms,
        None
    );
    assert_eq!(
        store.password_hash(&a).await.unwrap().as_deref(),
        Some("hash1"),
        "the password is untouched"
    );

    let token = |hash: &str, u: &UserId, device: &str| TokenRecord {
        hash: hash.into(),
        user: u.clone(),
        device: DeviceId::parse(device).unwrap(),
        platform: Platform::Ios,
        issued_ms: 1,
        expires_ms: i64::MAX,
    };
    for t in [
        token("a-phone", &a, "phone"),
        token("a-desk", &a, "desk"),
        token("b-phone", &b, "phone"),
    ] {
        store.put_token(&t).await.unwrap();
    }
    let phone = DeviceId::parse("phone").unwrap();
    assert_eq!(
        store.revoke_device_tokens(&a, Some(&phone)).await.unwrap(),
        1
    );
    assert!(store.find_token("a-phone").await.unwrap().is_none());
    assert!(store.find_token("a-desk").await.unwrap().is_some());
    assert_eq!(store.revoke_device_tokens(&a, None).await.unwrap(), 1);
    assert!(store.find_token("a-desk").await.unwrap().is_none());
    assert!(
        store.find_token("b-phone").await.unwrap().is_some(),
        "another user's tokens stay"
    );
    assert_eq!(store.revoke_device_tokens(&a, None).await.unwrap(), 0);
}
