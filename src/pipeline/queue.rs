//! The `EVENTS` queue: enqueue in the webhook, consume in `#[event(queue)]`, and store what
//! the platform dead-letters (`EVENTS_DLQ`) in KV for listing and replay.
//!
//! Each message is acked or retried on its own and the handler always returns `Ok(())`:
//! an `Err` from a queue handler fails (and retries) the whole batch.

use serde_json::json;
use worker::{Env, MessageBatch, MessageExt, QueueRetryOptionsBuilder, RawMessage};

use super::{apply_event, deliver_callback, Job};
use crate::config::{Config, Processing};
use crate::core::event::Decoded;
use crate::error::ApiError;
use crate::log;
use crate::store::dead_letters::DeadLetters;

pub const BINDING: &str = "EVENTS";
/// Events longer than this are applied in the webhook request instead of being queued: a
/// queue message holds at most 128 KB, and the event is escaped inside the job's JSON.
pub const MAX_QUEUED_EVENT: usize = 96 * 1024;
/// Longest retry delay (Google's own webhook retries back off to 600 s).
const MAX_RETRY_DELAY_SECS: u64 = 600;

/// Sends one job to `EVENTS`; failure → 503, so the webhook caller (RBM) retries.
pub async fn enqueue(env: &Env, job: &Job) -> Result<(), ApiError> {
    if crate::faults::injected(env, "queue_send") {
        return Err(ApiError::QueueUnavailable(format!(
            "The {BINDING} queue did not accept the event (injected fault)."
        )));
    }
    let queue = env.queue(BINDING).map_err(|_| {
        ApiError::QueueUnavailable(format!(
            "The {BINDING} queue binding is missing (or set PROCESSING=inline)."
        ))
    })?;
    let body = serde_json::to_string(job)
        .map_err(|e| ApiError::Internal(format!("The job could not be serialised: {e}.")))?;
    queue.send(body).await.map_err(|e| {
        ApiError::QueueUnavailable(format!("The {BINDING} queue did not accept the event: {e}."))
    })
}

/// A batch from `EVENTS` (work) or from the dead-letter queue (to be kept).
pub async fn consume(batch: MessageBatch<String>, env: Env) {
    let cfg = crate::config::Config::get(&env);
    let dead = is_dead_letter_queue(&batch.queue());
    // One at a time: duplicates in one batch then see each other's status writes.
    for msg in batch.raw_iter() {
        let job = match msg.body().as_string().map(|s| serde_json::from_str::<Job>(&s)) {
            Some(Ok(job)) => job,
            _ => {
                log::error("queue message is not a job; dropped", json!({"queueMessageId": msg.id()}));
                msg.ack();
                continue;
            }
        };
        let result =
            if dead { keep_dead_letter(&env, &cfg, &msg, &job).await } else { run(&env, &cfg, &job).await };
        match result {
            Ok(()) => msg.ack(),
            Err(e) => {
                let delay = retry_delay(&cfg, &msg);
                log::warn(
                    "job failed; will retry",
                    json!({"job": job.kind(), "queueMessageId": msg.id(), "error": e.message(), "retryInSeconds": delay}),
                );
                msg.retry_with_options(&QueueRetryOptionsBuilder::new().with_delay_seconds(delay).build());
            }
        }
    }
}

async fn run(env: &Env, cfg: &Config, job: &Job) -> Result<(), ApiError> {
    match job {
        Job::Event(ev) => match Decoded::from_bytes(ev.event.clone().into_bytes()) {
            Ok(decoded) => apply_event(env, cfg, &decoded, &ev.meta, Processing::Queue).await,
            Err(bad) => {
                log::error("queued event not understood; dropped", json!({"why": bad.why}));
                Ok(())
            }
        },
        Job::Callback(cb) => deliver_callback(cfg, cb).await,
    }
}

async fn keep_dead_letter(env: &Env, cfg: &Config, msg: &RawMessage, job: &Job) -> Result<(), ApiError> {
    let store = DeadLetters::open(env, cfg.status_ttl_secs)?;
    store.put(&msg.id(), job, worker::Date::now().as_millis()).await?;
    log::error("job dead-lettered; kept for replay", json!({"id": msg.id(), "job": job.kind()}));
    Ok(())
}

/// The dead-letter queue is the one whose name ends in `-dlq` (wrangler.toml: `rbm-events-dlq`).
fn is_dead_letter_queue(name: &str) -> bool {
    name.ends_with("-dlq")
}

/// Backoff without an attempt counter (workers-rs does not expose it): the delay is the
/// message's age, clamped to [RETRY_DELAY_SECONDS, 600]. Each retry roughly doubles the age,
/// so delays grow geometrically: 10, 20, 40, … 600 s with the default.
fn retry_delay(cfg: &Config, msg: &RawMessage) -> u32 {
    let age_secs = worker::Date::now().as_millis().saturating_sub(msg.timestamp().as_millis()) / 1000;
    let base = cfg.retry_delay_secs;
    let delay = if base == 0 { 0 } else { age_secs.clamp(base, MAX_RETRY_DELAY_SECS.max(base)) };
    u32::try_from(delay).unwrap_or(u32::MAX)
}
