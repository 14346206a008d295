//! The `EVENTS` queue: enqueue in the webhook, consume in `#[event(queue)]`, and store what
//! the platform dead-letters (`EVENTS_DLQ`) in KV for listing and replay.
//!
//! Each message is acked or retried on its own and the handler always returns `Ok(())`:
//! an `Err` from a queue handler fails (and retries) the whole batch.

use js_sys::{Object, Reflect};
use serde_json::json;
use wasm_bindgen::{JsCast, JsValue};
use worker::worker_sys::{Message, MessageBatch};
use worker::Env;

use super::{apply_event, deliver_callback};
use crate::config::Config;
use crate::core::event::Decoded;
use crate::core::pipeline::Job;
use crate::error::ApiError;
use crate::log;
use crate::store::dead_letters::DeadLetters;

pub const BINDING: &str = "EVENTS";
/// Longest retry delay (Google's own webhook retries back off to 600 s).
const MAX_RETRY_DELAY_SECS: u64 = 600;

/// Sends one job (its JSON text, `core::pipeline::Job::to_json`) to `EVENTS` as a text message:
/// the bytes sized by the planner are the bytes sent. Failure → 503, so RBM retries.
pub async fn enqueue(env: &Env, job: String) -> Result<(), ApiError> {
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
    // Called directly: `Queue::send` converts its options through serde_wasm_bindgen.
    let options = Object::new();
    let _ = Reflect::set(&options, &"contentType".into(), &"text".into());
    let queue: &worker::worker_sys::Queue = queue.as_ref().unchecked_ref();
    let sent = match queue.send(JsValue::from(job), options.into()) {
        Ok(promise) => wasm_bindgen_futures::JsFuture::from(promise).await,
        Err(e) => Err(e),
    };
    sent.map(|_| ()).map_err(|e| {
        let e = worker::Error::from(e);
        ApiError::QueueUnavailable(format!("The {BINDING} queue did not accept the event: {e}."))
    })
}

/// A batch from `EVENTS` (work) or from the dead-letter queue (to be kept). Read through the
/// runtime's own objects: `worker::MessageBatch` converts retry options through
/// serde_wasm_bindgen.
pub async fn consume(batch: MessageBatch, env: Env) {
    let cfg = Config::get(&env);
    let queue_name = batch.queue().map(String::from).unwrap_or_default();
    let dead = is_dead_letter_queue(&queue_name);
    let messages = batch.messages().unwrap_or_default();
    // One at a time: duplicates in one batch then see each other's status writes.
    for msg in messages.iter().map(JsCast::unchecked_into::<Message>) {
        let text = msg.body().ok().and_then(|b| b.as_string()).unwrap_or_default();
        let result = match Job::from_json(&text) {
            Ok(job) if dead => keep_dead_letter(&env, &cfg, &msg, &job).await,
            Ok(job) => run(&env, &cfg, &job).await,
            Err(why) => {
                // Not ours to understand, but never dropped: kept as an unparseable dead letter.
                let job = Job::Unparseable { data: text.into_bytes(), why, meta: Default::default() };
                keep_dead_letter(&env, &cfg, &msg, &job).await
            }
        };
        match result {
            Ok(()) => {
                let _ = msg.ack();
            }
            Err(e) => {
                let delay = retry_delay(&cfg, &msg);
                log::warn(
                    "job failed; will retry",
                    json!({"queue": queue_name, "queueMessageId": id(&msg), "error": e.message(), "retryInSeconds": delay}),
                );
                let options = Object::new();
                let _ = Reflect::set(&options, &"delaySeconds".into(), &JsValue::from(delay));
                let _ = msg.retry(options.into());
            }
        }
    }
}

async fn run(env: &Env, cfg: &std::rc::Rc<Config>, job: &Job) -> Result<(), ApiError> {
    match job {
        Job::Event { event, meta } => match Decoded::from_bytes(event.clone().into_bytes()) {
            Ok(decoded) => apply_event(env, cfg, &decoded, meta).await,
            Err(bad) => super::keep_unparseable(env, cfg, bad.data, bad.why, meta.clone()).await,
        },
        Job::Callback(cb) => deliver_callback(cfg, cb).await,
        Job::Unparseable { data, why, meta } => {
            super::keep_unparseable(env, cfg, data.clone(), why.clone(), meta.clone()).await
        }
    }
}

async fn keep_dead_letter(env: &Env, cfg: &Config, msg: &Message, job: &Job) -> Result<(), ApiError> {
    let store = DeadLetters::open(env, cfg.status_ttl_secs)?;
    store.put(&id(msg), job, crate::runtime::now_ms()).await?;
    log::error("job dead-lettered; kept for replay", json!({"id": id(msg), "job": job.kind()}));
    Ok(())
}

/// The queue message's id (system-generated, never absent).
fn id(msg: &Message) -> String {
    msg.id().map(String::from).unwrap_or_default()
}

/// The dead-letter queue is the one whose name ends in `-dlq` (wrangler.toml: `rbm-events-dlq`).
fn is_dead_letter_queue(name: &str) -> bool {
    name.ends_with("-dlq")
}

/// Backoff without an attempt counter (workers-rs does not expose it): the delay is the
/// message's age, clamped to [RETRY_DELAY_SECONDS, 600]. Each retry roughly doubles the age,
/// so delays grow geometrically: 10, 20, 40, … 600 s with the default.
fn retry_delay(cfg: &Config, msg: &Message) -> u32 {
    let sent_ms = msg.timestamp().map_or(0.0, |t| t.get_time()) as u64;
    let age_secs = crate::runtime::now_ms().saturating_sub(sent_ms) / 1000;
    let base = cfg.retry_delay_secs;
    let delay = if base == 0 { 0 } else { age_secs.clamp(base, MAX_RETRY_DELAY_SECS.max(base)) };
    u32::try_from(delay).unwrap_or(u32::MAX)
}
