//! Downloads a bundle file with progress, checks its sha256 against the manifest, and keeps
//! it in the browser's Cache Storage so a reload does not download it again. The bytes stay
//! in JavaScript memory (they go to the worker next), never copied through this module.

use js_sys::{ArrayBuffer, Object, Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Cache, ReadableStreamDefaultReader, Response};

use astrid::schema::bundle::FileEntry;

/// Cache Storage bucket; entries are keyed by URL and sha256, so a new bundle never reads
/// an old file.
const CACHE_NAME: &str = "astrid-bundle-v1";

/// A JavaScript error or value as readable text.
pub fn js_text(e: JsValue) -> String {
    e.as_string()
        .or_else(|| e.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message())))
        .unwrap_or_else(|| format!("{e:?}"))
}

async fn wait(promise: js_sys::Promise) -> Result<JsValue, String> {
    JsFuture::from(promise).await.map_err(js_text)
}

fn window() -> Result<web_sys::Window, String> {
    web_sys::window().ok_or_else(|| "no window".to_string())
}

/// Fetches a small text file (the manifest); the error says what to do.
pub async fn fetch_text(url: &str) -> Result<String, String> {
    let response: Response = wait(window()?.fetch_with_str(url))
        .await
        .map_err(|e| format!("{url}: cannot be fetched ({e}); is the site served over http(s)?"))?
        .unchecked_into();
    if !response.ok() {
        return Err(format!("{url}: HTTP {} {}", response.status(), response.status_text()));
    }
    let text = wait(response.text().map_err(js_text)?).await?;
    text.as_string().ok_or_else(|| format!("{url}: not text"))
}

/// Lowercase hex sha256 of `bytes`, by the browser's Web Crypto.
pub async fn sha256_hex(bytes: &Uint8Array) -> Result<String, String> {
    let subtle = window()?
        .crypto()
        .map_err(|_| "this browser has no Web Crypto to check downloads".to_string())?
        .subtle();
    let digest = wait(
        subtle
            .digest_with_str_and_buffer_source("SHA-256", bytes.unchecked_ref::<Object>())
            .map_err(js_text)?,
    )
    .await?;
    Ok(Uint8Array::new(&digest)
        .to_vec()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

async fn open_cache() -> Option<Cache> {
    // Cache Storage exists only in secure contexts (https, localhost); without it we download.
    let caches = window().ok()?.caches().ok()?;
    wait(caches.open(CACHE_NAME)).await.ok()?.dyn_into().ok()
}

async fn response_bytes(response: &Response) -> Result<Uint8Array, String> {
    let buffer: ArrayBuffer = wait(response.array_buffer().map_err(js_text)?).await?.unchecked_into();
    Ok(Uint8Array::new(&buffer))
}

/// Streams `response`'s body into one buffer of `expected` bytes, reporting progress.
async fn read_body(response: &Response, expected: u64, progress: &dyn Fn(u64)) -> Result<Uint8Array, String> {
    let Some(body) = response.body() else {
        return response_bytes(response).await;
    };
    let reader: ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let mut chunks: Vec<Uint8Array> = Vec::new();
    let mut loaded: u64 = 0;
    loop {
        let step = wait(reader.read()).await?;
        if Reflect::get(&step, &"done".into()).ok().and_then(|d| d.as_bool()) == Some(true) {
            break;
        }
        let chunk: Uint8Array = Reflect::get(&step, &"value".into()).map_err(js_text)?.unchecked_into();
        loaded += u64::from(chunk.length());
        progress(loaded.min(expected));
        chunks.push(chunk);
    }
    let all = Uint8Array::new_with_length(loaded as u32);
    let mut offset = 0;
    for chunk in chunks {
        all.set(&chunk, offset);
        offset += chunk.length();
    }
    Ok(all)
}

/// A checked file, and whether it came from the cache.
pub struct Fetched {
    pub bytes: Uint8Array,
    pub from_cache: bool,
}

/// Downloads `url` (or takes it from the cache), checks size and sha256 against `entry`,
/// and returns the bytes. `progress` gets the bytes received so far.
pub async fn fetch_verified(url: &str, entry: &FileEntry, progress: &dyn Fn(u64)) -> Result<Fetched, String> {
    let cache = open_cache().await;
    let key = format!("{url}?sha256={}", entry.sha256);
    if let Some(cache) = &cache
        && let Ok(hit) = wait(cache.match_with_str(&key)).await
        && let Ok(response) = hit.dyn_into::<Response>()
    {
        let bytes = response_bytes(&response).await?;
        if sha256_hex(&bytes).await? == entry.sha256 {
            progress(entry.size);
            return Ok(Fetched {
                bytes,
                from_cache: true,
            });
        }
        // A damaged cache entry: drop it and download again.
        let _ = wait(cache.delete_with_str(&key)).await;
    }
    let response: Response = wait(window()?.fetch_with_str(url))
        .await
        .map_err(|e| format!("{url}: download failed ({e}); check the connection and reload"))?
        .unchecked_into();
    if !response.ok() {
        return Err(format!(
            "{url}: download failed with HTTP {} {}; is the bundle complete on the server?",
            response.status(),
            response.status_text()
        ));
    }
    let bytes = read_body(&response, entry.size, progress).await?;
    let size = u64::from(bytes.length());
    let sha = sha256_hex(&bytes).await?;
    if size != entry.size || sha != entry.sha256 {
        return Err(format!(
            "{url} is corrupt: got {size} bytes with sha256 {sha}, but the manifest says {} bytes with sha256 {}. \
             Re-export the bundle (trainer export) or re-upload this file, then reload.",
            entry.size, entry.sha256
        ));
    }
    if let Some(cache) = &cache
        && let Ok(stored) = Response::new_with_opt_buffer_source(Some(bytes.unchecked_ref::<Object>()))
    {
        // Quota errors only cost a download next time.
        let _ = wait(cache.put_with_str(&key, &stored)).await;
    }
    Ok(Fetched {
        bytes,
        from_cache: false,
    })
}

/// Whether `url` is already in the cache with this sha256 (shown as "cached").
pub async fn is_cached(url: &str, entry: &FileEntry) -> bool {
    let Some(cache) = open_cache().await else { return false };
    let key = format!("{url}?sha256={}", entry.sha256);
    matches!(wait(cache.match_with_str(&key)).await, Ok(v) if v.is_instance_of::<Response>())
}

/// The buffer behind `bytes` (transferable to the worker).
pub fn buffer_of(bytes: &Uint8Array) -> JsValue {
    bytes.buffer().into()
}
