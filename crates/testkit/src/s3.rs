//! A real S3-compatible server for tests: `s3s-fs` on `127.0.0.1:0`, serving a bucket from a
//! temporary directory and checking every request's signature against one key pair.

use std::net::SocketAddr;

use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};

/// The access key id the server accepts.
pub const ACCESS_KEY: &str = "tern-test-access";
/// The secret key the server accepts.
pub const SECRET_KEY: &str = "tern-test-secret-key";

/// A running S3 server with one bucket; stops when dropped.
#[derive(Debug)]
pub struct S3Server {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The bucket it serves.
    pub bucket: String,
    root: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl S3Server {
    /// Starts a server with the bucket `bucket`.
    pub async fn start(bucket: &str) -> S3Server {
        let root = tempfile::tempdir().expect("a temporary directory");
        std::fs::create_dir_all(root.path().join(bucket)).expect("the bucket's directory");
        let fs = s3s_fs::FileSystem::new(root.path()).expect("s3s-fs over the directory");
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port for S3");
        let addr = listener.local_addr().expect("its address");
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let service = service.clone();
                tokio::spawn(async move {
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        S3Server {
            addr,
            bucket: bucket.to_owned(),
            root,
            task,
        }
    }

    /// The endpoint URL clients use.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The directory the bucket's objects are kept in (to check what is stored).
    pub fn bucket_dir(&self) -> std::path::PathBuf {
        self.root.path().join(&self.bucket)
    }

    /// What Tern's configuration names to use this server.
    pub fn config(&self) -> tern_blobs::S3Config {
        tern_blobs::S3Config {
            bucket: self.bucket.clone(),
            endpoint: Some(self.endpoint()),
            region: "us-east-1".into(),
            access_key_id: ACCESS_KEY.into(),
            secret_access_key: SECRET_KEY.into(),
            allow_http: true,
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}
