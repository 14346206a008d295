//! `/v1/messages`: the status of agent messages.

use worker::Response;

use super::Cx;
use crate::core::ids::is_valid_message_id;
use crate::error::{json_response, ApiError};
use crate::store::status::StatusStore;

/// `GET /v1/messages/{messageId}`: the folded status record.
pub async fn status(message_id: &str, cx: &Cx) -> Result<Response, ApiError> {
    if !is_valid_message_id(message_id) {
        return Err(ApiError::InvalidMessageId);
    }
    let store = StatusStore::open(&cx.env, cx.cfg.status_ttl_secs)?;
    match store.view(message_id).await? {
        Some(view) => Ok(json_response(200, &view)),
        None => Err(ApiError::NotFound(format!(
            "No status is recorded for message {message_id}."
        ))),
    }
}
