//! Uploads and the conversations that refer to them; the bytes are in the blob store.

use async_trait::async_trait;
use tern_core::{
    ConversationId, StoreError, UserId,
    files::{Deleted, FileRecord, FileStore, ImageInfo},
};
use tokio_postgres::Row;

use crate::{
    PgStore, db_err,
    rows::{self, exec, row_opt},
};

const COLUMNS: &str = "id, owner, sha256, size, mime, name, created_ms, image";

fn file_of(r: &Row) -> Result<FileRecord, StoreError> {
    let owner: Option<String> = r.get(1);
    let image: Option<String> = r.get(7);
    Ok(FileRecord {
        id: r.get(0),
        owner: owner
            .map(|o| UserId::parse(&o))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("file owner: {e}")))?,
        sha256: r.get(2),
        size: r.get::<_, i64>(3) as u64,
        mime: r.get(4),
        name: r.get(5),
        created_ms: r.get(6),
        image: image
            .map(|i| serde_json::from_str::<ImageInfo>(&i))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("file image: {e}")))?,
    })
}

#[async_trait]
impl FileStore for PgStore {
    async fn put_file(&self, file: &FileRecord, quota: Option<u64>) -> Result<bool, StoreError> {
        let image = file
            .image
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let owner = file.owner.as_ref().map(UserId::as_str);
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        if let (Some(quota), Some(owner)) = (quota, owner) {
            // One owner's uploads take turns, so two cannot both pass the same remainder.
            exec(
                &tx,
                "SELECT pg_advisory_xact_lock(hashtextextended('tern-files:' || $1, 0))",
                &[&owner],
            )
            .await?;
            let used: i64 = rows::row(
                &tx,
                "SELECT COALESCE(SUM(size), 0)::BIGINT FROM files WHERE owner = $1",
                &[&owner],
            )
            .await?
            .get(0);
            if used as u64 + file.size > quota {
                return Ok(false);
            }
        }
        exec(
            &tx,
            "INSERT INTO files (id, owner, sha256, size, mime, name, created_ms, image)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &file.id,
                &owner,
                &file.sha256,
                &(file.size as i64),
                &file.mime,
                &file.name,
                &file.created_ms,
                &image,
            ],
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn file(&self, id: &str) -> Result<Option<FileRecord>, StoreError> {
        let c = self.client().await?;
        row_opt(
            &c,
            &format!("SELECT {COLUMNS} FROM files WHERE id = $1"),
            &[&id],
        )
        .await?
        .as_ref()
        .map(file_of)
        .transpose()
    }

    async fn add_file_ref(
        &self,
        id: &str,
        conversation: &ConversationId,
    ) -> Result<(), StoreError> {
        let c = self.client().await?;
        exec(
            &c,
            "INSERT INTO file_refs (file_id, conversation_id) VALUES ($1, $2)
             ON CONFLICT DO NOTHING",
            &[&id, &conversation.as_str()],
        )
        .await?;
        Ok(())
    }

    async fn file_refs(&self, id: &str) -> Result<Vec<ConversationId>, StoreError> {
        let c = self.client().await?;
        Ok(rows::rows(
            &c,
            "SELECT conversation_id FROM file_refs WHERE file_id = $1 ORDER BY conversation_id",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| ConversationId::from_stored(r.get(0)))
        .collect())
    }

    async fn file_usage(&self, owner: &UserId) -> Result<u64, StoreError> {
        let c = self.client().await?;
        let used: i64 = rows::row(
            &c,
            "SELECT COALESCE(SUM(size), 0)::BIGINT FROM files WHERE owner = $1",
            &[&owner.as_str()],
        )
        .await?
        .get(0);
        Ok(used as u64)
    }

    async fn unreferenced_files(
        &self,
        before_ms: i64,
        limit: u32,
    ) -> Result<Vec<FileRecord>, StoreError> {
        let c = self.client().await?;
        rows::rows(
            &c,
            &format!(
                "SELECT {COLUMNS} FROM files f
                 WHERE created_ms < $1
                   AND NOT EXISTS (SELECT 1 FROM file_refs r WHERE r.file_id = f.id)
                 ORDER BY created_ms, id LIMIT $2"
            ),
            &[&before_ms, &i64::from(limit)],
        )
        .await?
        .iter()
        .map(file_of)
        .collect()
    }

    async fn delete_file(&self, id: &str) -> Result<Deleted, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        let Some(sha) = row_opt(
            &tx,
            "DELETE FROM files WHERE id = $1
               AND NOT EXISTS (SELECT 1 FROM file_refs WHERE file_id = $1)
             RETURNING sha256",
            &[&id],
        )
        .await?
        .map(|r| r.get::<_, String>(0)) else {
            return Ok(Deleted::Kept);
        };
        let shared: bool = rows::row(
            &tx,
            "SELECT EXISTS (SELECT 1 FROM files WHERE sha256 = $1)",
            &[&sha],
        )
        .await?
        .get(0);
        tx.commit().await.map_err(db_err)?;
        Ok(if shared {
            Deleted::Record
        } else {
            Deleted::LastOfItsBytes
        })
    }
}
