//! What happens to a verified event: the shell side of `core::pipeline`.
//!
//! ```text
//! webhook ──intake──► Acknowledge (nothing to do)
//!                     Push ─────────► conversation object (typing; after the response)
//!                     Enqueue ──► EVENTS queue ──► queue::consume ──► apply_event
//!                     ApplyInline ──────────────────────────────────► apply_event
//! apply_event: core::pipeline::plan ─► KV record ─► conversation object ─► forward
//! ```
//! Every effect is idempotent (status records are blind puts of one key per event type; the
//! conversation ignores an event it has; forwards carry a stable `webhook-id`), so a retried
//! job may safely redo the effects that had already succeeded. Status callbacks are decided
//! and delivered by the conversation object (`crate::conversation`).

pub mod forward;
pub mod queue;

use serde_json::json;
use worker::Env;

use crate::config::Config;
use crate::conversation::client as conversation;
use crate::core::conversation::{object_name, Op};
use crate::core::event::Decoded;
use crate::core::pipeline::{intake, plan, CallbackJob, Effect, Intake, Job, Receipt};
use crate::error::ApiError;
use crate::log;
use crate::store::dead_letters::DeadLetters;
use crate::store::status::StatusStore;

/// In the webhook request: hand a verified event to processing. Errors mean "not safe yet"
/// and become a non-200, so RBM retries.
pub async fn accept(cx: &crate::http::Cx, decoded: Decoded, receipt: Receipt) -> Result<(), ApiError> {
    match intake(&decoded, &receipt, &cx.cfg.pipeline()) {
        Intake::Acknowledge => Ok(()),
        Intake::Typing { agent, phone } => {
            // A live frame only: best effort, after the response, never queued.
            let env = cx.env.clone();
            cx.ctx.wait_until(async move {
                if let Err(e) = conversation::op(&env, &object_name(&agent, &phone), &Op::Typing).await {
                    log::warn("live push failed", json!({"error": e.message()}));
                }
            });
            Ok(())
        }
        Intake::Enqueue(job) => queue::enqueue(&cx.env, job).await,
        Intake::ApplyInline => apply_event(&cx.env, &cx.cfg, &decoded, &receipt).await,
    }
}

/// Keeps a verified event that could not be decoded as a dead letter (nothing verified is
/// dropped); the webhook then acknowledges it, since RBM's retries cannot make it readable.
pub async fn keep_unparseable(
    env: &Env,
    cfg: &Config,
    data: Vec<u8>,
    why: String,
    receipt: Receipt,
) -> Result<(), ApiError> {
    let store = DeadLetters::open(env, cfg.status_ttl_secs)?;
    let id = crate::core::pipeline::unparseable_id(&data);
    let job = Job::Unparseable { data, why, meta: receipt };
    store.put(&id, &job, crate::runtime::now_ms()).await?;
    log::error("verified event not understood; kept as a dead letter", json!({"id": id}));
    Ok(())
}

/// Applies one event: one call to the planner, then each effect in order. An error means
/// "retry me".
pub async fn apply_event(
    env: &Env,
    cfg: &Config,
    decoded: &Decoded,
    receipt: &Receipt,
) -> Result<(), ApiError> {
    let mut store = None;
    for effect in plan(decoded, receipt, &cfg.pipeline()) {
        match effect {
            Effect::Record { message_id, record, meta } => {
                let s = match store.take() {
                    Some(s) => s,
                    None => StatusStore::open(env, cfg.status_ttl_secs)?,
                };
                s.record(&message_id, record, meta, &decoded.raw).await?;
                store = Some(s);
            }
            Effect::Conversation { agent, phone, op } => {
                conversation::op(env, &object_name(&agent, &phone), &op).await?;
            }
            Effect::Forward { id, body } => {
                let url = cfg.forward_url.as_deref().ok_or(ApiError::ConfigMissing("FORWARD_URL"))?;
                forward::deliver(cfg, url, cfg.forward_key()?, &id, &body).await?
            }
            Effect::Skip { why } => log::warn(
                "event not applied",
                json!({"kind": decoded.event.kind(), "messageId": decoded.event.message_id(), "eventId": decoded.event.event_id(), "why": why}),
            ),
        }
    }
    Ok(())
}

/// POSTs a status change to its callback URL, signed with `CALLBACK_SECRET` (else
/// `FORWARD_SECRET`).
pub async fn deliver_callback(cfg: &Config, cb: &CallbackJob) -> Result<(), ApiError> {
    forward::deliver(cfg, &cb.url, cfg.callback_key()?, &cb.id, &cb.body).await
}
