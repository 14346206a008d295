//! What happens to a verified event.
//!
//! ```text
//! webhook ──accept──► PROCESSING=queue:  EVENTS queue ──► queue::consume ──► apply_event
//!                     PROCESSING=inline: apply_event in the request
//! ```
//! `apply_event` runs the event's targets (`core::route::targets`), one match arm per target
//! kind. Every step is idempotent (status records are blind puts of one key per event type;
//! forwards carry a stable `webhook-id`), so a retried job may safely redo steps that had
//! already succeeded.

pub mod forward;
pub mod queue;

use serde::{Deserialize, Serialize};
use serde_json::json;
use worker::Env;

use crate::config::{Config, Processing};
use crate::core::event::Decoded;
use crate::core::ids::is_valid_message_id;
use crate::core::outbound::{forward_document, stable_event_id};
use crate::core::route::{targets, ForwardKinds, Target};
use crate::core::status::{fold, project, RecordMeta, RecordType};
use crate::error::ApiError;
use crate::log;
use crate::store::status::StatusStore;

/// A unit of asynchronous work: the body of an `EVENTS` queue message (as JSON text).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Job {
    /// A verified RBM event to apply.
    Event(EventJob),
    /// A status change to POST to a message's `statusCallback`.
    Callback(CallbackJob),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventJob {
    /// RBM's event JSON, verbatim.
    pub event: String,
    pub meta: Receipt,
}

/// How the webhook received an event (what the envelope said, and when).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    /// When the webhook received it (ms since the epoch).
    pub received_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pubsub_message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_time: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallbackJob {
    pub url: String,
    /// `webhook-id`: `{messageId}.{STATUS}`, the same for every retry of this change.
    pub id: String,
    pub message_id: String,
    /// The status view after the change, as JSON.
    pub body: String,
}

impl Job {
    pub fn kind(&self) -> &'static str {
        match self {
            Job::Event(_) => "event",
            Job::Callback(_) => "callback",
        }
    }
}

/// In the webhook request: hand a verified event to processing. Errors mean "not safe yet"
/// and become a non-200, so RBM retries.
pub async fn accept(env: &Env, cfg: &Config, decoded: Decoded, meta: Receipt) -> Result<(), ApiError> {
    // A queue message holds at most 128 KB; RBM events are a few KB, but a larger one is
    // processed in the request rather than refused forever.
    if cfg.processing == Processing::Inline || decoded.raw.len() > queue::MAX_QUEUED_EVENT {
        return apply_event(env, cfg, &decoded, &meta, Processing::Inline).await;
    }
    queue::enqueue(env, &Job::Event(EventJob { event: decoded.raw, meta })).await
}

/// The kinds forwarded, or `None` when no backend is configured.
fn forward_kinds(cfg: &Config) -> Option<&ForwardKinds> {
    cfg.forward_url.as_ref().map(|_| &cfg.forward_kinds)
}

/// Runs every target of one event. An error means "retry me" (nothing is lost by redoing the
/// steps that succeeded); events that can never be applied are logged and skipped.
pub async fn apply_event(
    env: &Env,
    cfg: &Config,
    decoded: &Decoded,
    meta: &Receipt,
    mode: Processing,
) -> Result<(), ApiError> {
    for target in targets(&decoded.event, forward_kinds(cfg)) {
        match target {
            Target::RecordStatus(t) => record_status(env, cfg, decoded, meta, t, mode).await?,
            Target::Forward => forward_event(cfg, decoded, meta).await?,
        }
    }
    Ok(())
}

async fn forward_event(cfg: &Config, decoded: &Decoded, meta: &Receipt) -> Result<(), ApiError> {
    let (Some(url), Some(secret)) = (&cfg.forward_url, &cfg.forward_secret) else {
        return Err(ApiError::ConfigMissing("FORWARD_SECRET"));
    };
    let id = stable_event_id(decoded, meta.pubsub_message_id.as_deref());
    let body = forward_document(decoded, &id, meta.received_at);
    forward::deliver(cfg, url, secret, &id, &body).await
}

/// Records a receipt or TTL notice; when it changes the message's status and the message has
/// a `statusCallback`, the callback job is enqueued **before** the write, so a failure to
/// enqueue leaves the change un-recorded and the retry enqueues it again (at-least-once, with a
/// stable `webhook-id` for the receiver to deduplicate). Inline, see below.
async fn record_status(
    env: &Env,
    cfg: &Config,
    decoded: &Decoded,
    receipt: &Receipt,
    t: RecordType,
    mode: Processing,
) -> Result<(), ApiError> {
    let event = &decoded.event;
    let Some(message_id) = event.message_id().filter(|id| is_valid_message_id(id)) else {
        // Retrying cannot make a missing or unusable id valid: log it and acknowledge.
        log::warn(
            "receipt not storable",
            json!({"kind": event.kind(), "messageId": event.message_id(), "eventId": event.event_id(), "why": "missing or invalid messageId"}),
        );
        return Ok(());
    };
    let meta = RecordMeta::from_event(event, receipt.received_at);
    let store = StatusStore::open(env, cfg.status_ttl_secs)?;
    // Callbacks are signed with FORWARD_SECRET; without it none can exist (the send relay
    // refuses a statusCallback), so the extra read is skipped.
    let callback = match cfg.forward_secret {
        Some(_) => status_change_callback(&store, message_id, t, &meta).await?,
        None => None,
    };
    match (callback, mode) {
        (None, _) => store.record(message_id, t, meta, &decoded.raw).await,
        (Some(cb), Processing::Queue) => {
            queue::enqueue(env, &Job::Callback(cb)).await?;
            store.record(message_id, t, meta, &decoded.raw).await
        }
        (Some(cb), Processing::Inline) => {
            // Without a queue the receipt is recorded first and the callback is best effort: a
            // slow or dead callback URL must not hold up RBM's delivery queue (shared by all
            // of a partner's agents) nor leave the receipt unrecorded.
            store.record(message_id, t, meta, &decoded.raw).await?;
            if let Err(e) = deliver_callback(cfg, &cb).await {
                log::error(
                    "status callback failed (inline: not retried)",
                    json!({"webhookId": cb.id, "error": e.message()}),
                );
            }
            Ok(())
        }
    }
}

/// The callback to send if recording `t` changes the message's status, else `None`.
async fn status_change_callback(
    store: &StatusStore,
    message_id: &str,
    t: RecordType,
    meta: &RecordMeta,
) -> Result<Option<CallbackJob>, ApiError> {
    // One point read first: most messages have no callback, and then nothing else is read.
    let Some(url) = store.callback(message_id).await? else {
        return Ok(None);
    };
    let mut records = store.records(message_id).await?;
    let before = project(records.iter().map(|(r, _)| *r));
    if records.iter().any(|(r, _)| *r == t) || project(records.iter().map(|(r, _)| *r).chain([t])) == before {
        return Ok(None); // a duplicate, or an event that does not change the status
    }
    records.push((t, meta.clone()));
    let Some(view) = fold(message_id, records) else {
        return Ok(None);
    };
    let status = serde_json::to_value(view.status).unwrap_or_default();
    Ok(Some(CallbackJob {
        url,
        id: format!("{message_id}.{}", status.as_str().unwrap_or("UNKNOWN")),
        message_id: message_id.to_string(),
        body: serde_json::to_string(&view).unwrap_or_default(),
    }))
}

/// POSTs a status change to its callback URL, signed like forwards.
pub async fn deliver_callback(cfg: &Config, cb: &CallbackJob) -> Result<(), ApiError> {
    let secret = cfg.forward_secret.as_deref().ok_or(ApiError::ConfigMissing("FORWARD_SECRET"))?;
    forward::deliver(cfg, &cb.url, secret, &cb.id, &cb.body).await
}
