//! Files over HTTP: uploads (the bytes as the body), downloads with ranges and validators,
//! thumbnails by size, and signed links that need no credential (for `<img src>`).

use axum::{
    Json,
    body::Body,
    extract::{FromRequestParts, Path, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::Response,
};
use serde::{Deserialize, Serialize};
use tern_core::files::{FileRecord, Reader, Upload, is_picture};
use tern_proto::ErrorCode;
use utoipa::{IntoParams, ToSchema};

use crate::{ApiError, ApiQuery, Caller, ErrorBody, HttpApi};

/// What an upload is called.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UploadParams {
    /// The name to download it as (at most 255 bytes; any path is dropped).
    #[serde(default)]
    pub name: String,
}

/// A stored upload: what a message's image or file content names by `file_id`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FileInfo {
    /// Put it in an image or file message's `file_id`.
    pub file_id: String,
    /// Length in bytes.
    pub size: u64,
    /// The type, read from the bytes.
    pub mime: String,
    /// The name given at upload.
    pub name: String,
    /// SHA-256 of the bytes, hex (also the download's ETag).
    pub sha256: String,
    /// When it was uploaded (Unix ms).
    pub created_ms: i64,
    /// For a picture: its width as displayed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// For a picture: its height as displayed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// For a picture: its thumbnails, smallest first.
    pub thumbnails: Vec<ThumbnailInfo>,
}

/// One thumbnail of a picture.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ThumbnailInfo {
    /// Ask for it with `?thumbnail=EDGE`.
    pub edge: u32,
    /// Its width.
    pub width: u32,
    /// Its height.
    pub height: u32,
}

impl From<&FileRecord> for FileInfo {
    fn from(f: &FileRecord) -> Self {
        FileInfo {
            file_id: f.id.clone(),
            size: f.size,
            mime: f.mime.clone(),
            name: f.name.clone(),
            sha256: f.sha256.clone(),
            created_ms: f.created_ms,
            width: f.image.as_ref().map(|i| i.width),
            height: f.image.as_ref().map(|i| i.height),
            thumbnails: f
                .image
                .iter()
                .flat_map(|i| &i.thumbnails)
                .map(|t| ThumbnailInfo {
                    edge: t.edge,
                    width: t.width,
                    height: t.height,
                })
                .collect(),
        }
    }
}

/// Uploads a file: the bytes are the body. Its type is read from the bytes; pictures get
/// thumbnails. The same bytes uploaded again are stored once. An upload no message refers to
/// is deleted after the grace period (`file_grace_secs`).
#[utoipa::path(
    post,
    path = "/v1/files",
    tag = "files",
    security(("admin_key" = []), ("user_token" = [])),
    params(UploadParams),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file's bytes"),
    responses(
        (status = 201, description = "Stored", body = FileInfo),
        (status = 400, description = "An empty body or a bad name", body = ErrorBody),
        (status = 401, description = "No admin key or user token, or not a live one", body = ErrorBody),
        (status = 413, description = "Larger than `file_max_bytes`", body = ErrorBody),
        (status = 507, description = "The user's files would pass their quota", body = ErrorBody),
    )
)]
pub(crate) async fn upload(
    State(api): State<HttpApi>,
    ApiQuery(params): ApiQuery<UploadParams>,
    request: Request,
) -> Result<(StatusCode, Json<FileInfo>), ApiError> {
    let (mut parts, body) = request.into_parts();
    let caller = Caller::from_request_parts(&mut parts, &api).await?;
    let max = api.files.config().max_bytes;
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::from(tern_core::ServiceError::FileTooLarge {
            size: max.saturating_add(1),
            max,
        })
    })?;
    let record = api
        .files
        .upload(Upload {
            owner: caller.user().cloned(),
            name: params.name,
            bytes,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(FileInfo::from(&record))))
}

/// How to read a file.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DownloadParams {
    /// A picture's thumbnail instead of the picture: the smallest at least this many pixels
    /// on its longer side, or the largest there is.
    #[serde(default)]
    #[param(maximum = 4294967295_u64)]
    pub thumbnail: Option<u32>,
    /// A signed link's expiry (Unix seconds), from `POST /v1/files/{file_id}/link`.
    #[serde(default)]
    pub expires: Option<i64>,
    /// A signed link's signature.
    #[serde(default)]
    pub sig: Option<String>,
}

/// Downloads a file (or a picture's thumbnail). Its uploader, the participants of the
/// conversations it was sent in, and admin keys may read it; so may anyone with a signed link
/// that has not expired. Answers one byte range (`Range: bytes=…`) with 206, validates with
/// `ETag` / `If-None-Match`, and shows only pictures inline.
#[utoipa::path(
    get,
    path = "/v1/files/{file_id}",
    tag = "files",
    security(("admin_key" = []), ("user_token" = []), ()),
    params(("file_id" = String, Path, description = "The file"), DownloadParams),
    responses(
        (status = 200, description = "The bytes", content((Vec<u8> = "application/octet-stream"), (Vec<u8> = "image/jpeg"), (Vec<u8> = "image/png"), (Vec<u8> = "image/gif"), (Vec<u8> = "image/webp"), (Vec<u8> = "text/plain; charset=utf-8"))),
        (status = 206, description = "The range asked for", content((Vec<u8> = "application/octet-stream"))),
        (status = 304, description = "Not changed (`If-None-Match`)"),
        (status = 400, description = "A malformed query", body = ErrorBody),
        (status = 401, description = "No credential and no signed link, or not a live one", body = ErrorBody),
        (status = 403, description = "A signed link that expired or whose signature is wrong", body = ErrorBody),
        (status = 404, description = "No such file, or not one the caller may read", body = ErrorBody),
        (status = 416, description = "A range outside the file, or several ranges", body = ErrorBody),
    )
)]
pub(crate) async fn download(
    State(api): State<HttpApi>,
    Path(file_id): Path<String>,
    ApiQuery(params): ApiQuery<DownloadParams>,
    request: Request,
) -> Result<Response, ApiError> {
    let (mut parts, _) = request.into_parts();
    let reader = match (params.expires, params.sig) {
        (Some(expires), Some(signature)) => Reader::Link { expires, signature },
        (None, None) => reader_of(Caller::from_request_parts(&mut parts, &api).await?),
        _ => {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                "a signed link has both `expires` and `sig`",
            ));
        }
    };
    let record = api.files.open(&reader, &file_id).await?;
    let headers = &parts.headers;
    let (etag, mime, size) = match params.thumbnail {
        None => (
            format!("\"{}\"", record.sha256),
            record.mime.clone(),
            record.size,
        ),
        Some(edge) => {
            let thumb = record
                .thumbnail_for(edge)
                .ok_or(tern_core::ServiceError::FileNotFound)?;
            (
                format!("\"{}-t{}\"", record.sha256, thumb.edge),
                "image/jpeg".to_owned(),
                thumb.size,
            )
        }
    };
    let mut response = Response::builder()
        .header(header::ETAG, &etag)
        .header(header::ACCEPT_RANGES, "bytes")
        // The bytes under an id never change; only who may read them does.
        .header(
            header::CACHE_CONTROL,
            "private, max-age=31536000, immutable",
        )
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        // Whatever a file holds, a browser that opens it runs nothing of it.
        .header(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; sandbox",
        )
        .header(header::CONTENT_DISPOSITION, disposition(&record, &mime));
    if if_none_match(headers, &etag) {
        return Ok(response
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .expect("a valid response"));
    }
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        // A range for other bytes than these (If-Range) is ignored: the whole file answers.
        Some(_) if !if_range_holds(headers, &etag) => None,
        Some(spec) => Some(one_range(spec, size)?),
        None => None,
    };
    response = response.header(header::CONTENT_TYPE, mime);
    let bytes = api
        .files
        .read(&record, params.thumbnail, range.clone())
        .await?;
    Ok(match range {
        Some(r) => response
            .status(StatusCode::PARTIAL_CONTENT)
            .header(
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{size}", r.start, r.end - 1),
            )
            .body(Body::from(bytes)),
        None => response.status(StatusCode::OK).body(Body::from(bytes)),
    }
    .expect("a valid response"))
}

/// A signed link to a file.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FileLink {
    /// The path to GET (relative to the server's HTTP address); it needs no credential.
    pub url: String,
    /// When it stops working (Unix seconds).
    pub expires: i64,
}

/// Signs a link to a file that works without a credential until it expires
/// (`file_link_ttl_secs`), for a browser's `<img src>` or a download manager. Only someone
/// who may read the file gets one.
#[utoipa::path(
    post,
    path = "/v1/files/{file_id}/link",
    tag = "files",
    security(("admin_key" = []), ("user_token" = [])),
    params(("file_id" = String, Path, description = "The file")),
    responses(
        (status = 200, description = "The link", body = FileLink),
        (status = 401, description = "No admin key or user token, or not a live one", body = ErrorBody),
        (status = 404, description = "No such file, or not one the caller may read", body = ErrorBody),
    )
)]
pub(crate) async fn link(
    caller: Caller,
    State(api): State<HttpApi>,
    Path(file_id): Path<String>,
) -> Result<Json<FileLink>, ApiError> {
    let link = api.files.link(&reader_of(caller), &file_id).await?;
    Ok(Json(FileLink {
        url: format!(
            "/v1/files/{file_id}?expires={}&sig={}",
            link.expires, link.signature
        ),
        expires: link.expires,
    }))
}

/// Who reads, as the file service sees a caller.
fn reader_of(caller: Caller) -> Reader {
    match caller {
        Caller::Admin(_) => Reader::Admin,
        Caller::User(user, _) => Reader::User(user),
    }
}

/// Pictures inline; anything else is saved, under its name.
fn disposition(record: &FileRecord, mime: &str) -> HeaderValue {
    let kind = if is_picture(mime) {
        "inline"
    } else {
        "attachment"
    };
    let name = if record.name.is_empty() {
        "file"
    } else {
        &record.name
    };
    // A plain ASCII name for old clients, the exact one (RFC 6266/8187) for the rest.
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._- ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let exact = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
    HeaderValue::from_str(&format!(
        "{kind}; filename=\"{ascii}\"; filename*=UTF-8''{exact}"
    ))
    .unwrap_or(HeaderValue::from_static("attachment"))
}

/// Whether `If-None-Match` names this representation (weak comparison, as RFC 9110 asks for
/// it). The web client's files are validated the same way.
pub fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

/// Whether a range request is about these bytes: no `If-Range`, or one naming this ETag.
fn if_range_holds(headers: &HeaderMap, etag: &str) -> bool {
    match headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(v) => v.trim() == etag,
    }
}

/// The one range of `spec` within `size` bytes; 416 for one outside it, a malformed one, or
/// several.
fn one_range(spec: &str, size: u64) -> Result<std::ops::Range<u64>, ApiError> {
    let unsatisfiable = |why: &str| {
        ApiError::with_status(
            StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::InvalidArgument,
            format!("{why}; the file has {size} bytes"),
        )
    };
    let ranges = http_range_header::parse_range_header(spec)
        .map_err(|_| unsatisfiable("the range is malformed"))?
        .validate(size)
        .map_err(|_| unsatisfiable("the range is outside the file"))?;
    match ranges.as_slice() {
        [one] => Ok(*one.start()..one.end() + 1),
        _ => Err(unsatisfiable("only one range is served at a time")),
    }
}
