//! `upload`, `download` and `send --file`: files go over the HTTP API with the token of a
//! throwaway device, which is logged out (its token revoked) when the command ends.

use std::path::{Path, PathBuf};

use anyhow::Context;
use tern_client::pb;

use crate::{Login, oneshot};

/// Where the HTTP API is.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpAddr {
    /// The server's HTTP address (files go over HTTP, messages over the binary protocol).
    #[arg(long, env = "TERN_HTTP", default_value = "http://127.0.0.1:7701")]
    pub http: String,
}

/// What the server answers to an upload.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Uploaded {
    pub file_id: String,
    pub mime: String,
    pub size: u64,
    pub name: String,
    #[serde(default)]
    pub width: Option<u32>,
}

fn client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .build()
        .context("making the HTTP client")
}

/// The server's error, as `NAME: message`, or the status alone.
async fn refusal(answer: reqwest::Response) -> anyhow::Error {
    let status = answer.status();
    let body = answer.text().await.unwrap_or_default();
    match serde_json::from_str::<serde_json::Value>(&body) {
        Ok(v) if v["name"].is_string() => anyhow::anyhow!(
            "{} ({}): {}",
            v["name"].as_str().unwrap_or_default(),
            status.as_u16(),
            v["message"].as_str().unwrap_or_default()
        ),
        _ => anyhow::anyhow!("the server answered {status}"),
    }
}

/// Uploads `path` with `token`.
pub(crate) async fn upload_with(
    http: &HttpAddr,
    token: &str,
    path: &Path,
) -> anyhow::Result<Uploaded> {
    let bytes = tokio::fs::read(path)
        .await
        .with_context(|| format!("reading {}", path.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let answer = client()?
        .post(format!("{}/v1/files", http.http.trim_end_matches('/')))
        .query(&[("name", name.as_str())])
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .with_context(|| format!("uploading {}", path.display()))?;
    if !answer.status().is_success() {
        return Err(refusal(answer).await).with_context(|| format!("uploading {}", path.display()));
    }
    answer.json().await.context("reading the upload's answer")
}

/// `tern upload FILE`: prints the file id.
pub(crate) async fn upload(login: &Login, http: &HttpAddr, path: &Path) -> anyhow::Result<()> {
    let (conn, token) = oneshot::connect_with_token(login).await?;
    let uploaded = upload_with(http, &token, path).await;
    oneshot::finish(conn).await;
    let uploaded = uploaded?;
    println!(
        "{} {} {} bytes {}",
        uploaded.file_id, uploaded.mime, uploaded.size, uploaded.name
    );
    Ok(())
}

/// The content of a message carrying an upload: a picture as an image, anything else as a
/// file (the server fills in the rest).
pub(crate) fn file_content(uploaded: &Uploaded) -> pb::Content {
    let body = if uploaded.width.is_some() {
        pb::content::Body::Image(pb::Image {
            file_id: uploaded.file_id.clone(),
            ..Default::default()
        })
    } else {
        pb::content::Body::File(pb::File {
            file_id: uploaded.file_id.clone(),
            name: uploaded.name.clone(),
            ..Default::default()
        })
    };
    pb::Content { body: Some(body) }
}

/// `tern download ID [-o PATH]`: writes the file to PATH, or under its own name here.
pub(crate) async fn download(
    login: &Login,
    http: &HttpAddr,
    id: &str,
    out: Option<PathBuf>,
) -> anyhow::Result<()> {
    let (conn, token) = oneshot::connect_with_token(login).await?;
    let answer = async {
        client()?
            .get(format!("{}/v1/files/{id}", http.http.trim_end_matches('/')))
            .bearer_auth(&token)
            .send()
            .await
            .with_context(|| format!("downloading {id}"))
    }
    .await;
    let answer = match answer {
        Ok(a) if a.status().is_success() => {
            let name = answer_name(&a);
            a.bytes()
                .await
                .with_context(|| format!("downloading {id}"))
                .map(|b| (b, name))
        }
        Ok(a) => Err(refusal(a).await).with_context(|| format!("downloading {id}")),
        Err(e) => Err(e),
    };
    oneshot::finish(conn).await;
    let (bytes, name) = answer?;
    let path = out.unwrap_or_else(|| PathBuf::from(name.unwrap_or_else(|| id.to_owned())));
    tokio::fs::write(&path, &bytes)
        .await
        .with_context(|| format!("writing {}", path.display()))?;
    println!("{} bytes to {}", bytes.len(), path.display());
    Ok(())
}

/// The plain name a download's `Content-Disposition` gives, without any path.
fn answer_name(answer: &reqwest::Response) -> Option<String> {
    let value = answer
        .headers()
        .get(reqwest::header::CONTENT_DISPOSITION)?
        .to_str()
        .ok()?;
    let name = value
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("filename=\""))?
        .trim_end_matches('"');
    let base = Path::new(name).file_name()?.to_string_lossy().into_owned();
    (!base.is_empty() && base != "file").then_some(base)
}
