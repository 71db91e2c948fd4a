//! Files end to end: uploads over HTTP, the messages that carry them, who may read them,
//! ranges, validators, thumbnails, signed links, limits, collection of what no message refers
//! to, and the same on an S3-compatible bucket (a real one, checking signatures).

use std::net::SocketAddr;

use reqwest::{StatusCode, header};
use serde_json::Value;
use tern_proto::pb;
use tern_testkit::{TestServer, http_call as call, s3::S3Server};

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"))
}

/// A PNG `w` × `h` of some colours.
fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 99]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A token for `user`, handed out by the backend.
async fn token_for(http: SocketAddr, key: &str, user: &str) -> String {
    let (status, _, body) = call(
        http,
        "POST",
        &format!("/v1/users/{user}/tokens"),
        Some(key),
        Some(r#"{"device_id":"web","platform":"web"}"#),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    json(&body)["token"].as_str().unwrap().to_owned()
}

struct Http {
    base: String,
    client: reqwest::Client,
}

impl Http {
    fn new(addr: SocketAddr) -> Http {
        Http {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
        }
    }

    async fn upload(&self, credential: &str, name: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
        let answer = self
            .client
            .post(format!("{}/v1/files", self.base))
            .query(&[("name", name)])
            .bearer_auth(credential)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .unwrap();
        let status = answer.status();
        (status, json(&answer.text().await.unwrap()))
    }

    async fn get(&self, credential: Option<&str>, path: &str) -> reqwest::Response {
        self.get_with(credential, path, &[]).await
    }

    async fn get_with(
        &self,
        credential: Option<&str>,
        path: &str,
        headers: &[(header::HeaderName, &str)],
    ) -> reqwest::Response {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some(c) = credential {
            request = request.bearer_auth(c);
        }
        for (name, value) in headers {
            request = request.header(name, *value);
        }
        request.send().await.unwrap()
    }

    async fn send(&self, key: &str, sender: &str, target: &str, content: &str) -> (u16, Value) {
        let target = match target.strip_prefix("g:") {
            Some(g) => format!(r#""group_id":{g}"#),
            None => format!(r#""to_user":"{target}""#),
        };
        let body = format!(
            r#"{{"sender":"{sender}",{target},"client_msg_id":"{}","content":{content}}}"#,
            rand::random::<u64>()
        );
        let addr = self.base.trim_start_matches("http://").parse().unwrap();
        let (status, _, answer) = call(addr, "POST", "/v1/messages", Some(key), Some(&body)).await;
        (status, json(&answer))
    }
}

fn image_content(file_id: &str) -> String {
    format!(r#"{{"image":{{"file_id":"{file_id}"}}}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_is_read_by_its_uploader_and_those_it_was_sent_to() {
    let mut server = TestServer::start().await;
    let key = server.first_admin_key().await;
    server.register(&["alice", "bob", "carol"]).await;
    let addr = server.config().http_addr;
    let http = Http::new(addr);
    let alice = token_for(addr, &key, "alice").await;
    let bob = token_for(addr, &key, "bob").await;
    let carol = token_for(addr, &key, "carol").await;
    let mut bob_phone = server.client("bob", "phone").await;

    let picture = png(800, 400);
    let (status, info) = http.upload(&alice, "../beach.png", picture.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{info}");
    let id = info["file_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("tf_"), "{id}");
    assert_eq!(info["mime"], "image/png");
    assert_eq!(info["name"], "beach.png");
    assert_eq!(info["size"], picture.len() as u64);
    assert_eq!(
        (info["width"].as_u64(), info["height"].as_u64()),
        (Some(800), Some(400))
    );
    let edges: Vec<_> = info["thumbnails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["edge"].as_u64().unwrap(),
                t["width"].as_u64().unwrap(),
                t["height"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(edges, vec![(160, 160, 80), (480, 480, 240)]);
    let path = format!("/v1/files/{id}");

    // Before it is sent, only its uploader reads it.
    assert_eq!(
        http.get(Some(&bob), &path).await.status(),
        StatusCode::NOT_FOUND
    );
    let own = http.get(Some(&alice), &path).await;
    assert_eq!(own.status(), StatusCode::OK);
    assert_eq!(own.headers()[header::CONTENT_TYPE], "image/png");
    assert_eq!(own.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(
        own.headers()[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .starts_with("inline")
    );
    let etag = own.headers()[header::ETAG].to_str().unwrap().to_owned();
    assert_eq!(etag, format!("\"{}\"", info["sha256"].as_str().unwrap()));
    assert_eq!(own.bytes().await.unwrap().as_ref(), picture.as_slice());
    // Nobody else may send it either.
    let (status, refused) = http.send(&key, "carol", "bob", &image_content(&id)).await;
    assert_eq!(
        (status, refused["name"].as_str()),
        (404, Some("FILE_NOT_FOUND")),
        "{refused}"
    );

    // Sent to bob: the message carries what the server read at upload.
    let (status, sent) = http.send(&key, "alice", "bob", &image_content(&id)).await;
    assert_eq!(status, 201, "{sent}");
    let (_, message) = bob_phone.messages(1).await.remove(0);
    let Some(pb::content::Body::Image(image)) = message.content.and_then(|c| c.body) else {
        panic!("not an image message");
    };
    assert_eq!(image.file_id, id);
    assert_eq!((image.width, image.height), (800, 400));
    assert_eq!((image.thumb_width, image.thumb_height), (160, 80));
    assert_eq!(image.mime, "image/png");
    assert_eq!(image.size, picture.len() as u64);

    // Bob reads it now; carol, who is in no conversation it was sent in, still does not.
    assert_eq!(http.get(Some(&bob), &path).await.status(), StatusCode::OK);
    assert_eq!(
        http.get(Some(&carol), &path).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(http.get(Some(&key), &path).await.status(), StatusCode::OK);
    assert_eq!(
        http.get(None, &path).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        http.get(Some(&bob), "/v1/files/tf_00000000000000000000000000000000")
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    // A thumbnail by size: the smallest at least that large.
    let thumb = http.get(Some(&bob), &format!("{path}?thumbnail=200")).await;
    assert_eq!(thumb.status(), StatusCode::OK);
    assert_eq!(thumb.headers()[header::CONTENT_TYPE], "image/jpeg");
    let small = image::load_from_memory(&thumb.bytes().await.unwrap()).unwrap();
    assert_eq!((small.width(), small.height()), (480, 240));

    // Ranges, and the validators.
    let part = http
        .get_with(Some(&bob), &path, &[(header::RANGE, "bytes=10-19")])
        .await;
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        part.headers()[header::CONTENT_RANGE],
        format!("bytes 10-19/{}", picture.len()).as_str()
    );
    assert_eq!(part.bytes().await.unwrap().as_ref(), &picture[10..20]);
    let tail = http
        .get_with(Some(&bob), &path, &[(header::RANGE, "bytes=-5")])
        .await;
    assert_eq!(tail.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        tail.bytes().await.unwrap().as_ref(),
        &picture[picture.len() - 5..]
    );
    for bad in ["bytes=99999999-", "bytes=0-1,5-6", "bytes=x"] {
        let r = http
            .get_with(Some(&bob), &path, &[(header::RANGE, bad)])
            .await;
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{bad}");
    }
    let same = http
        .get_with(Some(&bob), &path, &[(header::IF_NONE_MATCH, &etag)])
        .await;
    assert_eq!(same.status(), StatusCode::NOT_MODIFIED);
    let other = http
        .get_with(
            Some(&bob),
            &path,
            &[(header::RANGE, "bytes=0-0"), (header::IF_RANGE, "\"old\"")],
        )
        .await;
    assert_eq!(
        other.status(),
        StatusCode::OK,
        "If-Range for other bytes: the whole file"
    );

    // A signed link needs no credential; a changed one does not work; carol gets none.
    let addr_bob = addr;
    let (status, _, link) = call(addr_bob, "POST", &format!("{path}/link"), Some(&bob), None).await;
    assert_eq!(status, 200, "{link}");
    let url = json(&link)["url"].as_str().unwrap().to_owned();
    let open = http.get(None, &url).await;
    assert_eq!(open.status(), StatusCode::OK);
    assert_eq!(open.bytes().await.unwrap().as_ref(), picture.as_slice());
    let forged = url.replace("sig=", "sig=00");
    assert_eq!(
        http.get(None, &forged).await.status(),
        StatusCode::FORBIDDEN
    );
    let (status, _, _) = call(addr, "POST", &format!("{path}/link"), Some(&carol), None).await;
    assert_eq!(status, 404);

    // The same bytes again: another upload, the bytes stored once.
    let (status, again) = http.upload(&bob, "copy.png", picture.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(again["file_id"], info["file_id"]);
    assert_eq!(again["sha256"], info["sha256"]);
    if server.config().files_s3.is_none() {
        let blobs = server.config().data_dir.join("files").join("blobs");
        let stored = walk(&blobs);
        assert_eq!(stored.len(), 1, "{stored:?}");
    }

    // Not a picture: saved under its name, never shown inline, and not sendable as an image.
    let (status, doc) = http
        .upload(&alice, "C:\\docs\\報告 1.txt", "plain words".into())
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(doc["mime"], "text/plain; charset=utf-8");
    let doc_id = doc["file_id"].as_str().unwrap();
    let r = http.get(Some(&alice), &format!("/v1/files/{doc_id}")).await;
    let disposition = r.headers()[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(disposition.starts_with("attachment"), "{disposition}");
    assert!(
        disposition.contains("filename*=UTF-8''%E5%A0%B1%E5%91%8A%201%2Etxt"),
        "{disposition}"
    );
    let (status, refused) = http
        .send(&key, "alice", "bob", &image_content(doc_id))
        .await;
    assert_eq!(
        (status, refused["name"].as_str()),
        (400, Some("INVALID_CONTENT")),
        "{refused}"
    );
    let (status, sent) = http
        .send(
            &key,
            "alice",
            "bob",
            &format!(r#"{{"file":{{"file_id":"{doc_id}"}}}}"#),
        )
        .await;
    assert_eq!(status, 201, "{sent}");
    let (_, message) = bob_phone.messages(1).await.remove(0);
    let Some(pb::content::Body::File(file)) = message.content.and_then(|c| c.body) else {
        panic!("not a file message");
    };
    assert_eq!((file.name.as_str(), file.size), ("報告 1.txt", 11));
    // An edit cannot bring a file in: sending is what records who may read it.
    let alice_phone = server.client("alice", "phone").await;
    let ack = alice_phone
        .client
        .send_text("bob", "soon a picture")
        .await
        .unwrap();
    let edited = alice_phone
        .client
        .request(pb::EditRequest {
            message_id: ack.message_id,
            content: Some(pb::Content {
                body: Some(pb::content::Body::Image(pb::Image {
                    file_id: id.clone(),
                    ..Default::default()
                })),
            }),
        })
        .await;
    assert!(
        format!("{edited:?}").contains("INVALID_CONTENT") || format!("{edited:?}").contains("3002"),
        "{edited:?}"
    );
    // A file elsewhere (not `tf_…`) is the app's business: passed on as it was.
    let (status, _) = http
        .send(
            &key,
            "alice",
            "bob",
            r#"{"image":{"url":"https://cdn.example/x.png","width":3}}"#,
        )
        .await;
    assert_eq!(status, 201);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_sent_to_a_group_is_read_by_its_members() {
    let mut server = TestServer::start().await;
    let key = server.first_admin_key().await;
    server.register(&["alice", "bob", "carol"]).await;
    let addr = server.config().http_addr;
    let http = Http::new(addr);
    let (status, _, group) = call(
        addr,
        "POST",
        "/v1/groups",
        Some(&key),
        Some(r#"{"owner":"alice","name":"trip","members":["bob"]}"#),
    )
    .await;
    assert_eq!(status, 201, "{group}");
    let group = json(&group)["group_id"].as_u64().unwrap();
    let alice = token_for(addr, &key, "alice").await;
    let bob = token_for(addr, &key, "bob").await;
    let carol = token_for(addr, &key, "carol").await;
    let (_, info) = http.upload(&alice, "map.png", png(20, 30)).await;
    let id = info["file_id"].as_str().unwrap();
    let (status, sent) = http
        .send(&key, "alice", &format!("g:{group}"), &image_content(id))
        .await;
    assert_eq!(status, 201, "{sent}");
    let path = format!("/v1/files/{id}");
    assert_eq!(http.get(Some(&bob), &path).await.status(), StatusCode::OK);
    assert_eq!(
        http.get(Some(&carol), &path).await.status(),
        StatusCode::NOT_FOUND
    );
    // A body far over the JSON endpoints' limit is an upload like any other.
    let big: Vec<u8> = (0..3_000_000u64).map(|i| (i * 7919 % 251) as u8).collect();
    let (status, info) = http.upload(&key, "big.bin", big.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{info}");
    let big_id = info["file_id"].as_str().unwrap();
    let r = http.get(Some(&key), &format!("/v1/files/{big_id}")).await;
    assert_eq!(r.bytes().await.unwrap().as_ref(), big.as_slice());
    // A member forwards it elsewhere: the new conversation may read it too.
    let (status, _) = http.send(&key, "bob", "carol", &image_content(id)).await;
    assert_eq!(status, 201);
    assert_eq!(http.get(Some(&carol), &path).await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_keep_to_the_size_limit_and_the_quota() {
    let mut server = TestServer::start_with(|c| {
        c.file_max_bytes = 1_000;
        c.file_quota_bytes = 1_500;
    })
    .await;
    let key = server.first_admin_key().await;
    server.register(&["alice"]).await;
    let addr = server.config().http_addr;
    let http = Http::new(addr);
    let alice = token_for(addr, &key, "alice").await;
    let (status, e) = http.upload(&alice, "big", vec![7; 1_001]).await;
    assert_eq!(
        (status, e["name"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("FILE_TOO_LARGE"))
    );
    let (status, e) = http.upload(&alice, "empty", Vec::new()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    let (status, _) = http.upload(&alice, "a", vec![1; 800]).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, e) = http.upload(&alice, "b", vec![2; 800]).await;
    assert_eq!(
        (status, e["name"].as_str()),
        (StatusCode::INSUFFICIENT_STORAGE, Some("QUOTA_EXCEEDED"))
    );
    let (status, _) = http.upload(&alice, "c", vec![3; 700]).await;
    assert_eq!(status, StatusCode::CREATED);
    // The app's backend has no quota.
    let (status, _) = http.upload(&key, "d", vec![4; 1_000]).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, e) = http.upload(&alice, &"n".repeat(256), vec![5; 10]).await;
    assert_eq!(
        (status, e["name"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_ARGUMENT"))
    );
}

/// Uploads a file that gets sent and one that does not; waits for collection; answers what
/// each download gives then.
async fn collection_keeps_what_was_sent(server: &mut TestServer) -> Vec<String> {
    let key = server.first_admin_key().await;
    server.register(&["alice", "bob"]).await;
    let addr = server.config().http_addr;
    let http = Http::new(addr);
    let alice = token_for(addr, &key, "alice").await;
    let (_, kept) = http.upload(&alice, "kept.bin", vec![1, 2, 3, 250]).await;
    let (_, dropped) = http.upload(&alice, "dropped.bin", vec![9, 8, 7, 251]).await;
    let kept = kept["file_id"].as_str().unwrap().to_owned();
    let dropped = dropped["file_id"].as_str().unwrap().to_owned();
    let (status, _) = http
        .send(
            &key,
            "alice",
            "bob",
            &format!(r#"{{"file":{{"file_id":"{kept}"}}}}"#),
        )
        .await;
    assert_eq!(status, 201);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let s = http
            .get(Some(&alice), &format!("/v1/files/{dropped}"))
            .await
            .status();
        if s == StatusCode::NOT_FOUND {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never collected");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let s = http
        .get(Some(&alice), &format!("/v1/files/{kept}"))
        .await
        .status();
    assert_eq!(s, StatusCode::OK, "a file a message refers to is kept");
    vec![kept, dropped]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_no_message_refers_to_are_collected_after_the_grace_period() {
    let mut server = TestServer::start_with(|c| {
        c.file_grace_secs = 3;
        c.file_collect_interval_secs = 1;
    })
    .await;
    collection_keeps_what_was_sent(&mut server).await;
    if server.config().files_s3.is_none() {
        let left = walk(&server.config().data_dir.join("files").join("blobs"));
        assert_eq!(left.len(), 1, "only the kept file's bytes remain: {left:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_live_in_an_s3_bucket_just_the_same() {
    let s3 = S3Server::start("tern-files").await;
    let bucket = s3.config();
    let mut server = TestServer::start_with(|c| {
        c.files_s3 = Some(bucket);
        c.file_grace_secs = 3;
        c.file_collect_interval_secs = 1;
    })
    .await;
    let key = server.first_admin_key().await;
    server.register(&["carol"]).await;
    let addr = server.config().http_addr;
    let http = Http::new(addr);
    let carol = token_for(addr, &key, "carol").await;
    let picture = png(300, 600);
    let (status, info) = http.upload(&carol, "tall.png", picture.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{info}");
    let id = info["file_id"].as_str().unwrap();
    // Sent (to herself), so that collection keeps it.
    let (status, _) = http.send(&key, "carol", "carol", &image_content(id)).await;
    assert_eq!(status, 201);
    let path = format!("/v1/files/{id}");
    let r = http
        .get_with(Some(&carol), &path, &[(header::RANGE, "bytes=100-")])
        .await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &picture[100..]);
    let thumb = http.get(Some(&carol), &format!("{path}?thumbnail=1")).await;
    let small = image::load_from_memory(&thumb.bytes().await.unwrap()).unwrap();
    assert_eq!((small.width(), small.height()), (80, 160));
    // The picture and its two thumbnails are objects in the bucket.
    assert_eq!(
        walk(&s3.bucket_dir()).len(),
        3,
        "{:?}",
        walk(&s3.bucket_dir())
    );

    // Collection deletes from the bucket too.
    let ids = collection_keeps_what_was_sent(&mut server).await;
    assert_eq!(ids.len(), 2);
    let left = walk(&s3.bucket_dir()).len();
    assert_eq!(
        left, 4,
        "the picture, its thumbnails and the sent file remain"
    );
}
