//! Every setting, read once per isolate into a typed `Config` (names are the HTTP contract's).
//!
//! Settings are optional at load time; a handler asks for what it needs (`client_tokens()`,
//! `forward_key()`, …) and a missing or unusable one becomes a 500 naming the setting — the
//! Worker still serves every route that does not need it. Secrets that need parsing (the
//! Standard Webhooks keys, the service-account key, the token key) are parsed here, once per
//! isolate, by the fetch and the queue entry points alike.

use std::cell::RefCell;
use std::rc::Rc;

use worker::Env;

use crate::core::callback::{parse_origins, CallbackPolicy};
use crate::core::fallback::{Sender, Twilio};
use crate::core::jwt::ServiceAccountKey;
use crate::core::pipeline::{Mode, PipelineConfig};
use crate::core::region::{parse_agent_regions, Region};
use crate::core::route::ForwardKinds;
use crate::core::webhook_sign::parse_secret;
use crate::error::ApiError;

/// Shortest `TOKEN_SIGNING_KEY` accepted (HS256 keys should have the hash's 256 bits).
pub const MIN_SIGNING_KEY_LEN: usize = 32;

/// A secret setting: absent, or present and parsed (or why it could not be).
type Parsed<T> = Option<Result<T, String>>;

pub const DEFAULT_API_BASE: &str = "https://rcsbusinessmessaging.googleapis.com";
pub const DEFAULT_STATUS_TTL_DAYS: u64 = 30;
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_RETRY_DELAY_SECS: u64 = 10;

/// No `Debug`: it holds secrets.
pub struct Config {
    client_tokens: Vec<String>,
    api_keys: Vec<String>,
    pub agent_id: Option<String>,
    pub status_ttl_secs: u64,
    pub processing: Mode,
    /// `CONVERSATION_HISTORY` (default on): `off` keeps statuses but no message content.
    pub keep_history: bool,
    /// Twilio for SMS fallback; `None` when not configured (the forwarded FALLBACK document is
    /// then the business's cue).
    twilio: Parsed<Twilio>,
    /// How long a deadline revoke is retried before REVOKE_FAILED (default an hour).
    pub fallback_revoke_window_ms: u64,
    service_account: Parsed<Rc<ServiceAccountKey>>,
    /// `RBM_API_BASE`: agents not in `RBM_AGENT_REGIONS`.
    pub api_base: String,
    /// `RBM_API_BASE_US`, `_EUROPE`, `_ASIA`, in `Region::ALL` order.
    region_bases: [String; 3],
    /// `RBM_AGENT_REGIONS`.
    agent_regions: Vec<(String, Region)>,
    pub timeout_ms: u64,
    pub allowed_origins: Vec<String>,
    pub forward_url: Option<String>,
    forward_key: Parsed<Vec<u8>>,
    /// `CALLBACK_SECRET`'s key, else `FORWARD_SECRET`'s (with the setting's name for errors).
    callback_key: Option<(&'static str, Result<Vec<u8>, String>)>,
    callback_policy: Result<CallbackPolicy, String>,
    pub forward_kinds: ForwardKinds,
    token_key: Parsed<Vec<u8>>,
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
        let revoke_window_secs = number("FALLBACK_REVOKE_WINDOW_SECONDS", 3600, 3, 86_400);
        let processing = either(
            get("PROCESSING"),
            "PROCESSING",
            [("queue", Mode::Queue), ("inline", Mode::Inline)],
            &mut invalid,
        );
        let twilio = match (get("TWILIO_ACCOUNT_SID"), get("TWILIO_AUTH_TOKEN")) {
            (None, None) => None,
            (Some(account_sid), Some(auth_token)) => {
                let sender = match (get("TWILIO_FROM"), get("TWILIO_MESSAGING_SERVICE_SID")) {
                    (_, Some(mss)) => Ok(Sender::MessagingService(mss.trim().to_string())),
                    (Some(from), None) => Ok(Sender::From(from.trim().to_string())),
                    (None, None) => Err("set TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID".to_string()),
                };
                Some(sender.map(|sender| {
                    Twilio {
                        account_sid: account_sid.trim().to_string(),
                        auth_token,
                        sender,
                        api_base: get("TWILIO_API_BASE")
                            .map(|b| b.trim().trim_end_matches('/').to_string())
                            .unwrap_or_else(|| "https://api.twilio.com".into()),
                    }
                }))
            }
            _ => Some(Err("TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN go together".to_string())),
        };
        let keep_history = either(
            get("CONVERSATION_HISTORY"),
            "CONVERSATION_HISTORY",
            [("on", true), ("off", false)],
            &mut invalid,
        );
        let standard_webhooks_key =
            |name: &str| get(name).map(|s| parse_secret(&s).map_err(|e| e.describe().to_string()));
        let forward_key = standard_webhooks_key("FORWARD_SECRET");
        let callback_key = match standard_webhooks_key("CALLBACK_SECRET") {
            Some(k) => Some(("CALLBACK_SECRET", k)),
            None => forward_key.clone().map(|k| ("FORWARD_SECRET", k)),
        };
        let allow_insecure = either(
            get("ALLOW_INSECURE_CALLBACKS"),
            "ALLOW_INSECURE_CALLBACKS",
            [("false", false), ("true", true)],
            &mut invalid,
        );
        let callback_policy = parse_origins(&get("CALLBACK_ORIGINS").unwrap_or_default())
            .map(|origins| CallbackPolicy { origins, allow_insecure });
        let token_key = get("TOKEN_SIGNING_KEY").map(|k| {
            if k.len() < MIN_SIGNING_KEY_LEN {
                Err(format!("it must be at least {MIN_SIGNING_KEY_LEN} bytes"))
            } else {
                Ok(k.into_bytes())
            }
        });
        let base = |name: &str, default: String| {
            get(name).map(|s| s.trim().trim_end_matches('/').to_string()).unwrap_or(default)
        };
        let region_bases = Region::ALL.map(|r| {
            let name = format!("RBM_API_BASE_{}", r.as_str().to_ascii_uppercase());
            base(&name, format!("https://{}-rcsbusinessmessaging.googleapis.com", r.as_str()))
        });
        let agent_regions = parse_agent_regions(&get("RBM_AGENT_REGIONS").unwrap_or_default())
            .unwrap_or_else(|why| {
                invalid.get_or_insert(("RBM_AGENT_REGIONS", why));
                Vec::new()
            });
        let service_account = get("RBM_SERVICE_ACCOUNT_KEY")
            .map(|json| ServiceAccountKey::parse(&json).map(Rc::new).map_err(|e| e.describe().to_string()));
        Config {
            client_tokens: list(get("RBM_CLIENT_TOKEN")),
            api_keys: list(get("API_KEYS")),
            agent_id: get("RBM_AGENT_ID").map(|s| s.trim().to_string()),
            status_ttl_secs: status_ttl_days * 86_400,
            processing,
            keep_history,
            twilio,
            fallback_revoke_window_ms: revoke_window_secs * 1000,
            service_account,
            api_base: base("RBM_API_BASE", DEFAULT_API_BASE.to_string()),
            region_bases,
            agent_regions,
            timeout_ms,
            allowed_origins: list(get("ALLOWED_ORIGINS")),
            forward_url: get("FORWARD_URL").map(|s| s.trim().to_string()),
            forward_key,
            callback_key,
            callback_policy,
            forward_kinds: get("FORWARD_KINDS").map(|s| ForwardKinds::parse(&s)).unwrap_or_default(),
            token_key,
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

    /// The key that signs forwarded events (`FORWARD_SECRET`).
    pub fn forward_key(&self) -> Result<&[u8], ApiError> {
        parsed(&self.forward_key, "FORWARD_SECRET").map(Vec::as_slice)
    }

    /// The key that signs status callbacks: `CALLBACK_SECRET`, else `FORWARD_SECRET`.
    pub fn callback_key(&self) -> Result<&[u8], ApiError> {
        match &self.callback_key {
            None => Err(ApiError::ConfigMissing("CALLBACK_SECRET (or FORWARD_SECRET)")),
            Some((_, Ok(k))) => Ok(k),
            Some((name, Err(why))) => Err(ApiError::ConfigInvalid(name, why.clone())),
        }
    }

    /// Where status callbacks may point (`CALLBACK_ORIGINS`, `ALLOW_INSECURE_CALLBACKS`).
    pub fn callback_policy(&self) -> Result<&CallbackPolicy, ApiError> {
        self.callback_policy.as_ref().map_err(|why| ApiError::ConfigInvalid("CALLBACK_ORIGINS", why.clone()))
    }

    /// The key of browser tokens (`TOKEN_SIGNING_KEY`, at least 32 bytes), if tokens are on.
    pub fn token_key(&self) -> Option<Result<&[u8], ApiError>> {
        self.token_key
            .as_ref()
            .map(|k| k.as_deref().map_err(|why| ApiError::ConfigInvalid("TOKEN_SIGNING_KEY", why.clone())))
    }

    /// Twilio for SMS fallback: `Ok(None)` when not configured, an error naming the problem
    /// when half configured.
    pub fn twilio(&self) -> Result<Option<&Twilio>, ApiError> {
        match &self.twilio {
            None => Ok(None),
            Some(Ok(t)) => Ok(Some(t)),
            Some(Err(why)) => Err(ApiError::ConfigInvalid("TWILIO_ACCOUNT_SID", why.clone())),
        }
    }

    /// The service account the RBM API is called as (`RBM_SERVICE_ACCOUNT_KEY`).
    pub fn service_account(&self) -> Result<Rc<ServiceAccountKey>, ApiError> {
        parsed(&self.service_account, "RBM_SERVICE_ACCOUNT_KEY").cloned()
    }

    /// The RBM host for `agent`'s calls: its region's (`RBM_AGENT_REGIONS`), else
    /// `RBM_API_BASE`.
    pub fn api_base_for(&self, agent: &str) -> &str {
        match self.agent_regions.iter().find(|(a, _)| a == agent) {
            Some((_, region)) => self.region_base(*region),
            None => &self.api_base,
        }
    }

    /// A region's RBM host (`RBM_API_BASE_US`, `_EUROPE`, `_ASIA`).
    pub fn region_base(&self, region: Region) -> &str {
        &self.region_bases[region as usize]
    }

    /// What the pipeline's decisions depend on.
    pub fn pipeline(&self) -> PipelineConfig<'_> {
        PipelineConfig {
            forward: self.forward_url.as_ref().map(|_| &self.forward_kinds),
            default_agent: self.agent_id.as_deref(),
            mode: self.processing,
        }
    }
}

fn parsed<'a, T>(v: &'a Parsed<T>, name: &'static str) -> Result<&'a T, ApiError> {
    match v {
        None => Err(ApiError::ConfigMissing(name)),
        Some(Ok(t)) => Ok(t),
        Some(Err(why)) => Err(ApiError::ConfigInvalid(name, why.clone())),
    }
}

/// A setting of two values, the first the default; anything else is reported as unusable
/// (`expected a or b`) and the default used.
fn either<T: Copy>(
    value: Option<String>,
    name: &'static str,
    [(a, default), (b, other)]: [(&str, T); 2],
    invalid: &mut Option<(&'static str, String)>,
) -> T {
    match value.as_deref().map(str::trim) {
        None => default,
        Some(v) if v == a => default,
        Some(v) if v == b => other,
        Some(_) => {
            invalid.get_or_insert((name, format!("expected {a} or {b}")));
            default
        }
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
