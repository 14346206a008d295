//! `/v1/phones/{phoneNumber}/…`: agent events (READ, IS_TYPING) and capability checks.

use serde_json::json;
use worker::{Method, Response};

use super::{Cx, Request};
use crate::core::ids::is_e164;
use crate::core::validate::{validate_agent_event, AgentEventRequest};
use crate::error::ApiError;
use crate::google::rbm::{self, phone_path};
use crate::runtime::random_uuid;

/// The phone number of a path segment: `+1555…` or `%2B1555…`, E.164.
pub fn phone_from_segment(segment: &str) -> Result<String, ApiError> {
    let phone = match segment.get(..3) {
        Some(p) if p.eq_ignore_ascii_case("%2B") => format!("+{}", &segment[3..]),
        _ => segment.to_string(),
    };
    if is_e164(&phone) {
        Ok(phone)
    } else {
        Err(ApiError::InvalidRequest("The phone number in the path must be E.164, like +12223334444.".into()))
    }
}

/// `POST /v1/phones/{phoneNumber}/events` → agentEvents.create with a fresh eventId.
pub async fn event(req: Request, phone: &str, agent: &str, cx: &Cx) -> Result<Response, ApiError> {
    let body = req.body(4096).await?;
    let relayed = match validate_agent_event(&body)? {
        AgentEventRequest::Read { message_id } => {
            json!({"eventType": "READ", "messageId": message_id})
        }
        AgentEventRequest::IsTyping => json!({"eventType": "IS_TYPING"}),
    };
    let event_id = random_uuid().map_err(ApiError::Internal)?;
    let path = format!("{}/agentEvents?eventId={event_id}&agentId={agent}", phone_path(phone));
    let answer = rbm::call(
        &cx.cfg,
        cx.now_ms,
        cx.cfg.api_base_for(agent),
        Method::Post,
        &path,
        Some(&relayed.to_string()),
    )
    .await?;
    let out = json!({"eventId": event_id, "phoneNumber": phone, "agentId": agent, "rbm": answer.body});
    Ok(answer.respond(&out))
}

/// `GET /v1/phones/{phoneNumber}/capabilities` → phones.getCapabilities with a fresh requestId.
pub async fn capabilities(phone: &str, agent: &str, cx: &Cx) -> Result<Response, ApiError> {
    let request_id = random_uuid().map_err(ApiError::Internal)?;
    let path = format!("{}/capabilities?requestId={request_id}&agentId={agent}", phone_path(phone));
    let answer = rbm::call(&cx.cfg, cx.now_ms, cx.cfg.api_base_for(agent), Method::Get, &path, None).await?;
    let mut out = json!({"phoneNumber": phone, "agentId": agent, "rbm": answer.body});
    if answer.is_success() {
        out["rcsReachable"] = true.into();
        out["features"] = answer.body.get("features").cloned().unwrap_or_else(|| json!([]));
    } else if answer.status == 404 {
        out["rcsReachable"] = false.into();
    }
    Ok(answer.respond(&out))
}
