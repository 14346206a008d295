//! The `Conversation` Durable Object: one per (agent, phone number), SQLite-backed. It is the
//! one consistent place for a conversation, worldwide: it keeps the messages both ways and
//! every status event, decides status changes exactly (so each `statusCallback` fires once per
//! change, from its own outbox), and pushes live frames to the pages watching it.
//!
//! ```text
//! messages  message_id PK, direction, at_ms, at, content (JSON or NULL), callback_url
//! events    (message_id, type) PK, meta (RecordMeta JSON)
//! outbox    id PK (webhook-id), url, body, attempts, next_at   callbacks owed, retried by alarm
//! budget    n, expires_at                                       a token's sends (budget objects)
//! fallbacks message_id PK, sms_text, deadline_at, state, next_at  SMS fallbacks (core::fallback)
//! ```
//! A fallback is `waiting` (for its deadline or TTL), `revoking` (deadline passed, revoke being
//! retried), `sending` (fallen back: SMS and forward pending), then `done`, `cancelled` (delivered
//! first, or revoke 404) or `revoke_failed` — each message falls back at most once.
//! The Worker calls its RPC method `op` (a `core::conversation::Op`, see `Conversation::rpc_op`)
//! and sends it internal requests: `GET /history`, `GET /live` (WebSocket),
//! `DELETE /conversation`. Handlers never return `Err` (that would surface as an exception in
//! the caller): failures are JSON errors.

pub mod client;

use std::cell::Cell;
use std::rc::Rc;

use wasm_bindgen::JsValue;

use serde_json::{json, Value};
use worker::{
    durable_object, DurableObject, Env, Request, Response, ResponseBuilder, SqlStorageValue, State,
    WebSocket, WebSocketIncomingMessage, WebSocketPair,
};

use crate::config::Config;
use crate::core::conversation::{
    decode_cursor, encode_cursor, order_ms, split_records, FallbackOrder, Frame, InboundRecord, Op, MAX_PAGE,
    READY_MESSAGES,
};
use crate::core::fallback::{
    self, after_revoke, backoff_ms, on_record, AfterRevoke, OnRecord, Reason, SmsAnswer,
};
use crate::core::pipeline::{status_change_callback, Job, Known};
use crate::core::status::{fold, project, FallbackInfo, RecordMeta, RecordType, SmsOutcome, Source};
use crate::core::time::format_rfc3339_millis;
use crate::error::{json_response, ApiError};
use crate::google::rbm::{self, phone_path};
use crate::log;
use crate::store::status::StatusStore;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (message_id TEXT PRIMARY KEY, direction TEXT NOT NULL,
  at_ms INTEGER NOT NULL, at TEXT NOT NULL, content TEXT, callback_url TEXT);
CREATE INDEX IF NOT EXISTS messages_order ON messages (at_ms, message_id);
CREATE TABLE IF NOT EXISTS events (message_id TEXT NOT NULL, type TEXT NOT NULL, meta TEXT NOT NULL,
  PRIMARY KEY (message_id, type));
CREATE TABLE IF NOT EXISTS outbox (id TEXT PRIMARY KEY, url TEXT NOT NULL, body TEXT NOT NULL,
  message_id TEXT NOT NULL, attempts INTEGER NOT NULL, next_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS budget (id INTEGER PRIMARY KEY, n INTEGER NOT NULL, expires_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS fallbacks (message_id TEXT PRIMARY KEY, agent TEXT NOT NULL, phone TEXT NOT NULL,
  sms_text TEXT NOT NULL, content TEXT, deadline_at INTEGER, state TEXT NOT NULL, next_at INTEGER,
  attempts INTEGER NOT NULL, reason TEXT, fired_at TEXT, sms TEXT);
";

/// Fallback SMS attempts (retried when Twilio is down) before the SMS counts as FAILED.
const MAX_SMS_ATTEMPTS: i64 = 6;
const SMS_RETRY_WINDOW_MS: u64 = 120_000;
const FORWARD_RETRY_WINDOW_MS: u64 = 1_800_000;
/// Callback attempts before the change is kept as a dead letter instead (about 2 hours).
const MAX_CALLBACK_ATTEMPTS: i64 = 16;
/// Retention sweeps of a conversation that still holds messages.
const SWEEP_EVERY_MS: i64 = 6 * 3600 * 1000;
/// The WebSocket subprotocol spoken on `/live`.
pub const PROTOCOL: &str = "rbm-edge.v1";

#[durable_object]
pub struct Conversation {
    /// Shared with the op in flight: an RPC op that has to wait (for the alarm) keeps it.
    core: Rc<Core>,
}

impl std::ops::Deref for Conversation {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

pub struct Core {
    state: State,
    env: Env,
    /// Fetched once: every statement otherwise crosses into JS twice more to find it.
    sql: worker::SqlStorage,
    /// The alarm this instance last set or saw (`schedule`), if any.
    alarm_at: Cell<Option<i64>>,
    /// A statement since the last `schedule` wrote a table with timers (outbox, fallbacks,
    /// budget): the alarm may be owed earlier than the one set.
    timers_touched: Cell<bool>,
    /// Whether any fallback may still be waiting or revoking (`None`: not known, count it).
    /// A receipt cancels its message's fallback; in a conversation that has none open (most of
    /// them), that UPDATE is skipped. Only this instance writes the table, and only
    /// `order_fallback` opens one.
    open_fallbacks: Cell<Option<bool>>,
}

/// A row read positionally (`SqlCursor::raw`): typed row structs would each bring their own
/// JS-value deserializer into the wasm.
type Row = Vec<SqlStorageValue>;

/// A message's records as one text (see [`split_records`]), bound to `?1`: one row to read
/// rather than one per record, each row being several calls into JavaScript.
macro_rules! records_sql {
    () => {
        "SELECT group_concat(type || char(31) || meta, char(30)) FROM events WHERE message_id = ?1"
    };
}
const RECORDS: &str = records_sql!();
/// The message's callback URL and its records, in one statement.
const CALLBACK_AND_RECORDS: &str =
    concat!("SELECT (SELECT callback_url FROM messages WHERE message_id = ?1), (", records_sql!(), ")");

fn text(row: &Row, i: usize) -> Option<String> {
    match row.get(i) {
        Some(SqlStorageValue::String(s)) => Some(s.clone()),
        _ => None,
    }
}

fn int(row: &Row, i: usize) -> Option<i64> {
    match row.get(i) {
        Some(SqlStorageValue::Integer(n)) => Some(*n),
        Some(SqlStorageValue::Float(f)) => Some(*f as i64),
        _ => None,
    }
}

struct MessageRow {
    message_id: String,
    direction: String,
    at_ms: i64,
    at: String,
    content: Option<String>,
}

const MESSAGE_COLUMNS: &str = "message_id, direction, at_ms, at, content";

impl MessageRow {
    fn from(row: &Row) -> MessageRow {
        MessageRow {
            message_id: text(row, 0).unwrap_or_default(),
            direction: text(row, 1).unwrap_or_default(),
            at_ms: int(row, 2).unwrap_or_default(),
            at: text(row, 3).unwrap_or_default(),
            content: text(row, 4),
        }
    }
}

fn now_ms() -> i64 {
    crate::runtime::now_ms() as i64
}

fn sql_err(e: worker::Error) -> ApiError {
    ApiError::StorageUnavailable(format!("The conversation store failed: {e}."))
}

impl DurableObject for Conversation {
    fn new(state: State, env: Env) -> Self {
        let sql = state.storage().sql();
        if let Err(e) = sql.exec(SCHEMA, None) {
            log::error("conversation schema not created", json!({"error": e.to_string()}));
        }
        let core = Core {
            state,
            env,
            sql,
            alarm_at: Cell::new(None),
            timers_touched: Cell::new(true),
            open_fallbacks: Cell::new(None),
        };
        Conversation { core: Rc::new(core) }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        let path = req.path();
        let result = match (req.method(), path.as_str()) {
            (worker::Method::Get, "/history") => self.history(&req),
            (worker::Method::Get, "/live") => self.live(),
            (worker::Method::Delete, "/conversation") => self.erase().await,
            _ => Err(ApiError::NotFound(format!("No conversation route {path}."))),
        };
        Ok(result.unwrap_or_else(ApiError::into_response))
    }

    async fn alarm(&self) -> worker::Result<Response> {
        if let Err(e) = self.run_alarm().await {
            log::error("conversation alarm failed", json!({"error": e.message()}));
            // Try again later rather than never.
            let _ = self.state.storage().set_alarm(60_000i64).await;
        }
        Response::ok("")
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> worker::Result<()> {
        // Frames from pages are ignored, but a ping is answered so clients can check the line.
        if let WebSocketIncomingMessage::String(s) = message {
            if s.trim() == "ping" || s.contains("\"ping\"") {
                let _ = ws.send_with_str(r#"{"type":"pong"}"#);
            }
        }
        Ok(())
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        _code: usize,
        _reason: String,
        _clean: bool,
    ) -> worker::Result<()> {
        // Completes the closing handshake the page started (its code is only informative).
        let _ = ws.close(Some(1000), Some("bye"));
        Ok(())
    }

    async fn websocket_error(&self, _ws: WebSocket, _error: worker::Error) -> worker::Result<()> {
        Ok(())
    }
}

/// The object's RPC method `op`: a `core::conversation::Op` as JSON in, its answer as JSON out,
/// a failure as `{"error":{"code","message"}}` (never an exception: that would reach the caller
/// as a JS error with a stack). RPC rather than an internal `fetch`: neither side builds a
/// Request or a Response, and the op is not read back from a body stream.
#[wasm_bindgen::prelude::wasm_bindgen]
impl Conversation {
    /// Answered synchronously unless the op has to wait (`runtime::now_or_promise`).
    #[wasm_bindgen(js_name = op)]
    pub fn rpc_op(&self, body: String) -> Result<JsValue, JsValue> {
        let core = self.core.clone();
        crate::runtime::now_or_promise(async move {
            let out = core.op(&body).await.unwrap_or_else(|e| e.body().to_string());
            Ok(JsValue::from_str(&out))
        })
    }
}

impl Core {
    fn exec(&self, q: &str, args: Vec<SqlStorageValue>) -> Result<worker::SqlCursor, ApiError> {
        let cursor = self.sql.exec(q, args).map_err(sql_err)?;
        // A write that changed a timer table (not, say, a DELIVERED's cancel of no fallback).
        if !q.starts_with("SELECT")
            && ["outbox", "fallbacks", "budget"].iter().any(|t| q.contains(t))
            && cursor.rows_written() > 0
        {
            self.timers_touched.set(true);
        }
        Ok(cursor)
    }

    fn rows(&self, q: &str, args: Vec<SqlStorageValue>) -> Result<Vec<Row>, ApiError> {
        self.exec(q, args)?.raw().collect::<Result<Vec<Row>, _>>().map_err(sql_err)
    }

    /// The first column of the first row, as an integer.
    fn scalar(&self, q: &str, args: Vec<SqlStorageValue>) -> Result<Option<i64>, ApiError> {
        Ok(self.rows(q, args)?.first().and_then(|r| int(r, 0)))
    }

    /// One op, answered as JSON text.
    async fn op(&self, body: &str) -> Result<String, ApiError> {
        let cfg = Config::get(&self.env);
        // A user message (the most frequent op) is recorded from the op's text as it is.
        let out = match InboundRecord::from_op(body) {
            Some(message) => self.inbound(message, cfg.keep_history)?,
            None => self.other_op(body, &cfg).await?,
        };
        // Most ops (a text, a receipt without callback) only add content, which the sweep
        // alarm already set covers: six queries and an alarm read saved per event.
        let sweep_covered = self.alarm_at.get().is_some_and(|t| t <= now_ms() + SWEEP_EVERY_MS);
        if self.timers_touched.get() || !sweep_covered {
            self.schedule().await?;
        }
        Ok(out)
    }

    async fn other_op(&self, body: &str, cfg: &Config) -> Result<String, ApiError> {
        let op = Op::from_json(body)
            .map_err(|e| ApiError::InvalidRequest(format!("Not a conversation op: {e}.")))?;
        let out = match op {
            Op::Outbound { message_id, content, callback_url, record, meta, fallback } => {
                let at_ms = order_ms(&meta.at);
                if let (Some(order), Some(_)) = (&fallback, record) {
                    self.order_fallback(&message_id, order, &content, &meta)?;
                }
                let content = if cfg.keep_history { Some(content.to_string()) } else { None };
                self.exec(
                    "INSERT OR IGNORE INTO messages (message_id, direction, at_ms, at, content, callback_url) VALUES (?, 'outbound', ?, ?, ?, ?)",
                    vec![message_id.as_str().into(), at_ms.into(), meta.at.as_str().into(), content.into(), callback_url.clone().into()],
                )?;
                if let Some(url) = &callback_url {
                    // The first callback stays: a later send can never redirect the receipts.
                    self.exec(
                        "UPDATE messages SET callback_url = ? WHERE message_id = ? AND callback_url IS NULL",
                        vec![url.as_str().into(), message_id.as_str().into()],
                    )?;
                }
                let not_reachable = record == Some(RecordType::SendFailed) && meta.http_status == Some(404);
                let out = match record {
                    Some(t) => self.record(&message_id, t, meta)?,
                    None => json!({"ok": true}),
                };
                if not_reachable {
                    // RBM's 404 on send: the user has no RCS; fall back at once.
                    self.fire(&message_id, Reason::NotReachable)?;
                }
                out
            }
            Op::Status { message_id, record, meta } => self.record(&message_id, record, meta)?,
            Op::Inbound { message } => return self.inbound(message.into(), cfg.keep_history),
            Op::Typing => {
                self.broadcast(&Frame::Typing { active: true });
                json!({"ok": true})
            }
            Op::TakeSend { max, units, expires_at_ms } => self.take_send(max, units, expires_at_ms).await?,
        };
        Ok(out.to_string())
    }

    /// Records `t` for a message (a duplicate changes nothing), decides on the exact records
    /// whether the status changed, queues the callback owed in the outbox and pushes the frame.
    /// All SQL here is synchronous: no other request interleaves between read and write.
    fn record(&self, message_id: &str, t: RecordType, meta: RecordMeta) -> Result<Value, ApiError> {
        let row = self.rows(CALLBACK_AND_RECORDS, vec![message_id.into()])?;
        let row = row.first();
        let records = split_records(row.and_then(|r| text(r, 1)).as_deref());
        if records.iter().any(|(r, _)| *r == t) {
            let status = project(records.iter().map(|(r, _)| *r));
            return Ok(json!({"ok": true, "duplicate": true, "status": status}));
        }
        let callback_url = row.and_then(|r| text(r, 0));
        let before = project(records.iter().map(|(r, _)| *r));
        let known = Known { callback_url, records };
        // Callbacks are for changes RBM (or a fallback) causes; the relay's own records (SENT, a
        // revoke) are already in the caller's answer.
        let owed = meta.source != Source::Api;
        if let Some(cb) = status_change_callback(message_id, t, &meta, &known).filter(|_| owed) {
            self.exec(
                "INSERT OR IGNORE INTO outbox (id, url, body, message_id, attempts, next_at) VALUES (?, ?, ?, ?, 0, ?)",
                vec![cb.id.as_str().into(), cb.url.as_str().into(), cb.body.as_str().into(), message_id.into(), now_ms().into()],
            )?;
        }
        let meta_json = serde_json::to_string(&meta).unwrap_or_default();
        self.exec(
            "INSERT OR IGNORE INTO events (message_id, type, meta) VALUES (?, ?, ?)",
            vec![message_id.into(), t.as_str().into(), meta_json.into()],
        )?;
        let after = project(known.records.iter().map(|(r, _)| *r).chain([t]));
        if let Some(status) = after.filter(|a| Some(*a) != before) {
            self.broadcast(&Frame::Status { message_id, status: status.as_str(), event: t.as_str() });
        }
        match on_record(t) {
            OnRecord::Cancel => self.cancel_fallback(message_id)?,
            OnRecord::Fire(reason) => self.fire(message_id, reason)?,
            OnRecord::Nothing => {}
        }
        Ok(json!({"ok": true, "status": after}))
    }

    // ---- SMS fallback -------------------------------------------------------------------

    /// Keeps a send's fallback order (once per message), unless the message was already
    /// delivered or read.
    fn order_fallback(
        &self,
        message_id: &str,
        order: &FallbackOrder,
        content: &Value,
        meta: &RecordMeta,
    ) -> Result<(), ApiError> {
        let (Some(agent), Some(phone)) = (meta.agent_id.as_deref(), meta.phone_number.as_deref()) else {
            return Ok(());
        };
        let deadline = order.deadline_ms.map(|d| d as i64);
        self.exec(
            "INSERT OR IGNORE INTO fallbacks (message_id, agent, phone, sms_text, content, deadline_at, state, next_at, attempts) VALUES (?, ?, ?, ?, ?, ?, 'waiting', ?, 0)",
            vec![message_id.into(), agent.into(), phone.into(), order.sms_text.as_str().into(), content.to_string().into(), deadline.into(), deadline.into()],
        )?;
        self.open_fallbacks.set(Some(true));
        let seen: Vec<RecordType> = self.records(message_id)?.into_iter().map(|(t, _)| t).collect();
        if seen.iter().any(|t| on_record(*t) == OnRecord::Cancel) {
            self.cancel_fallback(message_id)?;
        } else if seen.contains(&RecordType::TtlExpirationRevoked) {
            self.fire(message_id, Reason::TtlExpired)?;
        }
        Ok(())
    }

    fn cancel_fallback(&self, message_id: &str) -> Result<(), ApiError> {
        if self.open_fallbacks.get().is_none() {
            let open =
                self.scalar("SELECT COUNT(*) FROM fallbacks WHERE state IN ('waiting', 'revoking')", vec![])?;
            self.open_fallbacks.set(Some(open != Some(0)));
        }
        if self.open_fallbacks.get() == Some(false) {
            return Ok(());
        }
        let cancelled = self.exec(
            "UPDATE fallbacks SET state = 'cancelled', next_at = NULL, content = NULL WHERE message_id = ? AND state IN ('waiting', 'revoking')",
            vec![message_id.into()],
        )?;
        if cancelled.rows_written() > 0 {
            self.open_fallbacks.set(None); // perhaps the last one: count again when next needed
        }
        Ok(())
    }

    /// Falls back now, at most once: records FALLBACK (status, callback, live frame) and leaves
    /// the SMS and the forward to the alarm. Synchronous SQL: nothing interleaves.
    fn fire(&self, message_id: &str, reason: Reason) -> Result<(), ApiError> {
        let row = self.rows(
            "SELECT agent, phone FROM fallbacks WHERE message_id = ? AND state IN ('waiting', 'revoking')",
            vec![message_id.into()],
        )?;
        let Some((agent, phone)) = row.first().and_then(|r| Some((text(r, 0)?, text(r, 1)?))) else {
            return Ok(()); // no fallback asked for, or already decided
        };
        let seen: Vec<RecordType> = self.records(message_id)?.into_iter().map(|(t, _)| t).collect();
        if seen.iter().any(|t| matches!(t, RecordType::Delivered | RecordType::Read)) {
            return self.cancel_fallback(message_id);
        }
        let at = format_rfc3339_millis(now_ms() as u64);
        let pending = SmsOutcome { status: "PENDING".into(), sid: None, error: None };
        self.exec(
            "UPDATE fallbacks SET state = 'sending', reason = ?, fired_at = ?, next_at = ?, attempts = 0, sms = ? WHERE message_id = ?",
            vec![reason.as_str().into(), at.as_str().into(), now_ms().into(), serde_json::to_string(&pending).unwrap_or_default().into(), message_id.into()],
        )?;
        let info = FallbackInfo { reason: reason.as_str().into(), at: at.clone(), sms: pending };
        self.record(message_id, RecordType::Fallback, system_meta(&at, &agent, &phone, Some(info)))?;
        Ok(())
    }

    /// The alarm's part: deadline revokes, then SMS and forwards of fallen-back messages.
    async fn run_fallbacks(&self, cfg: &Config, now: i64) -> Result<(), ApiError> {
        let due = self.rows(
            "SELECT message_id, agent, phone, sms_text, content, deadline_at, state, attempts, reason, fired_at, sms FROM fallbacks WHERE state IN ('waiting', 'revoking', 'sending') AND next_at IS NOT NULL AND next_at <= ? LIMIT 10",
            vec![now.into()],
        )?;
        for r in due {
            let (Some(id), Some(agent), Some(phone), Some(state)) =
                (text(&r, 0), text(&r, 1), text(&r, 2), text(&r, 6))
            else {
                continue;
            };
            let attempts = int(&r, 7).unwrap_or(0);
            if state != "sending" {
                self.deadline_revoke(cfg, &id, &agent, &phone, int(&r, 5).unwrap_or(now), attempts, now)
                    .await?;
                continue;
            }
            let mut sms = text(&r, 10)
                .and_then(|s| SmsOutcome::from_value(&serde_json::from_str(&s).ok()?))
                .unwrap_or(SmsOutcome { status: "PENDING".into(), sid: None, error: None });
            if sms.status == "PENDING" {
                match self.send_sms(cfg, &phone, &text(&r, 3).unwrap_or_default(), &id).await {
                    Ok(outcome) => sms = outcome,
                    Err(why) if attempts + 1 < MAX_SMS_ATTEMPTS => {
                        let at = now + backoff_ms(attempts as u32, SMS_RETRY_WINDOW_MS) as i64;
                        log::warn("fallback SMS failed; will retry", json!({"messageId": id, "error": why}));
                        self.exec(
                            "UPDATE fallbacks SET attempts = attempts + 1, next_at = ? WHERE message_id = ?",
                            vec![at.into(), id.as_str().into()],
                        )?;
                        continue;
                    }
                    Err(why) => sms = SmsOutcome { status: "FAILED".into(), sid: None, error: Some(why) },
                }
                let reason = text(&r, 8).unwrap_or_default();
                let at = text(&r, 9).unwrap_or_default();
                let info = FallbackInfo { reason, at: at.clone(), sms: sms.clone() };
                let meta = system_meta(&at, &agent, &phone, Some(info));
                self.exec(
                    "UPDATE fallbacks SET sms = ?, attempts = 0 WHERE message_id = ?",
                    vec![serde_json::to_string(&sms).unwrap_or_default().into(), id.as_str().into()],
                )?;
                self.exec(
                    "UPDATE events SET meta = ? WHERE message_id = ? AND type = 'FALLBACK'",
                    vec![serde_json::to_string(&meta).unwrap_or_default().into(), id.as_str().into()],
                )?;
                // The global status view (KV) gets the FALLBACK record with the SMS outcome.
                StatusStore::open(&self.env, cfg.status_ttl_secs)?
                    .record(&id, RecordType::Fallback, meta, "{}")
                    .await?;
            }
            if let Some(url) = cfg.forward_url.as_deref() {
                let content: Value =
                    text(&r, 4).and_then(|c| serde_json::from_str(&c).ok()).unwrap_or(Value::Null);
                let mut sms_doc =
                    json!({"text": text(&r, 3), "status": sms.status, "sid": sms.sid, "error": sms.error});
                if let Value::Object(m) = &mut sms_doc {
                    m.retain(|_, v| !v.is_null());
                }
                let (doc_id, body) = fallback::forward_document(
                    &id,
                    &agent,
                    &phone,
                    &text(&r, 8).unwrap_or_default(),
                    &text(&r, 9).unwrap_or_default(),
                    &sms_doc,
                    &content,
                );
                let sent = match cfg.forward_key() {
                    Ok(key) => crate::pipeline::forward::deliver(cfg, url, key, &doc_id, &body).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = sent {
                    let at = now + backoff_ms(attempts as u32, FORWARD_RETRY_WINDOW_MS) as i64;
                    log::warn(
                        "fallback forward failed; will retry",
                        json!({"messageId": id, "error": e.message()}),
                    );
                    self.exec(
                        "UPDATE fallbacks SET attempts = attempts + 1, next_at = ? WHERE message_id = ?",
                        vec![at.into(), id.as_str().into()],
                    )?;
                    continue;
                }
            }
            self.exec(
                "UPDATE fallbacks SET state = 'done', next_at = NULL, content = NULL WHERE message_id = ?",
                vec![id.as_str().into()],
            )?;
        }
        Ok(())
    }

    /// The deadline passed undelivered: revoke through RBM, and fall back only if that worked.
    #[allow(clippy::too_many_arguments)]
    async fn deadline_revoke(
        &self,
        cfg: &Config,
        id: &str,
        agent: &str,
        phone: &str,
        deadline: i64,
        attempts: i64,
        now: i64,
    ) -> Result<(), ApiError> {
        let path = format!("{}/agentMessages/{id}?agentId={agent}", phone_path(phone));
        let status =
            match rbm::call(cfg, now as u64, cfg.api_base_for(agent), worker::Method::Delete, &path, None)
                .await
            {
                Ok(answer) => Some(answer.status),
                Err(e) => {
                    log::warn("deadline revoke failed", json!({"messageId": id, "error": e.message()}));
                    None
                }
            };
        let at = format_rfc3339_millis(now as u64);
        match after_revoke(
            status,
            attempts as u32,
            deadline as u64,
            now as u64,
            cfg.fallback_revoke_window_ms,
        ) {
            AfterRevoke::Fire => {
                let meta = system_meta(&at, agent, phone, None);
                self.record(id, RecordType::RevokeRequested, meta.clone())?;
                self.fire(id, Reason::Deadline)?;
                StatusStore::open(&self.env, cfg.status_ttl_secs)?
                    .record(id, RecordType::RevokeRequested, meta, "{}")
                    .await
            }
            AfterRevoke::Cancel => self.cancel_fallback(id),
            AfterRevoke::RetryAt(t) => {
                self.exec(
                    "UPDATE fallbacks SET state = 'revoking', attempts = attempts + 1, next_at = ? WHERE message_id = ?",
                    vec![(t as i64).into(), id.into()],
                )?;
                Ok(())
            }
            AfterRevoke::GiveUp => {
                log::error("deadline revoke given up: no SMS sent", json!({"messageId": id}));
                self.exec("UPDATE fallbacks SET state = 'revoke_failed', next_at = NULL, content = NULL WHERE message_id = ?", vec![id.into()])?;
                let meta = system_meta(&at, agent, phone, None);
                self.record(id, RecordType::RevokeFailed, meta.clone())?;
                StatusStore::open(&self.env, cfg.status_ttl_secs)?
                    .record(id, RecordType::RevokeFailed, meta, "{}")
                    .await
            }
        }
    }

    /// The SMS through Twilio: its outcome, or why it is worth retrying.
    async fn send_sms(
        &self,
        cfg: &Config,
        phone: &str,
        text: &str,
        message_id: &str,
    ) -> Result<SmsOutcome, String> {
        let twilio = match cfg.twilio() {
            Ok(Some(t)) => t,
            Ok(None) => return Ok(SmsOutcome { status: "NOT_CONFIGURED".into(), sid: None, error: None }),
            Err(e) => return Ok(SmsOutcome { status: "FAILED".into(), sid: None, error: Some(e.message()) }),
        };
        let req = twilio.request(phone, text, message_id);
        let headers = worker::Headers::new();
        for (k, v) in &req.headers {
            let _ = headers.set(k, v);
        }
        let request = crate::runtime::request("POST", &req.url, &headers, Some(&req.body))?;
        let (status, body) = match crate::runtime::fetch_with_timeout(request, cfg.timeout_ms).await {
            Ok(resp) => (Some(resp.status_code()), resp.text().await),
            Err(_) => (None, String::new()),
        };
        match fallback::sms_answer(status, &body) {
            SmsAnswer::Sent { sid } => Ok(SmsOutcome { status: "SENT".into(), sid: Some(sid), error: None }),
            SmsAnswer::Failed(e) => Ok(SmsOutcome { status: "FAILED".into(), sid: None, error: Some(e) }),
            SmsAnswer::Retry(e) => Err(e),
        }
    }

    fn records(&self, message_id: &str) -> Result<Vec<(RecordType, RecordMeta)>, ApiError> {
        let rows = self.rows(RECORDS, vec![message_id.into()])?;
        Ok(split_records(rows.first().and_then(|r| text(r, 0)).as_deref()))
    }

    /// Keeps a user message (once) and pushes it to the conversation's pages; answers JSON text.
    fn inbound(&self, message: InboundRecord, keep_history: bool) -> Result<String, ApiError> {
        let InboundRecord { message_id, at, view } = message;
        let inserted = self
            .exec(
                "INSERT OR IGNORE INTO messages (message_id, direction, at_ms, at, content) VALUES (?, 'inbound', ?, ?, ?)",
                vec![message_id.into(), order_ms(&at).into(), at.into(), keep_history.then(|| view.clone()).into()],
            )?
            .rows_written();
        if inserted > 0 {
            self.push(|| Frame::received(&view));
        }
        Ok(format!(r#"{{"ok":true,"duplicate":{}}}"#, inserted == 0))
    }

    async fn take_send(&self, max: u32, units: u32, expires_at_ms: u64) -> Result<Value, ApiError> {
        let used = self.scalar("SELECT n FROM budget WHERE id = 1", vec![])?.unwrap_or(0);
        let units = i64::from(units.max(1));
        if used + units > i64::from(max) {
            return Ok(json!({"ok": false, "used": used}));
        }
        self.exec(
            "INSERT INTO budget (id, n, expires_at) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET n = n + ?",
            vec![units.into(), (expires_at_ms as i64).into(), units.into()],
        )?;
        Ok(json!({"ok": true, "used": used + units}))
    }

    /// `GET /history?limit=&before=`: newest first, with the cursor of the next page.
    fn history(&self, req: &Request) -> Result<Response, ApiError> {
        let url = req.inner().url();
        let limit = crate::core::query::param(&url, "limit")
            .map(|l| l.parse::<usize>().ok().filter(|n| (1..=MAX_PAGE).contains(n)))
            .unwrap_or(Some(50))
            .ok_or_else(|| {
                ApiError::InvalidRequest(format!("limit must be a whole number from 1 to {MAX_PAGE}."))
            })?;
        let before = match crate::core::query::param(&url, "before") {
            None => None,
            Some(c) => Some(decode_cursor(&c).ok_or_else(|| {
                ApiError::InvalidRequest("before is not a cursor from a previous page.".into())
            })?),
        };
        let (messages, cursor) = self.page(limit, before)?;
        Ok(json_response(200, &json!({"messages": messages, "cursor": cursor})))
    }

    fn page(
        &self,
        limit: usize,
        before: Option<(i64, String)>,
    ) -> Result<(Vec<Value>, Option<String>), ApiError> {
        let fetch = (limit + 1) as i64;
        let rows: Vec<MessageRow> = match &before {
            Some((at, id)) => self.rows(
                &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE at_ms < ? OR (at_ms = ? AND message_id < ?) ORDER BY at_ms DESC, message_id DESC LIMIT ?"),
                vec![(*at).into(), (*at).into(), id.as_str().into(), fetch.into()],
            )?,
            None => self.rows(
                &format!("SELECT {MESSAGE_COLUMNS} FROM messages ORDER BY at_ms DESC, message_id DESC LIMIT ?"),
                vec![fetch.into()],
            )?,
        }
        .iter()
        .map(MessageRow::from)
        .collect();
        let more = rows.len() > limit;
        let rows = &rows[..rows.len().min(limit)];
        let cursor = if more { rows.last().map(|r| encode_cursor(r.at_ms, &r.message_id)) } else { None };
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(self.view(r)?);
        }
        Ok((out, cursor))
    }

    fn view(&self, r: &MessageRow) -> Result<Value, ApiError> {
        let content: Value =
            r.content.as_deref().and_then(|c| serde_json::from_str(c).ok()).unwrap_or(Value::Null);
        if r.direction == "inbound" {
            // Stored as the history item itself; with history off only a stub remains.
            return Ok(match content {
                Value::Object(_) => content,
                _ => {
                    json!({"direction": "inbound", "messageId": r.message_id, "kind": "unknown", "at": r.at})
                }
            });
        }
        let view = fold(&r.message_id, self.records(&r.message_id)?);
        let events = view.as_ref().map(|v| v.events.as_slice()).unwrap_or_default();
        let item = OutboundItem {
            direction: "outbound",
            message_id: &r.message_id,
            content: &content,
            status: view.as_ref().map(|v| v.status.as_str()),
            events,
            at: &r.at,
        };
        // Through text, like every other document here: no second (Value) serializer.
        Ok(serde_json::to_string(&item)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null))
    }

    /// `GET /live`: the Worker has authenticated the caller; accept the socket (hibernatable)
    /// and send the `ready` frame with the latest messages, oldest first.
    fn live(&self) -> Result<Response, ApiError> {
        let pair =
            WebSocketPair::new().map_err(|e| ApiError::Internal(format!("No WebSocket pair: {e}.")))?;
        self.state.accept_web_socket(&pair.server);
        let (mut messages, _) = self.page(READY_MESSAGES, None)?;
        messages.reverse();
        let _ = pair.server.send_with_str(Frame::Ready { messages: &messages }.to_json());
        ResponseBuilder::new()
            .with_status(101)
            .with_websocket(pair.client)
            .with_header("Sec-WebSocket-Protocol", PROTOCOL)
            .map(|b| b.empty())
            .map_err(|e| ApiError::Internal(format!("No WebSocket answer: {e}.")))
    }

    /// Sends a frame to every page watching; built only when one is (most events have none).
    fn broadcast(&self, frame: &Frame) {
        self.push(|| frame.to_json());
    }

    /// Sends a frame's text to every socket; the text is made only when one is open.
    fn push(&self, frame: impl FnOnce() -> String) {
        let sockets = self.state.get_websockets();
        if sockets.is_empty() {
            return;
        }
        let text = frame();
        for ws in sockets {
            let _ = ws.send_with_str(&text);
        }
    }

    /// `DELETE /conversation`: erase the stored content now (privacy requests). Callbacks
    /// still owed stay in the outbox; a budget object has nothing to erase.
    async fn erase(&self) -> Result<Response, ApiError> {
        self.exec("DELETE FROM messages", vec![])?;
        self.exec("DELETE FROM events", vec![])?;
        self.exec("DELETE FROM fallbacks", vec![])?;
        self.open_fallbacks.set(Some(false));
        self.schedule().await?;
        Ok(json_response(200, &json!({"erased": true})))
    }

    /// Sets the alarm for the next owed callback or retention sweep; an object with nothing
    /// left deletes its storage (an idle, empty conversation costs nothing).
    async fn schedule(&self) -> Result<(), ApiError> {
        self.timers_touched.set(false);
        let next_callback = self.scalar("SELECT MIN(next_at) FROM outbox", vec![])?;
        let next_fallback = self.scalar(
            "SELECT MIN(next_at) FROM fallbacks WHERE state IN ('waiting', 'revoking', 'sending')",
            vec![],
        )?;
        let held = |table: &str| -> Result<bool, ApiError> {
            Ok(self.scalar(&format!("SELECT 1 FROM {table} LIMIT 1"), vec![])?.is_some())
        };
        let budget_until = self.scalar("SELECT expires_at FROM budget WHERE id = 1", vec![])?;
        let sweep = if held("messages")? || held("events")? || held("fallbacks")? {
            Some(now_ms() + SWEEP_EVERY_MS)
        } else {
            None
        };
        let next = [next_callback, next_fallback, sweep, budget_until.map(|t| t + 60_000)]
            .into_iter()
            .flatten()
            .min();
        let storage = self.state.storage();
        match next {
            Some(at) => {
                let current = storage.get_alarm().await.map_err(sql_err)?;
                if current.is_none_or(|c| c > at) {
                    storage.set_alarm(at.saturating_sub(now_ms()).max(0)).await.map_err(sql_err)?;
                    self.alarm_at.set(Some(at));
                } else {
                    self.alarm_at.set(current);
                }
            }
            None if self.state.get_websockets().is_empty() => {
                self.alarm_at.set(None);
                let _ = storage.delete_alarm().await;
                storage.delete_all().await.map_err(sql_err)?;
                self.exec(SCHEMA, vec![])?; // delete_all drops the tables too
            }
            None => {}
        }
        Ok(())
    }

    async fn run_alarm(&self) -> Result<(), ApiError> {
        let cfg = Config::get(&self.env);
        let now = now_ms();
        // Retention: content older than STATUS_TTL_DAYS goes, with its events.
        let cutoff = now - (cfg.status_ttl_secs as i64) * 1000;
        self.exec(
            "DELETE FROM events WHERE message_id IN (SELECT message_id FROM messages WHERE at_ms < ?)",
            vec![cutoff.into()],
        )?;
        self.exec("DELETE FROM messages WHERE at_ms < ?", vec![cutoff.into()])?;
        self.exec("DELETE FROM budget WHERE expires_at < ?", vec![now.into()])?;
        self.exec(
            "DELETE FROM fallbacks WHERE state IN ('done', 'cancelled', 'revoke_failed') AND message_id NOT IN (SELECT message_id FROM messages)",
            vec![],
        )?;
        self.run_fallbacks(&cfg, now).await?;
        // Callbacks owed: delivered, retried with backoff, or kept as dead letters.
        let due = self.rows(
            "SELECT id, url, body, message_id, attempts FROM outbox WHERE next_at <= ? LIMIT 20",
            vec![now.into()],
        )?;
        for row in due {
            let (Some(id), Some(url), Some(body), Some(message_id)) =
                (text(&row, 0), text(&row, 1), text(&row, 2), text(&row, 3))
            else {
                continue;
            };
            let attempts = int(&row, 4).unwrap_or(0);
            let cb = crate::core::pipeline::CallbackJob { url, id, message_id, body };
            match crate::pipeline::deliver_callback(&cfg, &cb).await {
                Ok(()) => {
                    self.exec("DELETE FROM outbox WHERE id = ?", vec![cb.id.as_str().into()])?;
                }
                Err(e) if attempts + 1 >= MAX_CALLBACK_ATTEMPTS => {
                    log::error(
                        "status callback dead-lettered",
                        json!({"webhookId": cb.id, "error": e.message()}),
                    );
                    let store =
                        crate::store::dead_letters::DeadLetters::open(&self.env, cfg.status_ttl_secs)?;
                    store
                        .put(
                            &format!("cb-{}", cb.id.replace(['.', ':'], "-")),
                            &Job::Callback(cb.clone()),
                            now as u64,
                        )
                        .await?;
                    self.exec("DELETE FROM outbox WHERE id = ?", vec![cb.id.as_str().into()])?;
                }
                Err(e) => {
                    let delay = (10_000i64 << attempts.min(6)).min(600_000);
                    log::warn(
                        "status callback failed; will retry",
                        json!({"webhookId": cb.id, "error": e.message(), "retryInSeconds": delay / 1000}),
                    );
                    self.exec(
                        "UPDATE outbox SET attempts = attempts + 1, next_at = ? WHERE id = ?",
                        vec![(now + delay).into(), cb.id.as_str().into()],
                    )?;
                }
            }
        }
        self.schedule().await
    }
}

/// A record rbm-edge makes itself (a fallback, a deadline revoke).
fn system_meta(at: &str, agent: &str, phone: &str, fallback: Option<FallbackInfo>) -> RecordMeta {
    RecordMeta {
        at: at.to_string(),
        received_at: at.to_string(),
        source: Source::System,
        event_id: None,
        phone_number: Some(phone.to_string()),
        agent_id: Some(agent.to_string()),
        http_status: None,
        fallback,
    }
}

/// The history item of an agent message.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct OutboundItem<'a> {
    direction: &'static str,
    message_id: &'a str,
    content: &'a Value,
    status: Option<&'static str>,
    events: &'a [crate::core::status::EventView],
    at: &'a str,
}
