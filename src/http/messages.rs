//! `/v1/messages`: send (relay to agentMessages.create), revoke, and read the status.
//!
//! A send is synchronous at RBM (200 = accepted, or an error at once); delivery is not. The
//! relay records `SENT` / `SEND_FAILED` before answering, so a status read right after shows
//! it, and webhook receipts that raced ahead are never overwritten (one key per event type).

use serde_json::{json, Value};
use worker::{Method, Response};

use super::auth::Caller;
use super::{agent_for, query_param, Cx, Request};
use crate::conversation::client as conversation;
use crate::core::conversation::{object_name, FallbackOrder, Op};
use crate::core::ids::is_e164;
use crate::core::ids::is_valid_message_id;
use crate::core::status::{RecordMeta, RecordType, Source, StatusView};
use crate::core::time::format_rfc3339_millis;
use crate::core::token::Scope;
use crate::core::validate::validate_send;
use crate::error::{json_response, ApiError};
use crate::google::rbm::{self, phone_path};
use crate::log;
use crate::runtime::random_uuid;
use crate::store::limits;
use crate::store::status::StatusStore;

/// Largest request body read at all (validation then enforces RBM's 250 KB).
const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// `POST /v1/messages`
///
/// Idempotent like a payment API: a `messageId` that already has a SENT record is answered
/// from that record (`"replayed": true`) without calling RBM, and RBM's own 409 ALREADY_EXISTS
/// is answered the same way. A message's `statusCallback`, once set, is never replaced.
pub async fn send(req: Request, caller: &Caller, cx: &Cx) -> Result<Response, ApiError> {
    caller.require(Scope::MessagesSend, None)?;
    // Read up to 1 MiB so an over-limit message gets validation's 400 naming the limit;
    // beyond that, 413 without reading further.
    let body = req.body(MAX_REQUEST_BYTES).await?;
    let send = validate_send(&body)?;
    drop(body);
    caller.require(Scope::MessagesSend, Some(&send.phone_number))?;
    let agent = agent_for(send.agent_id.clone(), caller, cx)?;
    if let Some(url) = &send.status_callback {
        cx.cfg.callback_key()?; // refuse a callback we could never sign
        cx.cfg
            .callback_policy()?
            .check(url, caller.is_token())
            .map_err(|d| ApiError::Forbidden(format!("{d}.")))?;
    }
    let store = StatusStore::open(&cx.env, cx.cfg.status_ttl_secs)?;
    let message_id = match &send.message_id {
        Some(id) => {
            let recorded = store.view(id).await?;
            if let Caller::Token(_) = caller {
                // A browser token may not reuse another number's message id (it would take over
                // that message's status view).
                if recorded
                    .as_ref()
                    .and_then(|v| v.phone_number.as_deref())
                    .is_some_and(|p| p != send.phone_number)
                {
                    return Err(other_number());
                }
            }
            if let Some(view) = recorded.filter(|v| v.events.iter().any(|e| e.kind == RecordType::Sent)) {
                return replay(&store, &view).await;
            }
            id.clone()
        }
        None => random_uuid().map_err(ApiError::Internal)?,
    };
    if let Caller::Token(claims) = caller {
        // Last check before RBM: only sends that reach RBM use the token's budget.
        let ip = req.header("cf-connecting-ip");
        // A fallback SMS counts against maxSends too: reserved with the send.
        let units = if send.fallback.is_some() { 2 } else { 1 };
        limits::take_send(&cx.env, claims, ip.as_deref(), cx.now_ms / 1000, units).await?;
    }
    let fallback = send.fallback.map(|f| FallbackOrder {
        deadline_ms: f.after_seconds.map(|s| cx.now_ms + s * 1000),
        sms_text: f.sms_text,
    });
    let phone = send.phone_number;
    let object = object_name(&agent, &phone);
    let content = Value::Object(send.agent_message);
    if send.status_callback.is_some() {
        // Registered before the relay: a receipt can arrive before RBM's answer reaches us.
        // The object keeps the first callback a message gets.
        let meta = api_meta(cx, &phone, &agent, None);
        let op = Op::Outbound {
            message_id: message_id.clone(),
            content: content.clone(),
            callback_url: send.status_callback.clone(),
            record: None,
            meta,
            fallback: None,
        };
        conversation::op(&cx.env, &object, &op).await?;
    }
    let path = format!("{}/agentMessages?messageId={message_id}&agentId={agent}", phone_path(&phone));
    let answer = rbm::call(
        &cx.cfg,
        cx.now_ms,
        cx.cfg.api_base_for(&agent),
        Method::Post,
        &path,
        Some(&send.relayed_json),
    )
    .await?;

    // 2xx (and 409: RBM already has this id) → SENT; other 4xx → SEND_FAILED (RBM said no).
    // 5xx says nothing final: not recorded.
    let already = answer.status == 409;
    let record = match answer.status {
        200..=299 | 409 => Some(RecordType::Sent),
        400..=499 => Some(RecordType::SendFailed),
        _ => None,
    };
    if let Some(t) = record {
        let meta = api_meta(cx, &phone, &agent, (t == RecordType::SendFailed).then_some(answer.status));
        let value = if answer.is_success() { answer.body.to_string() } else { "{}".to_string() };
        record_or_log(&store, &message_id, t, meta.clone(), &value).await;
        let op = Op::Outbound {
            message_id: message_id.clone(),
            content,
            callback_url: send.status_callback,
            record: Some(t),
            meta,
            fallback,
        };
        if let Err(e) = conversation::op(&cx.env, &object, &op).await {
            log::error("conversation not updated", json!({"messageId": message_id, "error": e.message()}));
        }
    }
    let mut out = json!({
        "messageId": message_id,
        "phoneNumber": phone,
        "agentId": agent,
        "status": if answer.is_success() || already { "SENT" } else { "FAILED" },
        "rbm": answer.body,
    });
    if already {
        out["replayed"] = true.into();
        return Ok(json_response(200, &out));
    }
    if answer.status == 404 {
        // Google: 404 on send = the user is not reachable over RCS (the cue for SMS fallback).
        out["rcsReachable"] = false.into();
    }
    Ok(answer.respond(&out))
}

/// The answer to a send of a message that was already sent: its recorded outcome.
async fn replay(store: &StatusStore, view: &StatusView) -> Result<Response, ApiError> {
    let rbm_answer = store.value(&view.message_id, RecordType::Sent).await?;
    let rbm_answer =
        rbm_answer.and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok()).unwrap_or(json!({}));
    Ok(json_response(
        200,
        &json!({
            "messageId": view.message_id,
            "phoneNumber": view.phone_number,
            "agentId": view.agent_id,
            "status": "SENT",
            "replayed": true,
            "currentStatus": view.status,
            "rbm": rbm_answer,
        }),
    ))
}

/// `DELETE /v1/messages/{messageId}`: revoke an undelivered message.
pub async fn revoke(req: &Request, message_id: &str, caller: &Caller, cx: &Cx) -> Result<Response, ApiError> {
    caller.require(Scope::MessagesSend, None)?;
    if !is_valid_message_id(message_id) {
        return Err(ApiError::InvalidMessageId);
    }
    let store = StatusStore::open(&cx.env, cx.cfg.status_ttl_secs)?;
    let stored = store.view(message_id).await?;
    // An unencoded `+` in a query string decodes as a space: take it back.
    let phone = match query_param(req, "phoneNumber").map(|p| p.trim_end().replacen(' ', "+", 1)) {
        Some(p) => p,
        None => stored.as_ref().and_then(|v| v.phone_number.clone()).ok_or_else(|| {
            ApiError::InvalidRequest(format!(
                "No phone number is recorded for message {message_id}; pass ?phoneNumber=+E164."
            ))
        })?,
    };
    if !is_e164(&phone) {
        return Err(ApiError::InvalidRequest("phoneNumber must be E.164, like +12223334444.".into()));
    }
    if let Caller::Token(_) = caller {
        // A token must own the message as recorded, and learns no other message's number: a
        // number taken from the record is refused without naming it.
        if stored.as_ref().and_then(|v| v.phone_number.as_deref()).is_some_and(|r| r != phone) {
            return Err(other_number());
        }
        let given = query_param(req, "phoneNumber").is_some();
        caller
            .require(Scope::MessagesSend, Some(&phone))
            .map_err(|e| if given { e } else { other_number() })?;
    }
    let agent =
        agent_for(query_param(req, "agentId").or_else(|| stored.and_then(|v| v.agent_id)), caller, cx)?;
    let path = format!("{}/agentMessages/{message_id}?agentId={agent}", phone_path(&phone));
    let answer =
        rbm::call(&cx.cfg, cx.now_ms, cx.cfg.api_base_for(&agent), Method::Delete, &path, None).await?;
    if answer.is_success() {
        // A late DELIVERED still wins over this (precedence), as Google warns it can.
        let meta = api_meta(cx, &phone, &agent, None);
        record_or_log(&store, message_id, RecordType::RevokeRequested, meta.clone(), "{}").await;
        let op = Op::Status { message_id: message_id.to_string(), record: RecordType::RevokeRequested, meta };
        if let Err(e) = conversation::op(&cx.env, &object_name(&agent, &phone), &op).await {
            log::error("conversation not updated", json!({"messageId": message_id, "error": e.message()}));
        }
    }
    let out = json!({
        "messageId": message_id,
        "phoneNumber": phone,
        "agentId": agent,
        "status": if answer.is_success() { "REVOKE_REQUESTED" } else { "FAILED" },
        "rbm": answer.body,
    });
    Ok(answer.respond(&out))
}

/// `GET /v1/messages/{messageId}`: the folded status record.
pub async fn status(message_id: &str, caller: &Caller, cx: &Cx) -> Result<Response, ApiError> {
    caller.require(Scope::MessagesRead, None)?;
    if !is_valid_message_id(message_id) {
        return Err(ApiError::InvalidMessageId);
    }
    let store = StatusStore::open(&cx.env, cx.cfg.status_ttl_secs)?;
    match store.view(message_id).await? {
        Some(view) => {
            caller.require_for(Scope::MessagesRead, view.phone_number.as_deref())?;
            Ok(json_response(200, &view))
        }
        None => Err(ApiError::NotFound(format!("No status is recorded for message {message_id}."))),
    }
}

fn api_meta(cx: &Cx, phone: &str, agent: &str, http_status: Option<u16>) -> RecordMeta {
    let now = format_rfc3339_millis(cx.now_ms);
    RecordMeta {
        at: now.clone(),
        received_at: now,
        source: Source::Api,
        event_id: None,
        phone_number: Some(phone.to_string()),
        agent_id: Some(agent.to_string()),
        http_status,
        fallback: None,
    }
}

fn other_number() -> ApiError {
    ApiError::Forbidden("This messageId belongs to a message for another phone number.".into())
}

/// RBM has already acted, so its answer is the truth the caller needs; a failed status write
/// is logged loudly rather than turned into an error (the caller would retry a send that
/// happened — harmless with the same messageId, but misleading).
async fn record_or_log(store: &StatusStore, message_id: &str, t: RecordType, meta: RecordMeta, value: &str) {
    if let Err(e) = store.record(message_id, t, meta, value).await {
        log::error(
            "status not recorded",
            json!({"messageId": message_id, "type": t.as_str(), "error": e.message()}),
        );
    }
}
