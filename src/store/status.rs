//! The `STATUS` KV binding: one key per (agent message, event type).
//!
//! ```text
//! key       msg:{messageId}:{TYPE}      TYPE = SENT | SEND_FAILED | REVOKE_REQUESTED | DELIVERED
//!                                              | READ | TTL_EXPIRATION_REVOKED | TTL_EXPIRATION_REVOKE_FAILED
//! metadata  RecordMeta as JSON          {"at","receivedAt","source","eventId"?,"phoneNumber"?,"agentId"?,"httpStatus"?}
//! value     the event's own JSON        RBM's event verbatim (webhook), RBM's answer (SENT), or `{}`
//! expiry    STATUS_TTL_DAYS             set on every write
//! ```
//! Callbacks and exact status decisions live in the message's conversation object
//! (`crate::conversation`), not here.
//! Writes are blind puts (no read first); the view is one `list` of the prefix, folded by
//! `core::status::fold`. See the module doc of `core::status` for why.

use worker::Env;

use crate::core::ids::is_valid_message_id;
use crate::core::status::{fold, key, key_prefix, type_of_key, RecordMeta, RecordType, StatusView};
use crate::error::ApiError;
use crate::store::kv::Namespace;

pub const BINDING: &str = "STATUS";

pub struct StatusStore {
    kv: Namespace,
    ttl_secs: u64,
    /// Test builds only (`crate::faults`): every write fails.
    fail_writes: bool,
}

impl StatusStore {
    pub fn open(env: &Env, ttl_secs: u64) -> Result<StatusStore, ApiError> {
        let kv = Namespace::bound(env, BINDING).ok_or(ApiError::ConfigMissing(BINDING))?;
        Ok(StatusStore { kv, ttl_secs, fail_writes: crate::faults::injected(env, "kv_put") })
    }

    /// Records that `t` happened to `message_id`. Idempotent: a duplicate rewrites the same key.
    pub async fn record(
        &self,
        message_id: &str,
        t: RecordType,
        meta: RecordMeta,
        value: &str,
    ) -> Result<(), ApiError> {
        if !is_valid_message_id(message_id) {
            return Err(ApiError::InvalidMessageId);
        }
        self.put(&key(message_id, t), value, Some(meta.bounded())).await
    }

    /// One blind put with the store's expiry (KV's minimum TTL is 60 s).
    async fn put(&self, key: &str, value: &str, meta: Option<RecordMeta>) -> Result<(), ApiError> {
        if self.fail_writes {
            return Err(ApiError::StorageUnavailable(
                "The status store did not accept the write (injected fault).".into(),
            ));
        }
        let unavailable = |e: worker::kv::KvError| {
            ApiError::StorageUnavailable(format!("The status store did not accept the write: {e}."))
        };
        let meta = meta.map(|m| serde_json::to_string(&m).unwrap_or_default());
        self.kv.put_text(key, value, meta.as_deref(), self.ttl_secs.max(60)).await.map_err(unavailable)
    }

    /// The folded status of `message_id`, or `None` when nothing is recorded.
    pub async fn view(&self, message_id: &str) -> Result<Option<StatusView>, ApiError> {
        Ok(fold(message_id, self.records(message_id).await?))
    }

    /// Every record of `message_id` (one list call: at most seven keys, one page).
    pub async fn records(&self, message_id: &str) -> Result<Vec<(RecordType, RecordMeta)>, ApiError> {
        if !is_valid_message_id(message_id) {
            return Err(ApiError::InvalidMessageId);
        }
        let prefix = key_prefix(message_id);
        let page =
            self.kv.list_page(&prefix, None, None).await.map_err(|e| {
                ApiError::StorageUnavailable(format!("The status store could not be read: {e}."))
            })?;
        Ok(page
            .keys
            .into_iter()
            .filter_map(|k| {
                let t = type_of_key(&k.name, &prefix)?;
                let meta = RecordMeta::from_json(&k.metadata?)?;
                Some((t, meta))
            })
            .collect())
    }

    /// The stored value of one record (RBM's answer for SENT, the event for webhook records).
    pub async fn value(&self, message_id: &str, t: RecordType) -> Result<Option<String>, ApiError> {
        if !is_valid_message_id(message_id) {
            return Err(ApiError::InvalidMessageId);
        }
        self.kv
            .text(&key(message_id, t))
            .await
            .map_err(|e| ApiError::StorageUnavailable(format!("The status store could not be read: {e}.")))
    }
}
