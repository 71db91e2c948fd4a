//! The session state machine under many random scripts of frames (valid and invalid, logged in
//! or not, in both encodings, framing errors included): every request answered once, every
//! error well formed, every close explained, the registry consistent afterwards, and no panic
//! anywhere in the server. The fuzz target in `fuzz/` plays the same scripts from a fuzzer.

use std::sync::{Arc, Mutex};

use rand::{Rng, SeedableRng, rngs::StdRng};
use tern_testkit::{TestServer, session_script};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_frame_scripts_are_answered_as_documented() {
    // A panic in any server task is a failure, even one the runtime would swallow.
    let panics: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = panics.clone();
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        seen.lock().unwrap().push(info.to_string());
        default(info);
    }));
    let server = TestServer::start_with(|c| {
        // Scripts log in and fail to, over and over, from one address.
        c.login_max_failures = 0;
        c.login_failure_delay_ms = 0;
        c.kick_policy = "unlimited".into();
    })
    .await;
    session_script::prepare(&server).await;
    let seed = std::env::var("TERN_SCRIPT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7e57);
    let scripts = std::env::var("TERN_SCRIPTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let mut rng = StdRng::seed_from_u64(seed);
    for _ in 0..scripts {
        let len = rng.random_range(0..120);
        let data: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        session_script::play(&server, &data).await;
    }
    let _ = std::panic::take_hook();
    assert!(
        panics.lock().unwrap().is_empty(),
        "{:?}",
        panics.lock().unwrap()
    );
}
