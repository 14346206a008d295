//! A Workers KV namespace, called directly: `worker::kv` converts its options and list pages
//! through serde_wasm_bindgen, kilobytes of wasm for a handful of fields.

use js_sys::{Object, Promise, Reflect, JSON};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use worker::kv::KvError;
use worker::Env;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(extends = Object)]
    pub type Namespace;

    #[wasm_bindgen(method, catch)]
    fn put(this: &Namespace, key: &str, value: &str, options: &Object) -> Result<Promise, JsValue>;

    #[wasm_bindgen(method, catch)]
    fn get(this: &Namespace, key: &str, kind: &str) -> Result<Promise, JsValue>;

    #[wasm_bindgen(method, catch, js_name = getWithMetadata)]
    fn get_with_metadata(this: &Namespace, key: &str, kind: &str) -> Result<Promise, JsValue>;

    #[wasm_bindgen(method, catch)]
    fn list(this: &Namespace, options: &Object) -> Result<Promise, JsValue>;

    #[wasm_bindgen(method, catch)]
    fn delete(this: &Namespace, key: &str) -> Result<Promise, JsValue>;
}

/// One listed key: its name and its metadata as JSON text.
pub struct Key {
    pub name: String,
    pub metadata: Option<String>,
}

pub struct Page {
    pub keys: Vec<Key>,
    /// The cursor of the next page; `None` on the last one.
    pub cursor: Option<String>,
}

fn field(o: &JsValue, k: &str) -> JsValue {
    Reflect::get(o, &JsValue::from_str(k)).unwrap_or(JsValue::UNDEFINED)
}

fn set(o: &Object, k: &str, v: &JsValue) {
    // A plain new object: defining a property cannot fail.
    let _ = Reflect::set(o, &JsValue::from_str(k), v);
}

/// Metadata back to JSON text (absent or null: none).
fn metadata_text(v: &JsValue) -> Option<String> {
    if v.is_null() || v.is_undefined() {
        return None;
    }
    JSON::stringify(v).ok().and_then(|s| s.as_string())
}

async fn call(p: Result<Promise, JsValue>) -> Result<JsValue, KvError> {
    Ok(JsFuture::from(p?).await?)
}

impl Namespace {
    /// The binding `name`, as `Env::kv` finds it (`None` when unbound).
    pub fn bound(env: &Env, name: &str) -> Option<Namespace> {
        let v = Reflect::get(env, &JsValue::from_str(name)).ok()?;
        (!v.is_undefined()).then(|| v.unchecked_into())
    }

    /// A blind put of `value`, with metadata (JSON text) and the expiry in seconds.
    pub async fn put_text(
        &self,
        key: &str,
        value: &str,
        metadata_json: Option<&str>,
        ttl_secs: u64,
    ) -> Result<(), KvError> {
        let options = Object::new();
        set(&options, "expirationTtl", &JsValue::from_f64(ttl_secs as f64));
        if let Some(m) = metadata_json {
            set(&options, "metadata", &JSON::parse(m)?);
        }
        call(self.put(key, value, &options)).await.map(|_| ())
    }

    pub async fn text(&self, key: &str) -> Result<Option<String>, KvError> {
        Ok(call(self.get(key, "text")).await?.as_string())
    }

    /// The value and its metadata (JSON text).
    pub async fn text_with_metadata(&self, key: &str) -> Result<(Option<String>, Option<String>), KvError> {
        let r = call(self.get_with_metadata(key, "text")).await?;
        Ok((field(&r, "value").as_string(), metadata_text(&field(&r, "metadata"))))
    }

    pub async fn list_page(
        &self,
        prefix: &str,
        limit: Option<u64>,
        cursor: Option<&str>,
    ) -> Result<Page, KvError> {
        let options = Object::new();
        if let Some(l) = limit {
            set(&options, "limit", &JsValue::from_f64(l as f64));
        }
        if let Some(c) = cursor {
            set(&options, "cursor", &JsValue::from_str(c));
        }
        set(&options, "prefix", &JsValue::from_str(prefix));
        let r = call(self.list(&options)).await?;
        let keys = field(&r, "keys")
            .dyn_into::<js_sys::Array>()
            .unwrap_or_default()
            .iter()
            .map(|k| Key {
                name: field(&k, "name").as_string().unwrap_or_default(),
                metadata: metadata_text(&field(&k, "metadata")),
            })
            .collect();
        let done = field(&r, "list_complete").as_bool().unwrap_or(true);
        let cursor = if done { None } else { field(&r, "cursor").as_string() };
        Ok(Page { keys, cursor })
    }

    pub async fn remove(&self, key: &str) -> Result<(), KvError> {
        call(self.delete(key)).await.map(|_| ())
    }
}
