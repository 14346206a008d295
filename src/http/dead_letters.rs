//! `/v1/dead-letters`: jobs that exhausted their retries, kept for inspection and replay.

use serde_json::json;
use worker::{Request, Response};

use super::{query_param, Cx};
use crate::error::{json_response, ApiError};
use crate::pipeline::queue;
use crate::store::dead_letters::DeadLetters;

/// `GET /v1/dead-letters[?cursor=…]`
pub async fn list(req: &Request, cx: &Cx) -> Result<Response, ApiError> {
    let store = DeadLetters::open(&cx.env, cx.cfg.status_ttl_secs)?;
    let (items, cursor) = store.list(query_param(req, "cursor")).await?;
    Ok(json_response(200, &json!({"deadLetters": items, "cursor": cursor})))
}

/// `POST /v1/dead-letters/{id}/replay`: back onto `EVENTS`, then removed from the store.
pub async fn replay(id: &str, cx: &Cx) -> Result<Response, ApiError> {
    let store = DeadLetters::open(&cx.env, cx.cfg.status_ttl_secs)?;
    let job = store.get(id).await?.ok_or_else(|| not_found(id))?;
    queue::enqueue(&cx.env, &job).await?;
    store.delete(id).await?;
    Ok(json_response(202, &json!({"id": id, "replayed": true, "job": job.kind()})))
}

/// `DELETE /v1/dead-letters/{id}`
pub async fn delete(id: &str, cx: &Cx) -> Result<Response, ApiError> {
    let store = DeadLetters::open(&cx.env, cx.cfg.status_ttl_secs)?;
    store.get(id).await?.ok_or_else(|| not_found(id))?;
    store.delete(id).await?;
    Ok(json_response(200, &json!({"id": id, "deleted": true})))
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("No dead letter {id}."))
}
