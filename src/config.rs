//! Every setting, read once per isolate into a typed `Config` (names are the HTTP contract's).
//!
//! Settings are optional at load time; a handler asks for what it needs (`client_tokens()`,
//! `api_keys()`, …) and a missing one becomes a 500 naming the setting — the Worker still
//! serves every route that does not need it.

use std::cell::RefCell;
use std::rc::Rc;

use worker::Env;

use crate::core::route::ForwardKinds;
use crate::error::ApiError;

pub const DEFAULT_API_BASE: &str = "https://rcsbusinessmessaging.googleapis.com";
pub const DEFAULT_STATUS_TTL_DAYS: u64 = 30;
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_RETRY_DELAY_SECS: u64 = 10;

/// How verified webhook events are processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Processing {
    /// Enqueue on `EVENTS`, answer 200, process in the queue consumer (default).
    Queue,
    /// Apply in the request, answer 200 after (deployments without Queues).
    Inline,
}

#[derive(Debug)]
pub struct Config {
    client_tokens: Vec<String>,
    api_keys: Vec<String>,
    pub agent_id: Option<String>,
    pub status_ttl_secs: u64,
    pub processing: Processing,
    pub service_account_key: Option<String>,
    pub api_base: String,
    pub timeout_ms: u64,
    pub allowed_origins: Vec<String>,
    pub forward_url: Option<String>,
    pub forward_secret: Option<String>,
    pub forward_kinds: ForwardKinds,
    pub token_signing_key: Option<String>,
    /// First retry delay of a failed queue job; later ones grow with the job's age.
    pub retry_delay_secs: u64,
    /// Problems found while loading (bad numbers, unknown modes): reported on first use.
    invalid: Option<(&'static str, String)>,
}

thread_local! {
    // One Config per isolate: settings change only with a new deployment (a new isolate).
    static CONFIG: RefCell<Option<Rc<Config>>> = const { RefCell::new(None) };
}

impl Config {
    /// The isolate's Config, loaded from `env` on first use.
    pub fn get(env: &Env) -> Rc<Config> {
        CONFIG.with(|c| {
            if let Some(cfg) = c.borrow().as_ref() {
                return cfg.clone();
            }
            let cfg = Rc::new(Config::load(env));
            *c.borrow_mut() = Some(cfg.clone());
            cfg
        })
    }

    fn load(env: &Env) -> Config {
        // Secrets and plain vars are both JS strings on `env`; `var` reads either.
        let get = |name: &str| env.var(name).ok().map(|v| v.to_string()).filter(|s| !s.trim().is_empty());
        let mut invalid = None;
        let mut number = |name: &'static str, default: u64, min: u64, max: u64| match get(name) {
            None => default,
            Some(s) => match s.trim().parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => n,
                _ => {
                    let why = format!("expected a whole number from {min} to {max}");
                    invalid.get_or_insert((name, why));
                    default
                }
            },
        };
        let status_ttl_days = number("STATUS_TTL_DAYS", DEFAULT_STATUS_TTL_DAYS, 1, 3650);
        let timeout_ms = number("RBM_TIMEOUT_MS", DEFAULT_TIMEOUT_MS, 1, 120_000);
        let retry_delay_secs = number("RETRY_DELAY_SECONDS", DEFAULT_RETRY_DELAY_SECS, 0, 3600);
        let processing = match get("PROCESSING").as_deref().map(str::trim) {
            None | Some("queue") => Processing::Queue,
            Some("inline") => Processing::Inline,
            Some(_) => {
                invalid.get_or_insert(("PROCESSING", "expected queue or inline".into()));
                Processing::Queue
            }
        };
        Config {
            client_tokens: list(get("RBM_CLIENT_TOKEN")),
            api_keys: list(get("API_KEYS")),
            agent_id: get("RBM_AGENT_ID").map(|s| s.trim().to_string()),
            status_ttl_secs: status_ttl_days * 86_400,
            processing,
            service_account_key: get("RBM_SERVICE_ACCOUNT_KEY"),
            api_base: get("RBM_API_BASE")
                .map(|s| s.trim().trim_end_matches('/').to_string())
                .unwrap_or_else(|| DEFAULT_API_BASE.to_string()),
            timeout_ms,
            allowed_origins: list(get("ALLOWED_ORIGINS")),
            forward_url: get("FORWARD_URL").map(|s| s.trim().to_string()),
            forward_secret: get("FORWARD_SECRET"),
            forward_kinds: get("FORWARD_KINDS").map(|s| ForwardKinds::parse(&s)).unwrap_or_default(),
            token_signing_key: get("TOKEN_SIGNING_KEY"),
            retry_delay_secs,
            invalid,
        }
    }

    /// Fails with the first unusable setting found at load time.
    pub fn check(&self) -> Result<(), ApiError> {
        match &self.invalid {
            Some((name, why)) => Err(ApiError::ConfigInvalid(name, why.clone())),
            None => Ok(()),
        }
    }

    /// `RBM_CLIENT_TOKEN`, split on commas (several webhooks, or a rotation in progress).
    pub fn client_tokens(&self) -> Result<&[String], ApiError> {
        non_empty(&self.client_tokens, "RBM_CLIENT_TOKEN")
    }

    /// `API_KEYS`, split on commas.
    pub fn api_keys(&self) -> Result<&[String], ApiError> {
        non_empty(&self.api_keys, "API_KEYS")
    }
}

fn list(v: Option<String>) -> Vec<String> {
    v.map(|s| s.split(',').map(str::trim).filter(|t| !t.is_empty()).map(String::from).collect())
        .unwrap_or_default()
}

fn non_empty<'a>(v: &'a [String], name: &'static str) -> Result<&'a [String], ApiError> {
    if v.is_empty() {
        Err(ApiError::ConfigMissing(name))
    } else {
        Ok(v)
    }
}
