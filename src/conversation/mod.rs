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
//! ```
//! The Worker talks to it with internal requests: `POST /op` (a `core::conversation::Op`),
//! `GET /history`, `GET /live` (WebSocket), `DELETE /conversation`. Handlers never return
//! `Err` (that would surface as an exception in the caller): failures are JSON errors.

pub mod client;

use serde_json::{json, Value};
use worker::{
    durable_object, DurableObject, Env, Request, Response, ResponseBuilder, SqlStorageValue, State,
    WebSocket, WebSocketIncomingMessage, WebSocketPair,
};

use crate::config::Config;
use crate::core::conversation::{
    decode_cursor, encode_cursor, order_ms, Frame, InboundMessage, Op, MAX_PAGE, READY_MESSAGES,
};
use crate::core::pipeline::{status_change_callback, Job, Known};
use crate::core::status::{fold, project, RecordMeta, RecordType};
use crate::error::{json_response, ApiError};
use crate::log;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (message_id TEXT PRIMARY KEY, direction TEXT NOT NULL,
  at_ms INTEGER NOT NULL, at TEXT NOT NULL, content TEXT, callback_url TEXT);
CREATE INDEX IF NOT EXISTS messages_order ON messages (at_ms, message_id);
CREATE TABLE IF NOT EXISTS events (message_id TEXT NOT NULL, type TEXT NOT NULL, meta TEXT NOT NULL,
  PRIMARY KEY (message_id, type));
CREATE TABLE IF NOT EXISTS outbox (id TEXT PRIMARY KEY, url TEXT NOT NULL, body TEXT NOT NULL,
  message_id TEXT NOT NULL, attempts INTEGER NOT NULL, next_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS budget (id INTEGER PRIMARY KEY, n INTEGER NOT NULL, expires_at INTEGER NOT NULL);
";

/// Callback attempts before the change is kept as a dead letter instead (about 2 hours).
const MAX_CALLBACK_ATTEMPTS: i64 = 16;
/// Retention sweeps of a conversation that still holds messages.
const SWEEP_EVERY_MS: i64 = 6 * 3600 * 1000;
/// The WebSocket subprotocol spoken on `/live`.
pub const PROTOCOL: &str = "rbm-edge.v1";

#[durable_object]
pub struct Conversation {
    state: State,
    env: Env,
}

/// A row read positionally (`SqlCursor::raw`): typed row structs would each bring their own
/// JS-value deserializer into the wasm.
type Row = Vec<SqlStorageValue>;

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
    worker::Date::now().as_millis() as i64
}

fn sql_err(e: worker::Error) -> ApiError {
    ApiError::StorageUnavailable(format!("The conversation store failed: {e}."))
}

impl DurableObject for Conversation {
    fn new(state: State, env: Env) -> Self {
        if let Err(e) = state.storage().sql().exec(SCHEMA, None) {
            log::error("conversation schema not created", json!({"error": e.to_string()}));
        }
        Conversation { state, env }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        let path = req.path();
        let result = match (req.method(), path.as_str()) {
            (worker::Method::Post, "/op") => self.op(req).await,
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
        code: usize,
        _reason: String,
        _clean: bool,
    ) -> worker::Result<()> {
        let code = u16::try_from(code).ok().filter(|c| (1000..5000).contains(c) && *c != 1005 && *c != 1006);
        let _ = ws.close(Some(code.unwrap_or(1000)), Some("bye"));
        Ok(())
    }

    async fn websocket_error(&self, _ws: WebSocket, _error: worker::Error) -> worker::Result<()> {
        Ok(())
    }
}

impl Conversation {
    fn sql(&self) -> worker::SqlStorage {
        self.state.storage().sql()
    }

    fn exec(&self, q: &str, args: Vec<SqlStorageValue>) -> Result<worker::SqlCursor, ApiError> {
        self.sql().exec(q, args).map_err(sql_err)
    }

    fn rows(&self, q: &str, args: Vec<SqlStorageValue>) -> Result<Vec<Row>, ApiError> {
        self.exec(q, args)?.raw().collect::<Result<Vec<Row>, _>>().map_err(sql_err)
    }

    /// The first column of the first row, as an integer.
    fn scalar(&self, q: &str, args: Vec<SqlStorageValue>) -> Result<Option<i64>, ApiError> {
        Ok(self.rows(q, args)?.first().and_then(|r| int(r, 0)))
    }

    async fn op(&self, mut req: Request) -> Result<Response, ApiError> {
        let body = req.text().await.map_err(|e| ApiError::InvalidRequest(format!("No op: {e}.")))?;
        let op: Op = serde_json::from_str(&body)
            .map_err(|e| ApiError::InvalidRequest(format!("Not a conversation op: {e}.")))?;
        let cfg = Config::get(&self.env);
        let out = match op {
            Op::Outbound { message_id, content, callback_url, record, meta } => {
                let at_ms = order_ms(&meta.at);
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
                match record {
                    Some(t) => self.record(&message_id, t, meta)?,
                    None => json!({"ok": true}),
                }
            }
            Op::Status { message_id, record, meta } => self.record(&message_id, record, meta)?,
            Op::Inbound { message } => self.inbound(message, cfg.keep_history)?,
            Op::Typing => {
                self.broadcast(&Frame::Typing { active: true }.to_json());
                json!({"ok": true})
            }
            Op::TakeSend { max, expires_at_ms } => self.take_send(max, expires_at_ms).await?,
        };
        self.schedule().await?;
        Ok(json_response(200, &out))
    }

    /// Records `t` for a message (a duplicate changes nothing), decides on the exact records
    /// whether the status changed, queues the callback owed in the outbox and pushes the frame.
    /// All SQL here is synchronous: no other request interleaves between read and write.
    fn record(&self, message_id: &str, t: RecordType, meta: RecordMeta) -> Result<Value, ApiError> {
        let records = self.records(message_id)?;
        if records.iter().any(|(r, _)| *r == t) {
            let status = project(records.iter().map(|(r, _)| *r));
            return Ok(json!({"ok": true, "duplicate": true, "status": status}));
        }
        let callback_url = self
            .rows("SELECT callback_url FROM messages WHERE message_id = ?", vec![message_id.into()])?
            .first()
            .and_then(|r| text(r, 0));
        let before = project(records.iter().map(|(r, _)| *r));
        let known = Known { callback_url, records };
        if let Some(cb) = status_change_callback(message_id, t, &meta, &known) {
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
            let status = status_str(status);
            self.broadcast(&Frame::Status { message_id, status: &status, event: t.as_str() }.to_json());
        }
        Ok(json!({"ok": true, "status": after}))
    }

    fn records(&self, message_id: &str) -> Result<Vec<(RecordType, RecordMeta)>, ApiError> {
        let rows =
            self.rows("SELECT type, meta FROM events WHERE message_id = ?", vec![message_id.into()])?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some((RecordType::parse(&text(r, 0)?)?, serde_json::from_str(&text(r, 1)?).ok()?))
            })
            .collect())
    }

    fn inbound(&self, message: InboundMessage, keep_history: bool) -> Result<Value, ApiError> {
        let view = inbound_view(&message);
        let content = if keep_history { Some(view.to_string()) } else { None };
        let inserted = self
            .exec(
                "INSERT OR IGNORE INTO messages (message_id, direction, at_ms, at, content) VALUES (?, 'inbound', ?, ?, ?)",
                vec![message.message_id.as_str().into(), order_ms(&message.at).into(), message.at.as_str().into(), content.into()],
            )?
            .rows_written();
        if inserted > 0 {
            self.broadcast(&Frame::Received { message: &view }.to_json());
        }
        Ok(json!({"ok": true, "duplicate": inserted == 0}))
    }

    async fn take_send(&self, max: u32, expires_at_ms: u64) -> Result<Value, ApiError> {
        let used = self.scalar("SELECT n FROM budget WHERE id = 1", vec![])?.unwrap_or(0);
        if used >= i64::from(max) {
            return Ok(json!({"ok": false, "used": used}));
        }
        self.exec(
            "INSERT INTO budget (id, n, expires_at) VALUES (1, 1, ?) ON CONFLICT (id) DO UPDATE SET n = n + 1",
            vec![(expires_at_ms as i64).into()],
        )?;
        Ok(json!({"ok": true, "used": used + 1}))
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
        Ok(json!({
            "direction": "outbound",
            "messageId": r.message_id,
            "content": content,
            "status": view.as_ref().map(|v| v.status),
            "events": view.as_ref().map(|v| serde_json::to_value(&v.events).unwrap_or_default()).unwrap_or_else(|| json!([])),
            "at": r.at,
        }))
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

    fn broadcast(&self, frame: &str) {
        for ws in self.state.get_websockets() {
            let _ = ws.send_with_str(frame);
        }
    }

    /// `DELETE /conversation`: erase the stored content now (privacy requests). Callbacks
    /// still owed stay in the outbox; a budget object has nothing to erase.
    async fn erase(&self) -> Result<Response, ApiError> {
        self.exec("DELETE FROM messages", vec![])?;
        self.exec("DELETE FROM events", vec![])?;
        self.schedule().await?;
        Ok(json_response(200, &json!({"erased": true})))
    }

    /// Sets the alarm for the next owed callback or retention sweep; an object with nothing
    /// left deletes its storage (an idle, empty conversation costs nothing).
    async fn schedule(&self) -> Result<(), ApiError> {
        let next_callback = self.scalar("SELECT MIN(next_at) FROM outbox", vec![])?;
        let held = |table: &str| -> Result<bool, ApiError> {
            Ok(self.scalar(&format!("SELECT 1 FROM {table} LIMIT 1"), vec![])?.is_some())
        };
        let budget_until = self.scalar("SELECT expires_at FROM budget WHERE id = 1", vec![])?;
        let sweep = if held("messages")? || held("events")? { Some(now_ms() + SWEEP_EVERY_MS) } else { None };
        let next = [next_callback, sweep, budget_until.map(|t| t + 60_000)].into_iter().flatten().min();
        let storage = self.state.storage();
        match next {
            Some(at) => {
                let current = storage.get_alarm().await.map_err(sql_err)?;
                if current.is_none_or(|c| c > at) {
                    storage.set_alarm(at.saturating_sub(now_ms()).max(0)).await.map_err(sql_err)?;
                }
            }
            None if self.state.get_websockets().is_empty() => {
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

/// The history item of a user message.
fn inbound_view(m: &InboundMessage) -> Value {
    let mut v = serde_json::to_value(m).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut v {
        map.insert("direction".into(), "inbound".into());
    }
    v
}

fn status_str(s: crate::core::status::Status) -> String {
    serde_json::to_value(s).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
}
