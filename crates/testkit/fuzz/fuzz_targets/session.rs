//! Fuzzes the session state machine: each input is a script of frames (well-formed requests of
//! every kind, logged in or not, in both encodings; undecodable payloads; unknown types, bad
//! versions and flags; split frames; framing errors) played on a new connection to one
//! in-process server. The checks are those of `tern_testkit::session_script`: every request
//! answered once, every error well formed, every close explained, the registry consistent
//! after each connection, and no panic anywhere (libFuzzer aborts on any, server tasks too).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tern_testkit::{TestServer, session_script};

/// One runtime and one server for the whole run: starting them per input would be most of the
/// work.
fn world() -> &'static (tokio::runtime::Runtime, TestServer) {
    static WORLD: OnceLock<(tokio::runtime::Runtime, TestServer)> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let server = runtime.block_on(async {
            let server = TestServer::start_with(|c| {
                c.login_max_failures = 0;
                c.login_failure_delay_ms = 0;
                c.kick_policy = "unlimited".into();
            })
            .await;
            session_script::prepare(&server).await;
            server
        });
        (runtime, server)
    })
}

fuzz_target!(|data: &[u8]| {
    let (runtime, server) = world();
    runtime.block_on(session_script::play(server, data));
});
