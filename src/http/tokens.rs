//! `POST /v1/tokens`: mint a short-lived scoped token for a browser (API key callers only).

use serde_json::json;
use worker::Response;

use super::{Cx, Request};
use crate::core::time::format_rfc3339_millis;
use crate::core::token::{claims_from_request, mint};
use crate::error::{json_response, ApiError};
use crate::runtime::random_uuid;

pub async fn create(req: Request, cx: &Cx) -> Result<Response, ApiError> {
    let key = cx.cfg.token_key().ok_or(ApiError::ConfigMissing("TOKEN_SIGNING_KEY"))??;
    let body = req.body(16 * 1024).await?;
    let jti = random_uuid().map_err(ApiError::Internal)?;
    let claims = claims_from_request(&body, jti, cx.now_ms / 1000, cx.cfg.agent_id.as_deref())?;
    let token = mint(key, &claims);
    let scopes: Vec<&str> = claims.scopes.iter().map(|s| s.as_str()).collect();
    Ok(json_response(
        200,
        &json!({
            "token": token,
            "expiresAt": format_rfc3339_millis(claims.exp * 1000),
            "scopes": scopes,
            "agentId": claims.agent_id,
            "phoneNumbers": claims.phone_numbers,
            "maxSends": claims.max_sends,
        }),
    ))
}
