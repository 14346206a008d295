//! Dead letters in the `STATUS` KV namespace, under `dlq:`.
//!
//! ```text
//! key       dlq:{queue message id}
//! value     the job JSON (replayable as is)
//! metadata  {"deadAt","job","messageId"?,"kind"?}   kind "unparseable": undecodable data
//! expiry    STATUS_TTL_DAYS
//! ```

use serde::Serialize;
use worker::Env;

use crate::core::event::Decoded;
use crate::core::ids::is_valid_message_id;
use crate::core::pipeline::Job;
use crate::core::time::format_rfc3339_millis;
use crate::error::ApiError;
use crate::store::kv::Namespace;
use crate::store::status::BINDING;

const PREFIX: &str = "dlq:";
/// Entries per page of `GET /v1/dead-letters`.
pub const PAGE: u64 = 100;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterMeta {
    pub dead_at: String,
    /// `event`, `callback` or `unparseable`.
    pub job: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The RBM event kind, for event jobs; `unparseable` for data that could not be decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

impl DeadLetterMeta {
    /// Read by hand (a derived `Deserialize` costs the wasm more).
    fn from_json(text: &str) -> Option<DeadLetterMeta> {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        let s = |k: &str| v.get(k).and_then(serde_json::Value::as_str).map(String::from);
        Some(DeadLetterMeta {
            dead_at: s("deadAt")?,
            job: s("job")?,
            message_id: s("messageId"),
            kind: s("kind"),
        })
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub id: String,
    #[serde(flatten)]
    pub meta: Option<DeadLetterMeta>,
}

pub struct DeadLetters {
    kv: Namespace,
    ttl_secs: u64,
}

fn storage(e: worker::kv::KvError) -> ApiError {
    ApiError::StorageUnavailable(format!("The dead-letter store failed: {e}."))
}

impl DeadLetters {
    pub fn open(env: &Env, ttl_secs: u64) -> Result<DeadLetters, ApiError> {
        let kv = Namespace::bound(env, BINDING).ok_or(ApiError::ConfigMissing(BINDING))?;
        Ok(DeadLetters { kv, ttl_secs })
    }

    pub async fn put(&self, id: &str, job: &Job, now_ms: u64) -> Result<(), ApiError> {
        let (message_id, kind) = match job {
            Job::Event { event, .. } => match Decoded::from_bytes(event.clone().into_bytes()) {
                Ok(d) => (d.event.message_id().map(String::from), Some(d.event.kind().to_string())),
                Err(_) => (None, Some("unparseable".to_string())),
            },
            Job::Callback(cb) => (Some(cb.message_id.clone()), None),
            Job::Unparseable { .. } => (None, Some("unparseable".to_string())),
        };
        let meta = DeadLetterMeta {
            dead_at: format_rfc3339_millis(now_ms),
            job: job.kind().into(),
            message_id: message_id.filter(|m| m.len() <= 200),
            kind: kind.filter(|k| k.len() <= 100),
        };
        self.put_raw(id, job.to_json(), meta).await
    }

    async fn put_raw(&self, id: &str, value: String, meta: DeadLetterMeta) -> Result<(), ApiError> {
        let meta = serde_json::to_string(&meta).unwrap_or_default();
        self.kv
            .put_text(&format!("{PREFIX}{id}"), &value, Some(&meta), self.ttl_secs.max(60))
            .await
            .map_err(storage)
    }

    /// One page of dead letters and the cursor of the next page, if any.
    pub async fn list(&self, cursor: Option<String>) -> Result<(Vec<DeadLetter>, Option<String>), ApiError> {
        let page = self.kv.list_page(PREFIX, Some(PAGE), cursor.as_deref()).await.map_err(storage)?;
        let items = page
            .keys
            .into_iter()
            .map(|k| DeadLetter {
                id: k.name.trim_start_matches(PREFIX).to_string(),
                meta: k.metadata.as_deref().and_then(DeadLetterMeta::from_json),
            })
            .collect();
        Ok((items, page.cursor))
    }

    /// The stored entry (value and metadata) as kept, whether or not it still reads as a job.
    pub async fn get(&self, id: &str) -> Result<Option<(String, Option<DeadLetterMeta>)>, ApiError> {
        check_id(id)?;
        let (value, meta) = self.kv.text_with_metadata(&format!("{PREFIX}{id}")).await.map_err(storage)?;
        // Odd metadata never makes an entry unreachable.
        Ok(value.map(|v| (v, meta.as_deref().and_then(DeadLetterMeta::from_json))))
    }

    /// Takes an entry out for replay: removed first, so a second replay finds nothing; put
    /// back as it was by [`DeadLetters::restore`] if the replay fails.
    pub async fn take(&self, id: &str) -> Result<Option<(String, Option<DeadLetterMeta>)>, ApiError> {
        let entry = self.get(id).await?;
        if entry.is_some() {
            self.delete(id).await?;
        }
        Ok(entry)
    }

    pub async fn restore(
        &self,
        id: &str,
        value: String,
        meta: Option<DeadLetterMeta>,
    ) -> Result<(), ApiError> {
        let meta = meta.unwrap_or_else(|| DeadLetterMeta {
            dead_at: String::new(),
            job: "unknown".into(),
            message_id: None,
            kind: None,
        });
        self.put_raw(id, value, meta).await
    }

    pub async fn delete(&self, id: &str) -> Result<(), ApiError> {
        check_id(id)?;
        self.kv.remove(&format!("{PREFIX}{id}")).await.map_err(storage)
    }
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if is_valid_message_id(id) {
        Ok(())
    } else {
        Err(ApiError::InvalidRequest(
            "A dead-letter id is 1 to 200 characters of A-Z a-z 0-9 . _ ~ = + -.".into(),
        ))
    }
}
