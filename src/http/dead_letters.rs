//! `/v1/dead-letters`: jobs that exhausted their retries, kept for inspection and replay.

use serde_json::json;
use worker::Response;

use super::{query_param, Cx, Request};
use crate::core::pipeline::Job;
use crate::error::{json_response, ApiError};
use crate::pipeline::queue;
use crate::store::dead_letters::DeadLetters;

/// `GET /v1/dead-letters[?cursor=…]`
pub async fn list(req: &Request, cx: &Cx) -> Result<Response, ApiError> {
    let store = DeadLetters::open(&cx.env, cx.cfg.status_ttl_secs)?;
    let (items, cursor) = store.list(query_param(req, "cursor")).await?;
    Ok(json_response(200, &json!({"deadLetters": items, "cursor": cursor})))
}

/// `POST /v1/dead-letters/{id}/replay`: back onto `EVENTS`. The entry is taken out before it
/// is enqueued, so the same dead letter is never replayed twice; if the queue refuses it, it
/// is put back and the caller gets 503. Undecodable data (`unparseable`) cannot be replayed:
/// 409, and it stays listed.
pub async fn replay(id: &str, cx: &Cx) -> Result<Response, ApiError> {
    let store = DeadLetters::open(&cx.env, cx.cfg.status_ttl_secs)?;
    let (text, _) = store.get(id).await?.ok_or_else(|| not_found(id))?;
    let job = match Job::from_json(&text) {
        Ok(Job::Unparseable { .. }) => {
            return Err(ApiError::Conflict(format!(
                "Dead letter {id} holds data that could not be decoded; it cannot be replayed (delete it once inspected)."
            )))
        }
        Ok(job) => job,
        Err(why) => return Err(ApiError::Conflict(format!("Dead letter {id} cannot be replayed: {why}."))),
    };
    let Some((text, meta)) = store.take(id).await? else {
        return Err(not_found(id)); // replayed by someone else meanwhile
    };
    if let Err(e) = queue::enqueue(&cx.env, job.to_json()).await {
        store.restore(id, text, meta).await?;
        return Err(e);
    }
    Ok(json_response(202, &json!({"id": id, "replayed": true, "job": job.kind()})))
}

/// `DELETE /v1/dead-letters/{id}`: works on any entry, readable or not.
pub async fn delete(id: &str, cx: &Cx) -> Result<Response, ApiError> {
    let store = DeadLetters::open(&cx.env, cx.cfg.status_ttl_secs)?;
    store.get(id).await?.ok_or_else(|| not_found(id))?;
    store.delete(id).await?;
    Ok(json_response(200, &json!({"id": id, "deleted": true})))
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("No dead letter {id}."))
}
