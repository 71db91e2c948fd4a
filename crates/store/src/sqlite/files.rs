//! Uploads and the conversations that refer to them, in the main database; the bytes are in
//! the blob store.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, Row, params};
use tern_core::{
    ConversationId, StoreError, UserId,
    files::{Deleted, FileRecord, FileStore, ImageInfo},
};

use super::{SqliteStore, rows::store_err};

const COLUMNS: &str = "id, owner, sha256, size, mime, name, created_ms, image";

fn unreadable(column: usize, e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(e))
}

fn file_of(r: &Row<'_>) -> rusqlite::Result<FileRecord> {
    let owner: Option<String> = r.get(1)?;
    let image: Option<String> = r.get(7)?;
    Ok(FileRecord {
        id: r.get(0)?,
        owner: owner
            .map(|o| UserId::parse(&o))
            .transpose()
            .map_err(|e| unreadable(1, e))?,
        sha256: r.get(2)?,
        size: r.get::<_, i64>(3)? as u64,
        mime: r.get(4)?,
        name: r.get(5)?,
        created_ms: r.get(6)?,
        image: image
            .map(|i| serde_json::from_str::<ImageInfo>(&i))
            .transpose()
            .map_err(|e| unreadable(7, e))?,
    })
}

#[async_trait]
impl FileStore for SqliteStore {
    async fn put_file(&self, file: &FileRecord, quota: Option<u64>) -> Result<bool, StoreError> {
        let file = file.clone();
        let image = file
            .image
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.write(move |b| {
            // One writer: the sum and the insert cannot interleave with another upload's.
            if let (Some(quota), Some(owner)) = (quota, &file.owner) {
                let used: i64 = b
                    .conn
                    .prepare_cached("SELECT COALESCE(SUM(size), 0) FROM files WHERE owner = ?1")?
                    .query_row([owner.as_str()], |r| r.get(0))?;
                if used as u64 + file.size > quota {
                    return Ok(false);
                }
            }
            b.conn
                .prepare_cached(
                    "INSERT INTO files (id, owner, sha256, size, mime, name, created_ms, image)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![
                    file.id,
                    file.owner.as_ref().map(UserId::as_str),
                    file.sha256,
                    file.size as i64,
                    file.mime,
                    file.name,
                    file.created_ms,
                    image,
                ])?;
            Ok(true)
        })
        .await
    }

    async fn file(&self, id: &str) -> Result<Option<FileRecord>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(&format!("SELECT {COLUMNS} FROM files WHERE id = ?1"))
                .and_then(|mut s| s.query_row([id.as_str()], file_of).optional())
                .map_err(store_err)
        })
        .await
    }

    async fn add_file_ref(
        &self,
        id: &str,
        conversation: &ConversationId,
    ) -> Result<(), StoreError> {
        let (id, conversation) = (id.to_owned(), conversation.as_str().to_owned());
        self.write(move |b| {
            b.conn
                .prepare_cached(
                    "INSERT INTO file_refs (file_id, conversation_id) VALUES (?1, ?2)
                     ON CONFLICT DO NOTHING",
                )?
                .execute(params![id, conversation])?;
            Ok(())
        })
        .await
    }

    async fn file_refs(&self, id: &str) -> Result<Vec<ConversationId>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT conversation_id FROM file_refs WHERE file_id = ?1 ORDER BY conversation_id",
            )
            .and_then(|mut s| {
                s.query_map([id.as_str()], |r| {
                    Ok(ConversationId::from_stored(&r.get::<_, String>(0)?))
                })?
                .collect()
            })
            .map_err(store_err)
        })
        .await
    }

    async fn file_usage(&self, owner: &UserId) -> Result<u64, StoreError> {
        let owner = owner.as_str().to_owned();
        self.read(move |conn| {
            conn.prepare_cached("SELECT COALESCE(SUM(size), 0) FROM files WHERE owner = ?1")
                .and_then(|mut s| s.query_row([owner.as_str()], |r| r.get::<_, i64>(0)))
                .map(|n| n as u64)
                .map_err(store_err)
        })
        .await
    }

    async fn unreferenced_files(
        &self,
        before_ms: i64,
        limit: u32,
    ) -> Result<Vec<FileRecord>, StoreError> {
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM files f
                 WHERE created_ms < ?1
                   AND NOT EXISTS (SELECT 1 FROM file_refs r WHERE r.file_id = f.id)
                 ORDER BY created_ms, id LIMIT ?2"
            ))
            .and_then(|mut s| s.query_map(params![before_ms, limit], file_of)?.collect())
            .map_err(store_err)
        })
        .await
    }

    async fn delete_file(&self, id: &str) -> Result<Deleted, StoreError> {
        let id = id.to_owned();
        self.write(move |b| {
            let sha: Option<String> = b
                .conn
                .prepare_cached(
                    "DELETE FROM files WHERE id = ?1
                       AND NOT EXISTS (SELECT 1 FROM file_refs WHERE file_id = ?1)
                     RETURNING sha256",
                )?
                .query_row([id.as_str()], |r| r.get(0))
                .optional()?;
            let Some(sha) = sha else {
                return Ok(Deleted::Kept);
            };
            let shared: bool = b
                .conn
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM files WHERE sha256 = ?1)")?
                .query_row([sha.as_str()], |r| r.get(0))?;
            Ok(if shared {
                Deleted::Record
            } else {
                Deleted::LastOfItsBytes
            })
        })
        .await
    }
}
