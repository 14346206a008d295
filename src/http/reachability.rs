//! `POST /v1/reachability`: which of up to 10 000 numbers RBM can reach, through
//! `users.batchGet` on each region's host (Google requires one region per call).

use std::future::Future;
use std::task::Poll;

use futures_util::future::{maybe_done, poll_fn};
use serde_json::json;
use worker::{Method, Response};

use super::auth::Caller;
use super::{agent_for, Cx, Request};
use crate::core::reachability::{answer, batch_body, parse_request, plan};
use crate::core::token::Scope;
use crate::error::ApiError;
use crate::google::rbm;

/// 10 000 numbers of 16 characters, quoted, with commas and some room for whitespace.
const MAX_BODY: usize = 512 * 1024;
/// Calls in flight at once: Workers allows six open connections per request, and Google's
/// 600 queries a minute are shared with every other request.
const CONCURRENCY: usize = 4;

pub async fn check(req: Request, caller: &Caller, cx: &Cx) -> Result<Response, ApiError> {
    let body = req.body(MAX_BODY).await?;
    let request = parse_request(&body)?;
    // Every number checked (the list is never empty, so the scope is too).
    for n in &request.numbers {
        caller.require(Scope::CapabilitiesRead, Some(n))?;
    }
    let agent = agent_for(request.agent_id, caller, cx)?;
    let calls = plan(&request.numbers);
    crate::store::limits::take_rbm_queries(&cx.env, calls.len()).await?;

    // In waves of CONCURRENCY, answers kept in call order for the merge. (Polled by hand:
    // `join_all` brings FuturesOrdered and a binary heap into the wasm for four futures.)
    let mut answers = Vec::with_capacity(calls.len());
    for wave in calls.chunks(CONCURRENCY) {
        let mut wave: Vec<_> = wave
            .iter()
            .map(|(region, chunk)| {
                let base = cx.cfg.region_base(*region);
                let body = batch_body(chunk, &agent);
                Box::pin(maybe_done(async move {
                    rbm::call(&cx.cfg, cx.now_ms, base, Method::Post, "/v1/users:batchGet", Some(&body)).await
                }))
            })
            .collect();
        poll_fn(|task| {
            let mut done = true;
            for f in &mut wave {
                done &= f.as_mut().poll(task).is_ready();
            }
            if done {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        answers.extend(wave.iter_mut().filter_map(|f| f.as_mut().take_output()));
    }

    let mut merged = Vec::with_capacity(calls.len());
    for ((region, _), answer) in calls.iter().zip(answers) {
        let answer = answer?;
        if !answer.is_success() {
            // One failed chunk fails the request: a partial list would read as "not reachable".
            let out = json!({"agentId": agent, "region": region.as_str(), "rbm": answer.body});
            return Ok(answer.respond(&out));
        }
        merged.push((*region, answer.body));
    }
    Ok(crate::error::json_response(200, &answer(&agent, &request.numbers, merged)))
}
