//! The page's side of the compute worker (`www/worker.js`): requests are messages with an id,
//! answers resolve the matching promise. One worker per page, started on first use.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use js_sys::{Array, Function, Object, Promise, Reflect};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{ErrorEvent, MessageEvent, Worker, WorkerOptions, WorkerType};

type Pending = Rc<RefCell<HashMap<u32, (Function, Function)>>>;
type Listeners = Rc<RefCell<HashMap<u32, Box<dyn Fn(u32, u32)>>>>;

pub struct WorkerClient {
    worker: Worker,
    pending: Pending,
    /// Progress callbacks of requests in flight.
    listeners: Listeners,
    next_id: Cell<u32>,
    // Kept alive as long as the worker.
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_error: Closure<dyn FnMut(ErrorEvent)>,
}

thread_local! {
    static CLIENT: RefCell<Option<Rc<WorkerClient>>> = const { RefCell::new(None) };
}

/// The page's worker, started on first use.
pub fn client() -> Result<Rc<WorkerClient>, String> {
    if let Some(client) = CLIENT.with(|c| c.borrow().clone()) {
        return Ok(client);
    }
    let client = Rc::new(WorkerClient::start()?);
    CLIENT.with(|c| *c.borrow_mut() = Some(client.clone()));
    Ok(client)
}

/// `value[key]`, undefined when missing.
pub fn field(value: &JsValue, key: &str) -> JsValue {
    Reflect::get(value, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

impl WorkerClient {
    fn start() -> Result<Self, String> {
        let options = WorkerOptions::new();
        options.set_type(WorkerType::Module);
        let worker = Worker::new_with_options("./worker.js", &options)
            .map_err(|e| format!("cannot start the compute worker (worker.js): {e:?}"))?;
        let pending: Pending = Rc::new(RefCell::new(HashMap::new()));
        let listeners: Listeners = Rc::new(RefCell::new(HashMap::new()));
        let on_message = {
            let (pending, listeners) = (pending.clone(), listeners.clone());
            Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
                let data = event.data();
                let Some(id) = field(&data, "id").as_f64() else { return };
                let id = id as u32;
                let progress = field(&data, "progress");
                if progress.is_object() {
                    let at = |i: u32| {
                        Reflect::get_u32(&progress, i)
                            .ok()
                            .and_then(|v| v.as_f64())
                            .unwrap_or(0.0) as u32
                    };
                    if let Some(listener) = listeners.borrow().get(&id) {
                        listener(at(0), at(1));
                    }
                    return;
                }
                listeners.borrow_mut().remove(&id);
                let Some((resolve, reject)) = pending.borrow_mut().remove(&id) else {
                    return;
                };
                if field(&data, "ok").as_bool() == Some(true) {
                    let _ = resolve.call1(&JsValue::NULL, &field(&data, "result"));
                } else {
                    let _ = reject.call1(&JsValue::NULL, &field(&data, "error"));
                }
            })
        };
        // A crash or a failed module load in the worker: every waiting request fails with it.
        let on_error = {
            let pending = pending.clone();
            Closure::<dyn FnMut(ErrorEvent)>::new(move |event: ErrorEvent| {
                let message = JsValue::from_str(&format!(
                    "the compute worker failed: {} (reload the page to start a new one)",
                    event.message()
                ));
                for (_, (_, reject)) in pending.borrow_mut().drain() {
                    let _ = reject.call1(&JsValue::NULL, &message);
                }
            })
        };
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        Ok(Self {
            worker,
            pending,
            listeners,
            next_id: Cell::new(1),
            _on_message: on_message,
            _on_error: on_error,
        })
    }

    /// Sends `request` (an object with `kind` and its fields), moving the `transfer` buffers
    /// to the worker, and waits for its answer.
    pub async fn call(&self, request: &Object, transfer: &[JsValue]) -> Result<JsValue, String> {
        self.call_with_progress(request, transfer, None).await
    }

    /// [`Self::call`], passing the worker's progress messages for it to `on_progress`.
    pub async fn call_with_progress(
        &self,
        request: &Object,
        transfer: &[JsValue],
        on_progress: Option<Box<dyn Fn(u32, u32)>>,
    ) -> Result<JsValue, String> {
        let id = self.next_id.get();
        if let Some(listener) = on_progress {
            self.listeners.borrow_mut().insert(id, listener);
        }
        self.next_id.set(id + 1);
        Reflect::set(request, &"id".into(), &JsValue::from(id)).map_err(|e| format!("{e:?}"))?;
        let pending = self.pending.clone();
        let promise = Promise::new(&mut |resolve, reject| {
            pending.borrow_mut().insert(id, (resolve, reject));
        });
        let sent = if transfer.is_empty() {
            self.worker.post_message(request)
        } else {
            self.worker
                .post_message_with_transfer(request, &transfer.iter().collect::<Array>())
        };
        if let Err(e) = sent {
            self.pending.borrow_mut().remove(&id);
            self.listeners.borrow_mut().remove(&id);
            return Err(format!("cannot send to the compute worker: {e:?}"));
        }
        JsFuture::from(promise).await.map_err(crate::download::js_text)
    }
}

/// Builds a request object from (key, value) pairs.
pub fn request(kind: &str, fields: &[(&str, JsValue)]) -> Object {
    let object = Object::new();
    let _ = Reflect::set(&object, &"kind".into(), &kind.into());
    for (key, value) in fields {
        let _ = Reflect::set(&object, &(*key).into(), value);
    }
    object
}
