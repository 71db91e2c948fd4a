//! The command line against a real server: register, send, history, chat, and the environment
//! variables that replace the flags.

use std::{
    io::Write,
    process::{Command, Stdio},
    time::Duration,
};

use tern_testkit::TestServer;

fn tern(server: &TestServer, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(args)
        .env("TERN_SERVER", server.config().tcp_addr.to_string())
        .env("TERN_HTTP", format!("http://{}", server.config().http_addr))
        .env_remove("TERN_USER")
        .env_remove("TERN_PASSWORD")
        .output()
        .expect("tern runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_send_and_history_print_what_the_server_stored() {
    let server = TestServer::start().await;
    let (ok, out, _) = tern(
        &server,
        &["register", "--user", "alice", "--password", "alice-secret"],
    );
    assert!(ok);
    assert_eq!(out.trim(), "registered alice");
    assert!(
        tern(
            &server,
            &["register", "--user", "bob", "--password", "bob-secret"]
        )
        .0
    );
    let (ok, _, err) = tern(
        &server,
        &["register", "--user", "bob", "--password", "bob-secret"],
    );
    assert!(!ok);
    assert!(err.contains("USER_EXISTS"), "{err}");

    let (ok, out, _) = tern(
        &server,
        &[
            "send",
            "--user",
            "alice",
            "--password",
            "alice-secret",
            "--to",
            "bob",
            "hello",
            "bob",
        ],
    );
    assert!(ok);
    assert!(out.starts_with("seq=1 message_id="), "{out}");
    let (ok, out, _) = tern(
        &server,
        &[
            "send",
            "--user",
            "bob",
            "--password",
            "bob-secret",
            "--to",
            "alice",
            "hi alice",
        ],
    );
    assert!(ok);
    assert!(out.starts_with("seq=2 "), "{out}");
    let (ok, _, err) = tern(
        &server,
        &[
            "send",
            "--user",
            "bob",
            "--password",
            "bob-secret",
            "--to",
            "nobody",
            "x",
        ],
    );
    assert!(!ok);
    assert!(err.contains("UNKNOWN_USER"), "{err}");

    let (ok, out, _) = tern(
        &server,
        &[
            "history",
            "--user",
            "alice",
            "--password",
            "alice-secret",
            "--with",
            "bob",
        ],
    );
    assert!(ok);
    assert_eq!(out, "1 alice: hello bob\n2 bob: hi alice\n");
    let (_, out, _) = tern(
        &server,
        &[
            "history",
            "--user",
            "bob",
            "--password",
            "bob-secret",
            "--with",
            "alice",
            "--limit",
            "1",
        ],
    );
    assert_eq!(out, "2 bob: hi alice\n");

    // The one-shot commands logged out again: no session is left behind.
    assert_eq!(server.server().gateway().registry().connection_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_variables_replace_the_flags() {
    let server = TestServer::start().await;
    server.register(&["alice", "bob"]).await;
    let out = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["send", "--to", "bob", "from", "env"])
        .env("TERN_SERVER", server.config().tcp_addr.to_string())
        .env("TERN_USER", "alice")
        .env("TERN_PASSWORD", tern_testkit::password("alice"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("seq=1 "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_sends_lines_to_the_chosen_peer_and_prints_incoming_messages() {
    let server = TestServer::start().await;
    server.register(&["alice", "bob"]).await;
    let mut bob = server.client("bob", "phone").await;
    let mut chat = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args([
            "chat",
            "--user",
            "alice",
            "--password",
            &tern_testkit::password("alice"),
        ])
        .env("TERN_SERVER", server.config().tcp_addr.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = chat.stdin.take().unwrap();
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    let stdout = chat.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut printed = Vec::new();
    let mut wait_for = async |wanted: &str| {
        while !printed.iter().any(|l: &String| l == wanted) {
            let line = tokio::time::timeout(Duration::from_secs(15), lines.recv())
                .await
                .unwrap_or_else(|_| panic!("chat never printed {wanted:?}; printed {printed:?}"))
                .expect("chat's stdout is open");
            printed.push(line);
        }
    };
    wait_for("logged in as alice; /to USER or /group ID picks the conversation, /quit leaves")
        .await;
    writeln!(stdin, "/to bob").unwrap();
    writeln!(stdin, "hello from the terminal").unwrap();
    wait_for("now talking to bob").await;
    let got = bob.messages(1).await;
    assert_eq!(tern_testkit::text_of(&got[0].1), "hello from the terminal");
    wait_for(&format!("sent seq=1 message_id={}", got[0].1.message_id)).await;
    bob.client
        .send_text("alice", "hello terminal")
        .await
        .unwrap();
    wait_for("2 bob: hello terminal").await;
    writeln!(stdin, "/quit").unwrap();
    drop(stdin);
    let status = tokio::task::spawn_blocking(move || chat.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commands_create_change_send_and_print_history() {
    let server = TestServer::start().await;
    server.register(&["alice", "bob", "carol", "dave"]).await;
    let pw = tern_testkit::password("alice");
    let login = ["--user", "alice", "--password", pw.as_str()];
    let run = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(&login);
        tern(&server, &all)
    };
    let (ok, out, err) = run(&[
        "group",
        "create",
        "--name",
        "team",
        "--members",
        "bob,carol",
    ]);
    assert!(ok, "{err}");
    let group = out.trim().to_owned();
    assert_eq!(group, "1", "the command prints the new group's id");
    let (ok, out, err) = run(&["group", "add", "--group", &group, "--members", "dave"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "group 1: 4 members (event seq 2)");
    let (ok, out, err) = run(&["group", "remove", "--group", &group, "--members", "carol"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "group 1: 3 members (event seq 3)");
    let (ok, out, err) = run(&["send", "--group", &group, "hello", "team"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("seq=4 message_id="), "{out}");
    assert!(out.trim_end().ends_with("conversation=g:1"), "{out}");
    let (ok, out, _) = run(&["history", "--group", &group]);
    assert!(ok);
    assert_eq!(
        out,
        "1 alice: [created the group \"team\" with bob, carol]\n\
         2 alice: [added dave]\n\
         3 alice: [removed carol]\n\
         4 alice: hello team\n"
    );
    // Errors carry the server's code.
    let pw = tern_testkit::password("carol");
    let (ok, _, err) = tern(
        &server,
        &[
            "send",
            "--group",
            &group,
            "--user",
            "carol",
            "--password",
            &pw,
            "let me back",
        ],
    );
    assert!(!ok);
    assert!(err.contains("NOT_A_PARTICIPANT"), "{err}");
    let (ok, _, err) = run(&["send", "--to", "bob", "--group", &group, "both"]);
    assert!(!ok, "--to and --group exclude each other");
    assert!(err.contains("cannot be used with"), "{err}");
}

/// `tern` as `user` (registered by the kit), with the subcommand words before the login flags.
fn tern_as(server: &TestServer, user: &str, words: &[&str]) -> (bool, String, String) {
    let password = tern_testkit::password(user);
    let split = words
        .iter()
        .position(|w| !w.chars().all(|c| c.is_ascii_lowercase()))
        .unwrap_or(words.len())
        .min(if words.first() == Some(&"friend") {
            2
        } else {
            1
        });
    let mut args: Vec<&str> = words[..split].to_vec();
    args.extend(["--user", user, "--password", &password]);
    args.extend(&words[split..]);
    tern(server, &args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn friends_blocks_conversations_read_recall_and_edit_from_the_command_line() {
    let server = TestServer::start().await;
    server.register(&["alice", "bob", "carol"]).await;

    let (ok, out, err) = tern_as(
        &server,
        "bob",
        &["friend", "request", "alice", "hi", "there"],
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "asked alice to be friends");
    let (_, out, _) = tern_as(&server, "alice", &["friend", "list"]);
    assert_eq!(
        out.trim(),
        "request: bob asked alice to be friends: hi there"
    );
    let (ok, out, _) = tern_as(&server, "alice", &["friend", "accept", "bob"]);
    assert!(ok);
    assert_eq!(out.trim(), "you and bob are friends");
    let (_, out, _) = tern_as(&server, "alice", &["friend", "list"]);
    assert_eq!(out.trim(), "friend bob");
    tern_as(&server, "carol", &["friend", "request", "alice"]);
    let (_, out, _) = tern_as(&server, "alice", &["friend", "decline", "carol"]);
    assert_eq!(out.trim(), "declined the request of carol");
    let (ok, _, err) = tern_as(&server, "alice", &["friend", "accept", "carol"]);
    assert!(!ok && err.contains("REQUEST_NOT_FOUND"), "{err}");

    let bob = server.client("bob", "phone").await;
    let first = bob.client.send_text("alice", "helo").await.unwrap();
    let second = bob.client.send_text("alice", "oops").await.unwrap();
    let (_, out, _) = tern_as(&server, "alice", &["conversations"]);
    assert_eq!(out.trim(), "bob\t2 unread\t2 bob: oops");
    let (ok, out, _) = tern_as(&server, "alice", &["read", "--with", "bob"]);
    assert!(ok);
    assert_eq!(out.trim(), "read p:alice:bob up to 2 (0 unread)");

    let id = second.message_id.to_string();
    let (ok, out, _) = tern_as(&server, "bob", &["recall", "--id", &id]);
    assert!(ok);
    assert_eq!(
        out.trim(),
        format!("recalled message {id} in p:alice:bob (event seq 3)")
    );
    let id = first.message_id.to_string();
    let (ok, out, _) = tern_as(&server, "bob", &["edit", "--id", &id, "hello", "alice"]);
    assert!(ok);
    assert!(
        out.starts_with(&format!("edited message {id} in p:alice:bob")),
        "{out}"
    );
    let (ok, _, err) = tern_as(&server, "alice", &["edit", "--id", &id, "mine"]);
    assert!(!ok && err.contains("PERMISSION_DENIED"), "{err}");
    let (_, out, _) = tern_as(&server, "alice", &["history", "--with", "bob"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1 bob: hello alice (edited)");
    assert_eq!(lines[1], "2 bob: [recalled by bob]");
    let (_, out, _) = tern_as(&server, "alice", &["conversations"]);
    assert!(out.starts_with("bob\t0 unread\t"), "{out}");

    let (ok, out, _) = tern_as(&server, "alice", &["block", "bob"]);
    assert!(ok);
    assert_eq!(out.trim(), "blocked bob");
    let (ok, _, err) = tern_as(&server, "bob", &["send", "--to", "alice", "let me in"]);
    assert!(!ok && err.contains("NOT_ACCEPTED"), "{err}");
    let (_, out, _) = tern_as(&server, "alice", &["unblock", "bob"]);
    assert_eq!(out.trim(), "unblocked bob");
    let (ok, _, _) = tern_as(&server, "bob", &["send", "--to", "alice", "thanks"]);
    assert!(ok);
    let (_, out, _) = tern_as(&server, "alice", &["friend", "delete", "bob"]);
    assert_eq!(out.trim(), "you and bob are no longer friends");
    let (_, out, _) = tern_as(&server, "alice", &["friend", "list"]);
    assert!(out.trim().is_empty(), "{out}");
}

/// `--client-msg-id` makes `send` idempotent for scripts: run twice, stored once; the same id
/// for other words is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_with_a_client_message_id_stores_the_message_once_however_often_it_runs() {
    let server = TestServer::start().await;
    server.register(&["alice", "bob"]).await;
    let alice_pw = tern_testkit::password("alice");
    let send = |text: &str| {
        tern(
            &server,
            &[
                "send",
                "--user",
                "alice",
                "--password",
                &alice_pw,
                "--to",
                "bob",
                "--client-msg-id",
                "job-42",
                text,
            ],
        )
    };
    let (ok, first, err) = send("nightly report");
    assert!(ok, "{err}");
    assert!(!first.contains("duplicate"), "{first}");
    let (ok, again, err) = send("nightly report");
    assert!(ok, "{err}");
    assert!(again.trim().ends_with(" duplicate"), "{again}");
    assert_eq!(
        first.split_whitespace().take(2).collect::<Vec<_>>(),
        again.split_whitespace().take(2).collect::<Vec<_>>(),
        "the same seq and message id"
    );
    let (ok, _, err) = send("something else");
    assert!(!ok);
    assert!(err.contains("CLIENT_MSG_ID_REUSED"), "{err}");
}

/// A send that cannot reach the server retries with the same client message id until it can:
/// the message is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_retries_with_the_same_id_until_the_server_answers() {
    let mut server = TestServer::start().await;
    server.register(&["alice", "bob"]).await;
    server.stop().await;
    let child = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args([
            "send",
            "--user",
            "alice",
            "--password",
            &tern_testkit::password("alice"),
            "--to",
            "bob",
            "while you were away",
        ])
        .env("TERN_SERVER", server.config().tcp_addr.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    server.restart().await;
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("retrying"), "{stderr}");
    let (ok, history, _) = tern(
        &server,
        &[
            "history",
            "--user",
            "bob",
            "--password",
            &tern_testkit::password("bob"),
            "--with",
            "alice",
        ],
    );
    assert!(ok);
    assert_eq!(
        history.matches("while you were away").count(),
        1,
        "{history}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_prints_the_matches_newest_first() {
    let server = TestServer::start().await;
    server.register(&["alice", "bob", "carol"]).await;
    let alice = server.client("alice", "phone").await;
    alice
        .client
        .send_text("bob", "明天的天气很好")
        .await
        .unwrap();
    alice
        .client
        .send_text("carol", "天气 for carol")
        .await
        .unwrap();
    alice.client.send_text("bob", "nothing here").await.unwrap();
    let login = ["--user", "alice", "--password", "password-alice"];
    let (ok, out, err) = tern(&server, &[&["search"][..], &login, &["天气"]].concat());
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "p:alice:carol\t1 alice: 天气 for carol",
            "p:alice:bob\t1 alice: 明天的天气很好"
        ]
    );
    let (ok, out, _) = tern(
        &server,
        &[&["search"][..], &login, &["--with", "bob", "天气"]].concat(),
    );
    assert!(ok);
    assert_eq!(out.trim(), "p:alice:bob\t1 alice: 明天的天气很好");
    let (ok, out, _) = tern(&server, &[&["search"][..], &login, &["absent"]].concat());
    assert!(ok);
    assert!(out.is_empty(), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_uploaded_sent_and_downloaded_from_the_command_line() {
    let server = TestServer::start().await;
    server.register(&["alice", "bob", "carol"]).await;
    let dir = tempfile::tempdir().unwrap();
    let picture = dir.path().join("sunset.png");
    let img = image::RgbImage::from_fn(64, 32, |x, y| image::Rgb([x as u8 * 4, y as u8 * 8, 50]));
    img.save(&picture).unwrap();
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "bring the map").unwrap();
    let as_user = |u: &'static str| {
        [
            "--user",
            u,
            "--password",
            if u == "alice" {
                "password-alice"
            } else if u == "bob" {
                "password-bob"
            } else {
                "password-carol"
            },
        ]
    };

    let (ok, out, err) = tern(
        &server,
        &[
            &["upload"][..],
            &as_user("alice"),
            &[notes.to_str().unwrap()],
        ]
        .concat(),
    );
    assert!(ok, "{err}");
    let fields: Vec<&str> = out.split_whitespace().collect();
    assert!(fields[0].starts_with("tf_"), "{out}");
    assert_eq!(
        &fields[1..],
        ["text/plain;", "charset=utf-8", "13", "bytes", "notes.txt"],
        "{out}"
    );
    let notes_id = fields[0].to_owned();

    let (ok, out, err) = tern(
        &server,
        &[
            &["send"][..],
            &as_user("alice"),
            &["--to", "bob", "--file", picture.to_str().unwrap()],
        ]
        .concat(),
    );
    assert!(ok, "{err}");
    assert!(out.starts_with("seq="), "{out}");
    let (ok, out, err) = tern(
        &server,
        &[&["history"][..], &as_user("bob"), &["--with", "alice"]].concat(),
    );
    assert!(ok, "{err}");
    let line = out.lines().last().unwrap_or_default().to_owned();
    let picture_id = line
        .split_whitespace()
        .find(|w| w.contains("tf_"))
        .map(|w| {
            w.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .to_owned()
        })
        .unwrap_or_else(|| panic!("no file id in {line:?}"));
    assert!(
        line.contains("64x32"),
        "the image's size as the server read it: {line}"
    );

    // Bob reads what was sent to him; carol reads nothing.
    let saved = dir.path().join("from-alice.png");
    let (ok, out, err) = tern(
        &server,
        &[
            &["download"][..],
            &as_user("bob"),
            &["-o", saved.to_str().unwrap(), &picture_id],
        ]
        .concat(),
    );
    assert!(ok, "{err}");
    assert!(out.contains("bytes to"), "{out}");
    assert_eq!(
        std::fs::read(&saved).unwrap(),
        std::fs::read(&picture).unwrap()
    );
    let (ok, _, err) = tern(
        &server,
        &[&["download"][..], &as_user("carol"), &[&picture_id]].concat(),
    );
    assert!(!ok);
    assert!(err.contains("FILE_NOT_FOUND"), "{err}");
    // The uploader reads her upload, under its own name when no path is given.
    let out_dir = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args([&["download"][..], &as_user("alice"), &[&notes_id]].concat())
        .env("TERN_SERVER", server.config().tcp_addr.to_string())
        .env("TERN_HTTP", format!("http://{}", server.config().http_addr))
        .current_dir(out_dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        std::fs::read_to_string(out_dir.path().join("notes.txt")).unwrap(),
        "bring the map"
    );
}
