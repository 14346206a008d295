//! What happens to a verified event: `accept` (in the webhook request) and `apply` (inline, or
//! in the queue consumer). Targets are decided by `core::route::targets`; each target kind is
//! one match arm in `apply`.

use serde::{Deserialize, Serialize};
use serde_json::json;
use worker::Env;

use crate::config::Config;
use crate::core::event::Decoded;
use crate::core::ids::is_valid_message_id;
use crate::core::route::{targets, Target};
use crate::core::status::{RecordMeta, RecordType, Source};
use crate::core::time::{format_rfc3339_millis, parse_rfc3339_nanos};
use crate::error::ApiError;
use crate::log;
use crate::store::status::StatusStore;

/// One verified event with what the envelope told us: the unit of work, and the body of a
/// queue message.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventJob {
    /// RBM's event JSON, verbatim.
    pub event: String,
    /// When the webhook received it (ms since the epoch).
    pub received_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pubsub_message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_time: Option<String>,
}

/// Runs every target of one event. Returns an error only for failures worth retrying (the
/// event was not recorded); events that can never be applied are logged and skipped.
pub async fn apply(
    env: &Env,
    cfg: &Config,
    decoded: &Decoded,
    job: &EventJob,
) -> Result<(), ApiError> {
    let event = &decoded.event;
    for target in targets(event, cfg.forward_url.as_ref().map(|_| &cfg.forward_kinds)) {
        match target {
            Target::RecordStatus(t) => record_status(env, cfg, decoded, job, t).await?,
            Target::Forward => {
                // Forwarding is done by the queue pipeline; nothing to do inline yet.
            }
        }
    }
    Ok(())
}

async fn record_status(
    env: &Env,
    cfg: &Config,
    decoded: &Decoded,
    job: &EventJob,
    t: RecordType,
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
    let received_at = format_rfc3339_millis(job.received_at);
    let at = event
        .send_time()
        .filter(|s| parse_rfc3339_nanos(s).is_some())
        .map(String::from)
        .unwrap_or_else(|| received_at.clone());
    let meta = RecordMeta {
        at,
        received_at,
        source: Source::Webhook,
        event_id: event.event_id().map(String::from),
        phone_number: event.phone_number().map(String::from),
        agent_id: event.agent_id().map(String::from),
        http_status: None,
    };
    StatusStore::open(env, cfg.status_ttl_secs)?
        .record(message_id, t, meta, &decoded.raw)
        .await
}
