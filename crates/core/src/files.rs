//! Files sent in messages: uploads checked and stored once per content, who may read them,
//! signed links, thumbnails, and the collection of uploads no message refers to.
//!
//! A file's bytes live in a [`Blobs`] store under their SHA-256, so the same bytes uploaded
//! twice are stored once; each upload is a [`FileRecord`] of its own (its id, its uploader, its
//! name), kept by a [`FileStore`]. A message carries the file id; sending it records that the
//! conversation refers to the file, and from then on that conversation's participants may read
//! it. File ids are unguessable, so knowing one is itself a sign of having been shown it, yet
//! every read is checked all the same.

use std::{ops::Range, sync::Arc, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;
use hmac::Mac as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    Clock, ConversationId, ConversationKind, ServiceError, StoreError, UserId, content::Content,
    store::GroupStore,
};

/// How every id of a file this server stores begins: a message whose file id does not is a
/// reference to somewhere else (the app's own storage) and is passed on unchecked.
pub const FILE_ID_PREFIX: &str = "tf_";

/// One upload: the bytes it stored (by hash) and what is known of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    /// `tf_` and 32 hex digits.
    pub id: String,
    /// Who uploaded it; none for an upload with an admin key (the app's backend).
    pub owner: Option<UserId>,
    /// SHA-256 of the bytes, hex: the key of the bytes in the blob store.
    pub sha256: String,
    /// Length in bytes.
    pub size: u64,
    /// The content type, as read from the bytes.
    pub mime: String,
    /// The name the uploader gave, for downloads.
    pub name: String,
    /// When it was uploaded (Unix ms).
    pub created_ms: i64,
    /// For a picture: its size and its thumbnails.
    pub image: Option<ImageInfo>,
}

/// What was read from a picture at upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// Width as displayed (after the EXIF orientation), in pixels.
    pub width: u32,
    /// Height as displayed, in pixels.
    pub height: u32,
    /// Smallest first.
    pub thumbnails: Vec<Thumbnail>,
}

/// One thumbnail of a picture: JPEG, fitted within `edge` × `edge`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thumbnail {
    /// The box it was fitted in.
    pub edge: u32,
    /// Its width in pixels.
    pub width: u32,
    /// Its height in pixels.
    pub height: u32,
    /// Its length in bytes.
    pub size: u64,
}

impl FileRecord {
    /// The blob key of the bytes.
    pub fn blob_key(&self) -> String {
        blob_key(&self.sha256)
    }

    /// The blob key of the thumbnail fitted in `edge`.
    pub fn thumbnail_key(&self, edge: u32) -> String {
        thumbnail_key(&self.sha256, edge)
    }

    /// The thumbnail to serve for a request of `edge`: the smallest at least that large, or the
    /// largest there is.
    pub fn thumbnail_for(&self, edge: u32) -> Option<&Thumbnail> {
        let thumbs = &self.image.as_ref()?.thumbnails;
        thumbs.iter().find(|t| t.edge >= edge).or(thumbs.last())
    }
}

fn blob_key(sha256: &str) -> String {
    format!("blobs/{}/{sha256}", &sha256[..2])
}

fn thumbnail_key(sha256: &str, edge: u32) -> String {
    // Thumbnails are made from the bytes alone, so they are shared like the bytes are.
    format!("thumbnails/{}/{sha256}-{edge}", &sha256[..2])
}

/// Where upload records and the conversations that refer to them are kept.
#[async_trait]
pub trait FileStore: Send + Sync + std::fmt::Debug + 'static {
    /// Stores `file`, unless its owner's uploads would then exceed `quota` bytes: `false`
    /// (nothing stored) in that case. Checked and stored in one step, so concurrent uploads
    /// cannot together pass the quota.
    async fn put_file(&self, file: &FileRecord, quota: Option<u64>) -> Result<bool, StoreError>;
    /// The upload `id`, if it exists.
    async fn file(&self, id: &str) -> Result<Option<FileRecord>, StoreError>;
    /// Records that a message in `conversation` refers to upload `id` (again is no change).
    async fn add_file_ref(&self, id: &str, conversation: &ConversationId)
    -> Result<(), StoreError>;
    /// Every conversation that refers to upload `id`.
    async fn file_refs(&self, id: &str) -> Result<Vec<ConversationId>, StoreError>;
    /// Bytes uploaded by `owner` and still kept.
    async fn file_usage(&self, owner: &UserId) -> Result<u64, StoreError>;
    /// Up to `limit` uploads made before `before_ms` that no conversation refers to, oldest
    /// first.
    async fn unreferenced_files(
        &self,
        before_ms: i64,
        limit: u32,
    ) -> Result<Vec<FileRecord>, StoreError>;
    /// Deletes upload `id` if no conversation refers to it; answers whether it did, and
    /// whether it was the last upload of its bytes (so the bytes may go too).
    async fn delete_file(&self, id: &str) -> Result<Deleted, StoreError>;
}

/// What [`FileStore::delete_file`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// Nothing: no such upload, or a conversation refers to it now.
    Kept,
    /// The upload is gone; other uploads share its bytes.
    Record,
    /// The upload is gone and no other upload has its bytes.
    LastOfItsBytes,
}

/// Where the bytes are kept: a directory or an S3-compatible bucket.
#[async_trait]
pub trait Blobs: Send + Sync + std::fmt::Debug + 'static {
    /// Stores `bytes` under `key`, replacing what was there.
    async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError>;
    /// The bytes under `key` (only `range` of them, when given): `NotFound` when there are
    /// none.
    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes, StoreError>;
    /// Removes `key`; no error when it was not there.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
}

/// Limits and settings of files.
#[derive(Debug, Clone)]
pub struct FileConfig {
    /// The largest upload, in bytes.
    pub max_bytes: u64,
    /// The most bytes one user's uploads may hold; 0 for no limit.
    pub quota_bytes: u64,
    /// How long an upload that no message refers to is kept.
    pub grace: Duration,
    /// The boxes thumbnails of pictures are fitted in, in pixels.
    pub thumbnail_edges: Vec<u32>,
    /// Pictures with more pixels than this get no thumbnails and no dimensions (a decoding
    /// bomb costs nothing).
    pub max_image_pixels: u64,
    /// How long a signed link stays good.
    pub link_ttl: Duration,
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            max_bytes: 25 * 1024 * 1024,
            quota_bytes: 1024 * 1024 * 1024,
            grace: Duration::from_secs(24 * 3600),
            thumbnail_edges: vec![160, 480],
            max_image_pixels: 40_000_000,
            link_ttl: Duration::from_secs(3600),
        }
    }
}

/// Who reads a file.
#[derive(Debug, Clone)]
pub enum Reader {
    /// The app's backend (an admin key): any file.
    Admin,
    /// A user: their uploads and files sent in their conversations.
    User(UserId),
    /// Whoever holds a signed link that has not expired.
    Link {
        /// Unix seconds the link expires at.
        expires: i64,
        /// The signature, hex.
        signature: String,
    },
}

/// A signed link to a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Unix seconds it expires at.
    pub expires: i64,
    /// HMAC-SHA256 of the file id and the expiry, hex.
    pub signature: String,
}

/// Uploads, reads, links, the references messages make, and collection.
#[derive(Debug, Clone)]
pub struct FileService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn FileStore>,
    blobs: Arc<dyn Blobs>,
    groups: Arc<dyn GroupStore>,
    clock: Arc<dyn Clock>,
    config: FileConfig,
    /// Signs links; the same on every node (see [`FileService::new`]).
    link_key: Vec<u8>,
}

/// An upload as the front doors hand it over.
#[derive(Debug, Clone)]
pub struct Upload {
    /// Who uploads: none for the app's backend.
    pub owner: Option<UserId>,
    /// The name to download it as (may be empty).
    pub name: String,
    /// The bytes.
    pub bytes: Bytes,
}

/// The longest file name kept, in bytes.
pub const MAX_NAME_BYTES: usize = 255;

impl FileService {
    /// A service over `store` and `blobs`. `link_key` signs links: every node of a cluster must
    /// use the same one (the server keeps it in the shared settings).
    pub fn new(
        store: Arc<dyn FileStore>,
        blobs: Arc<dyn Blobs>,
        groups: Arc<dyn GroupStore>,
        clock: Arc<dyn Clock>,
        config: FileConfig,
        link_key: Vec<u8>,
    ) -> Self {
        FileService {
            inner: Arc::new(Inner {
                store,
                blobs,
                groups,
                clock,
                config,
                link_key,
            }),
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &FileConfig {
        &self.inner.config
    }

    /// Checks and stores an upload: within the size limit and the uploader's quota, its type
    /// read from the bytes, thumbnails made for a picture.
    pub async fn upload(&self, upload: Upload) -> Result<FileRecord, ServiceError> {
        let config = &self.inner.config;
        let size = upload.bytes.len() as u64;
        if size == 0 {
            return Err(ServiceError::InvalidArgument("the file is empty".into()));
        }
        if size > config.max_bytes {
            return Err(ServiceError::FileTooLarge {
                size,
                max: config.max_bytes,
            });
        }
        let name = clean_name(&upload.name)?;
        let sha256 = hex::encode(Sha256::digest(&upload.bytes));
        let mime = sniff(&upload.bytes);
        // Decoding a picture is CPU work: off the async threads.
        let picture = if is_picture(&mime) {
            let bytes = upload.bytes.clone();
            let edges = config.thumbnail_edges.clone();
            let max_pixels = config.max_image_pixels;
            tokio::task::spawn_blocking(move || thumbnails(&bytes, &edges, max_pixels))
                .await
                .map_err(|e| ServiceError::Internal(format!("thumbnail task failed: {e}")))?
        } else {
            None
        };
        let record = FileRecord {
            id: new_file_id(),
            owner: upload.owner,
            sha256,
            size,
            mime,
            name,
            created_ms: self.inner.clock.now_ms(),
            image: picture.as_ref().map(|p| p.info.clone()),
        };
        let quota =
            (config.quota_bytes > 0 && record.owner.is_some()).then_some(config.quota_bytes);
        // The record first, then the bytes: collection deletes the bytes only when no record
        // has them, so bytes this upload needs are never collected under it.
        if !self.inner.store.put_file(&record, quota).await? {
            return Err(ServiceError::QuotaExceeded {
                max: config.quota_bytes,
            });
        }
        self.inner
            .blobs
            .put(&record.blob_key(), upload.bytes)
            .await?;
        for (thumb, bytes) in picture.into_iter().flat_map(|p| p.encoded) {
            self.inner
                .blobs
                .put(&record.thumbnail_key(thumb), bytes)
                .await?;
        }
        metrics::counter!("tern_files_uploaded_total").increment(1);
        metrics::counter!("tern_files_uploaded_bytes_total").increment(size);
        Ok(record)
    }

    /// The upload `id` if `reader` may read it; `FILE_NOT_FOUND` otherwise, whether it exists
    /// or not, so that ids cannot be probed.
    pub async fn open(&self, reader: &Reader, id: &str) -> Result<FileRecord, ServiceError> {
        let not_found = || ServiceError::FileNotFound;
        if !id.starts_with(FILE_ID_PREFIX) {
            return Err(not_found());
        }
        if let Reader::Link { expires, signature } = reader
            && !self.link_is_valid(id, *expires, signature)
        {
            return Err(ServiceError::PermissionDenied(
                "the link is expired or its signature is wrong",
            ));
        }
        let record = self.inner.store.file(id).await?.ok_or_else(not_found)?;
        let allowed = match reader {
            Reader::Admin | Reader::Link { .. } => true,
            Reader::User(user) => self.may_read(user, &record).await?,
        };
        if allowed {
            Ok(record)
        } else {
            Err(not_found())
        }
    }

    /// The bytes of `record`, or of its thumbnail fitted in `thumbnail`; only `range` of them
    /// when given (already checked against the length).
    pub async fn read(
        &self,
        record: &FileRecord,
        thumbnail: Option<u32>,
        range: Option<Range<u64>>,
    ) -> Result<Bytes, ServiceError> {
        let key = match thumbnail {
            None => record.blob_key(),
            Some(edge) => record.thumbnail_key(
                record
                    .thumbnail_for(edge)
                    .ok_or(ServiceError::FileNotFound)?
                    .edge,
            ),
        };
        self.inner
            .blobs
            .get(&key, range)
            .await
            .map_err(|e| match e {
                StoreError::NotFound(_) => ServiceError::FileNotFound,
                other => other.into(),
            })
    }

    /// Whether `user` may read `record`: its uploader, and the participants of every
    /// conversation it was sent in (a group's members, and those who left it since).
    pub async fn may_read(&self, user: &UserId, record: &FileRecord) -> Result<bool, ServiceError> {
        if record.owner.as_ref() == Some(user) {
            return Ok(true);
        }
        for conversation in self.inner.store.file_refs(&record.id).await? {
            match conversation.kind()? {
                ConversationKind::Direct(a, b) if &a == user || &b == user => return Ok(true),
                ConversationKind::Group(group) => {
                    let member = self.inner.groups.group(group, user).await?;
                    if matches!(member, Some((_, Some(_))))
                        || self.inner.groups.departure(group, user).await?.is_some()
                    {
                        return Ok(true);
                    }
                }
                _ => {}
            }
        }
        Ok(false)
    }

    /// Signs a link to upload `id` for whoever `reader` is, after checking they may read it.
    pub async fn link(&self, reader: &Reader, id: &str) -> Result<Link, ServiceError> {
        self.open(reader, id).await?;
        let expires = self.inner.clock.now_ms() / 1000
            + self
                .inner
                .config
                .link_ttl
                .as_secs()
                .min(i64::MAX as u64 / 2) as i64;
        Ok(Link {
            expires,
            signature: self.sign(id, expires),
        })
    }

    /// The MAC of a link to `id` expiring at `expires`, before it is finished.
    fn link_mac(&self, id: &str, expires: i64) -> hmac::Hmac<Sha256> {
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&self.inner.link_key)
            .expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    fn sign(&self, id: &str, expires: i64) -> String {
        hex::encode(self.link_mac(id, expires).finalize().into_bytes())
    }

    fn link_is_valid(&self, id: &str, expires: i64, signature: &str) -> bool {
        if expires < self.inner.clock.now_ms() / 1000 {
            return false;
        }
        let Ok(given) = hex::decode(signature) else {
            return false;
        };
        // Constant time: a signature cannot be guessed byte by byte.
        self.link_mac(id, expires).verify_slice(&given).is_ok()
    }

    /// For a send from `sender` into `conversation`: checks every file of this server the
    /// content refers to (it exists and the sender may read it), fills in what the server
    /// knows of it (size, type, a picture's dimensions and its thumbnail's), and records that
    /// the conversation refers to it. References to files elsewhere pass unchanged.
    pub async fn attach(
        &self,
        sender: &UserId,
        conversation: &ConversationId,
        content: &mut Content,
    ) -> Result<(), ServiceError> {
        let id = match &*content {
            Content::Image(i) if i.file_id.starts_with(FILE_ID_PREFIX) => i.file_id.clone(),
            Content::File(f) if f.file_id.starts_with(FILE_ID_PREFIX) => f.file_id.clone(),
            _ => return Ok(()),
        };
        let record = self.inner.store.file(&id).await?;
        let record = match record {
            // An upload of the app's backend is there to be sent by anyone it tells the id.
            Some(r) if r.owner.is_none() || self.may_read(sender, &r).await? => r,
            _ => return Err(ServiceError::FileNotFound),
        };
        match content {
            Content::Image(image) => {
                let Some(info) = &record.image else {
                    return Err(ServiceError::InvalidContent(
                        "the file of an image message must be a picture",
                    ));
                };
                image.width = info.width;
                image.height = info.height;
                image.size = record.size;
                image.mime = record.mime.clone();
                if let Some(thumb) = info.thumbnails.first() {
                    image.thumb_width = thumb.width;
                    image.thumb_height = thumb.height;
                }
            }
            Content::File(file) => {
                file.size = record.size;
                file.mime = record.mime.clone();
                if file.name.is_empty() {
                    file.name = record.name.clone();
                }
            }
            _ => {}
        }
        self.inner.store.add_file_ref(&id, conversation).await?;
        // Collection deletes an upload only while nothing refers to it, in one step: if the
        // upload is still there now, the reference just added keeps it; if it went between the
        // read above and the reference, the send must not carry it.
        if self.inner.store.file(&id).await?.is_none() {
            return Err(ServiceError::FileNotFound);
        }
        Ok(())
    }

    /// Deletes uploads older than the grace period that no message refers to, and their bytes
    /// when no other upload has them; answers how many uploads went.
    pub async fn collect(&self) -> Result<usize, ServiceError> {
        let grace_ms = self.inner.config.grace.as_millis().min(i64::MAX as u128) as i64;
        let before = self.inner.clock.now_ms().saturating_sub(grace_ms);
        let mut collected = 0;
        loop {
            let batch = self.inner.store.unreferenced_files(before, 100).await?;
            if batch.is_empty() {
                return Ok(collected);
            }
            let mut progressed = false;
            for record in batch {
                match self.inner.store.delete_file(&record.id).await? {
                    Deleted::Kept => continue,
                    Deleted::Record => {}
                    Deleted::LastOfItsBytes => {
                        self.inner.blobs.delete(&record.blob_key()).await?;
                        for thumb in record.image.iter().flat_map(|i| &i.thumbnails) {
                            self.inner
                                .blobs
                                .delete(&record.thumbnail_key(thumb.edge))
                                .await?;
                        }
                    }
                }
                progressed = true;
                collected += 1;
                metrics::counter!("tern_files_collected_total").increment(1);
            }
            if !progressed {
                return Ok(collected);
            }
        }
    }
}

/// Whether `content` names a file of this server.
pub fn refers_to_upload(content: &Content) -> bool {
    match content {
        Content::Image(i) => i.file_id.starts_with(FILE_ID_PREFIX),
        Content::File(f) => f.file_id.starts_with(FILE_ID_PREFIX),
        _ => false,
    }
}

/// The setting that holds the key links are signed with.
pub const LINK_KEY_SETTING: &str = "files.link_key";

/// A new key to sign links with: 256 random bits, hex.
pub fn new_link_key() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// A new upload id: 128 random bits.
fn new_file_id() -> String {
    format!(
        "{FILE_ID_PREFIX}{}",
        hex::encode(rand::random::<[u8; 16]>())
    )
}

/// A file name fit for a download: no path, no control characters, at most 255 bytes.
fn clean_name(name: &str) -> Result<String, ServiceError> {
    if name.len() > MAX_NAME_BYTES {
        return Err(ServiceError::InvalidArgument(format!(
            "a file name has at most {MAX_NAME_BYTES} bytes"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(ServiceError::InvalidArgument(
            "a file name has no control characters".into(),
        ));
    }
    // Only the last part of a path: a name never points anywhere.
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default().trim();
    Ok(match base {
        "." | ".." => String::new(),
        other => other.to_owned(),
    })
}

/// The content type of `bytes`, read from the bytes themselves; a client's claim is never
/// trusted, since a browser would act on it.
pub fn sniff(bytes: &[u8]) -> String {
    if let Some(kind) = infer::get(bytes) {
        return kind.mime_type().to_owned();
    }
    if std::str::from_utf8(bytes).is_ok() {
        "text/plain; charset=utf-8".into()
    } else {
        "application/octet-stream".into()
    }
}

/// Whether a browser may show `mime` inline: raster pictures only (never SVG, which runs
/// scripts, nor HTML).
pub fn is_picture(mime: &str) -> bool {
    matches!(
        mime,
        "image/png" | "image/jpeg" | "image/gif" | "image/webp"
    )
}

/// A picture's size and thumbnails, encoded.
#[derive(Debug)]
struct Picture {
    info: ImageInfo,
    encoded: Vec<(u32, Bytes)>,
}

/// Reads a picture within limits, turns it upright by its EXIF orientation and fits a JPEG
/// thumbnail in each edge; none for bytes that do not decode (they stay a plain file).
fn thumbnails(bytes: &[u8], edges: &[u32], max_pixels: u64) -> Option<Picture> {
    use image::{DynamicImage, ImageDecoder as _, ImageReader};
    let mut reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .ok()?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(max_pixels.saturating_mul(4).max(1 << 20));
    reader.limits(limits);
    // The header is read here; the pixels only if there are not too many of them.
    let mut decoder = reader.into_decoder().ok()?;
    let (w, h) = decoder.dimensions();
    if u64::from(w) * u64::from(h) > max_pixels {
        return None;
    }
    let orientation = decoder.orientation().ok();
    let mut picture = DynamicImage::from_decoder(decoder).ok()?;
    if let Some(o) = orientation {
        picture.apply_orientation(o);
    }
    let mut thumbs = Vec::new();
    let mut encoded = Vec::new();
    let mut sorted: Vec<u32> = edges.iter().copied().filter(|e| *e > 0).collect();
    sorted.sort_unstable();
    sorted.dedup();
    for edge in sorted {
        let small = picture.thumbnail(edge, edge).into_rgb8();
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 82)
            .encode_image(&small)
            .ok()?;
        thumbs.push(Thumbnail {
            edge,
            width: small.width(),
            height: small.height(),
            size: out.len() as u64,
        });
        encoded.push((edge, Bytes::from(out)));
    }
    Some(Picture {
        info: ImageInfo {
            width: picture.width(),
            height: picture.height(),
            thumbnails: thumbs,
        },
        encoded,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn the_type_comes_from_the_bytes() {
        assert_eq!(sniff(&png(2, 2)), "image/png");
        assert_eq!(sniff(b"hello"), "text/plain; charset=utf-8");
        assert_eq!(sniff(&[0xff, 0x00, 0xfe, 0x01]), "application/octet-stream");
        assert!(!is_picture("image/svg+xml"));
    }

    #[test]
    fn thumbnails_fit_their_box_and_keep_the_shape() {
        let picture = thumbnails(&png(800, 400), &[480, 160], 1_000_000).unwrap();
        assert_eq!((picture.info.width, picture.info.height), (800, 400));
        let sizes: Vec<_> = picture
            .info
            .thumbnails
            .iter()
            .map(|t| (t.edge, t.width, t.height))
            .collect();
        assert_eq!(sizes, vec![(160, 160, 80), (480, 480, 240)]);
        for (_, bytes) in &picture.encoded {
            assert_eq!(sniff(bytes), "image/jpeg");
        }
    }

    #[test]
    fn a_turned_photo_is_set_upright() {
        // A JPEG 80 wide and 40 high whose EXIF says "rotate 90° clockwise to display".
        let img = image::RgbImage::from_pixel(80, 40, image::Rgb([200, 10, 10]));
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new(&mut jpeg)
            .encode_image(&img)
            .unwrap();
        let mut exif = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x01".to_vec();
        exif.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0]);
        let mut app1 = vec![0xff, 0xe1];
        app1.extend_from_slice(&((exif.len() + 2) as u16).to_be_bytes());
        app1.extend_from_slice(&exif);
        jpeg.splice(2..2, app1);
        let picture = thumbnails(&jpeg, &[20], 1_000_000).unwrap();
        assert_eq!((picture.info.width, picture.info.height), (40, 80));
        let t = &picture.info.thumbnails[0];
        assert_eq!((t.width, t.height), (10, 20));
    }

    #[test]
    fn a_picture_over_the_pixel_limit_gets_no_thumbnails() {
        assert!(thumbnails(&png(100, 100), &[160], 9_999).is_none());
        assert!(thumbnails(b"not a picture", &[160], 1_000_000).is_none());
    }

    #[test]
    fn names_lose_their_path() {
        assert_eq!(clean_name("../../etc/passwd").unwrap(), "passwd");
        assert_eq!(clean_name("C:\\x\\報告.pdf").unwrap(), "報告.pdf");
        assert_eq!(clean_name("..").unwrap(), "");
        assert!(clean_name("a\nb").is_err());
        assert!(clean_name(&"x".repeat(256)).is_err());
    }
}

#[cfg(test)]
mod service_tests {
    use std::{
        collections::{BTreeMap, BTreeSet},
        sync::Mutex,
    };

    use super::*;
    use crate::{
        GroupId,
        clock::ManualClock,
        groups::Member,
        store::{GroupRecord, GroupStore},
    };

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records and references in memory; `collect_on_ref` deletes an upload as a reference to
    /// it is added, as a collection running at that moment would.
    #[derive(Debug, Default)]
    struct Records {
        files: Mutex<BTreeMap<String, FileRecord>>,
        refs: Mutex<BTreeSet<(String, String)>>,
        collect_on_ref: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl FileStore for Records {
        async fn put_file(&self, f: &FileRecord, quota: Option<u64>) -> Result<bool, StoreError> {
            let mut files = lock(&self.files);
            let used: u64 = files
                .values()
                .filter(|r| r.owner.is_some() && r.owner == f.owner)
                .map(|r| r.size)
                .sum();
            if quota.is_some_and(|q| used + f.size > q) {
                return Ok(false);
            }
            files.insert(f.id.clone(), f.clone());
            Ok(true)
        }
        async fn file(&self, id: &str) -> Result<Option<FileRecord>, StoreError> {
            Ok(lock(&self.files).get(id).cloned())
        }
        async fn add_file_ref(&self, id: &str, c: &ConversationId) -> Result<(), StoreError> {
            if self
                .collect_on_ref
                .load(std::sync::atomic::Ordering::SeqCst)
            {
                lock(&self.files).remove(id);
            }
            lock(&self.refs).insert((id.to_owned(), c.as_str().to_owned()));
            Ok(())
        }
        async fn file_refs(&self, id: &str) -> Result<Vec<ConversationId>, StoreError> {
            Ok(lock(&self.refs)
                .iter()
                .filter(|(f, _)| f == id)
                .map(|(_, c)| ConversationId::from_stored(c))
                .collect())
        }
        async fn file_usage(&self, owner: &UserId) -> Result<u64, StoreError> {
            Ok(lock(&self.files)
                .values()
                .filter(|r| r.owner.as_ref() == Some(owner))
                .map(|r| r.size)
                .sum())
        }
        async fn unreferenced_files(
            &self,
            before_ms: i64,
            limit: u32,
        ) -> Result<Vec<FileRecord>, StoreError> {
            let refs = lock(&self.refs);
            Ok(lock(&self.files)
                .values()
                .filter(|r| r.created_ms < before_ms && !refs.iter().any(|(f, _)| *f == r.id))
                .take(limit as usize)
                .cloned()
                .collect())
        }
        async fn delete_file(&self, id: &str) -> Result<Deleted, StoreError> {
            if lock(&self.refs).iter().any(|(f, _)| f == id) {
                return Ok(Deleted::Kept);
            }
            let mut files = lock(&self.files);
            let Some(gone) = files.remove(id) else {
                return Ok(Deleted::Kept);
            };
            Ok(if files.values().any(|r| r.sha256 == gone.sha256) {
                Deleted::Record
            } else {
                Deleted::LastOfItsBytes
            })
        }
    }

    /// Bytes in memory.
    #[derive(Debug, Default)]
    struct Memory(Mutex<BTreeMap<String, Bytes>>);

    #[async_trait]
    impl Blobs for Memory {
        async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
            lock(&self.0).insert(key.to_owned(), bytes);
            Ok(())
        }
        async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes, StoreError> {
            let all = lock(&self.0)
                .get(key)
                .cloned()
                .ok_or_else(|| StoreError::NotFound(key.to_owned()))?;
            Ok(match range {
                Some(r) => all.slice(r.start as usize..r.end as usize),
                None => all,
            })
        }
        async fn delete(&self, key: &str) -> Result<(), StoreError> {
            lock(&self.0).remove(key);
            Ok(())
        }
    }

    /// No groups at all: these cases are about one-to-one conversations.
    #[derive(Debug)]
    struct NoGroups;

    #[async_trait]
    impl GroupStore for NoGroups {
        async fn group(
            &self,
            _: GroupId,
            _: &UserId,
        ) -> Result<Option<(GroupRecord, Option<Member>)>, StoreError> {
            Ok(None)
        }
        async fn group_members(
            &self,
            _: GroupId,
            _: Option<UserId>,
            _: u32,
        ) -> Result<Vec<(UserId, Member)>, StoreError> {
            Ok(Vec::new())
        }
        async fn departure(
            &self,
            _: GroupId,
            _: &UserId,
        ) -> Result<Option<(u64, u64)>, StoreError> {
            Ok(None)
        }
        async fn groups_of(&self, _: &UserId) -> Result<Vec<(GroupRecord, Member)>, StoreError> {
            Ok(Vec::new())
        }
    }

    struct Kit {
        files: FileService,
        records: Arc<Records>,
        blobs: Arc<Memory>,
        clock: Arc<ManualClock>,
    }

    fn kit() -> Kit {
        let records = Arc::new(Records::default());
        let blobs = Arc::new(Memory::default());
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let files = FileService::new(
            records.clone(),
            blobs.clone(),
            Arc::new(NoGroups),
            clock.clone(),
            FileConfig {
                grace: Duration::from_secs(60),
                link_ttl: Duration::from_secs(30),
                ..FileConfig::default()
            },
            b"a key".to_vec(),
        );
        Kit {
            files,
            records,
            blobs,
            clock,
        }
    }

    fn user(u: &str) -> UserId {
        UserId::parse(u).unwrap()
    }

    fn file_message(id: &str) -> Content {
        Content::File(crate::content::File {
            file_id: id.to_owned(),
            ..Default::default()
        })
    }

    async fn upload(kit: &Kit, owner: &str, bytes: &'static [u8]) -> FileRecord {
        kit.files
            .upload(Upload {
                owner: Some(user(owner)),
                name: "n.bin".into(),
                bytes: Bytes::from_static(bytes),
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_send_racing_the_collection_of_its_file_is_refused() {
        let kit = kit();
        let record = upload(&kit, "alice", b"some bytes").await;
        let conv = ConversationId::direct(&user("alice"), &user("bob"));
        kit.records
            .collect_on_ref
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let mut content = file_message(&record.id);
        let refused = kit.files.attach(&user("alice"), &conv, &mut content).await;
        assert!(
            matches!(refused, Err(ServiceError::FileNotFound)),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn collection_takes_only_old_unsent_uploads_and_bytes_nobody_else_has() {
        let kit = kit();
        let sent = upload(&kit, "alice", b"sent bytes").await;
        let twin_a = upload(&kit, "alice", b"twin bytes").await;
        let twin_b = upload(&kit, "bob", b"twin bytes").await;
        let conv = ConversationId::direct(&user("alice"), &user("bob"));
        let mut content = file_message(&sent.id);
        kit.files
            .attach(&user("alice"), &conv, &mut content)
            .await
            .unwrap();
        // Within the grace period nothing goes.
        assert_eq!(kit.files.collect().await.unwrap(), 0);
        kit.clock.advance_ms(61_000);
        // One twin is sent on (by bob, who uploaded the same bytes): its bytes must stay.
        let mut content = file_message(&twin_b.id);
        kit.files
            .attach(&user("bob"), &conv, &mut content)
            .await
            .unwrap();
        assert_eq!(kit.files.collect().await.unwrap(), 1);
        assert!(kit.records.file(&twin_a.id).await.unwrap().is_none());
        assert!(lock(&kit.blobs.0).contains_key(&twin_b.blob_key()));
        assert!(lock(&kit.blobs.0).contains_key(&sent.blob_key()));
    }

    #[tokio::test]
    async fn links_work_until_they_expire_and_only_as_signed() {
        let kit = kit();
        let record = upload(&kit, "alice", b"linked").await;
        let owner = Reader::User(user("alice"));
        let link = kit.files.link(&owner, &record.id).await.unwrap();
        let by_link = |signature: &str, expires: i64| Reader::Link {
            expires,
            signature: signature.to_owned(),
        };
        assert!(
            kit.files
                .open(&by_link(&link.signature, link.expires), &record.id)
                .await
                .is_ok()
        );
        // Another file, another expiry or another signature: refused.
        let other = upload(&kit, "alice", b"other").await;
        assert!(
            kit.files
                .open(&by_link(&link.signature, link.expires), &other.id)
                .await
                .is_err()
        );
        assert!(
            kit.files
                .open(&by_link(&link.signature, link.expires + 1), &record.id)
                .await
                .is_err()
        );
        assert!(
            kit.files
                .open(&by_link("00", link.expires), &record.id)
                .await
                .is_err()
        );
        // A stranger gets no link.
        let stranger = Reader::User(user("mallory"));
        assert!(matches!(
            kit.files.link(&stranger, &record.id).await,
            Err(ServiceError::FileNotFound)
        ));
        kit.clock.advance_ms(31_000);
        assert!(matches!(
            kit.files
                .open(&by_link(&link.signature, link.expires), &record.id)
                .await,
            Err(ServiceError::PermissionDenied(_))
        ));
    }
}
