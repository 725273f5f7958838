//! The browser app end to end: a bundle of two small trained models served on 127.0.0.1
//! with the built site, driven in headless Chromium (`tests/browser/drive.mjs`): type a text,
//! click Explain, and compare what the page computed with `trainer explain` on the same
//! text and model, once on WebGPU (SwiftShader, no GPU needed) and once on the CPU fallback.
//! A corrupt weights file must give the error, not a result.
//!
//! Needs the built site (`bash web/build.sh`), Chromium (`/usr/bin/chromium`, or `CHROMIUM`)
//! and Node.js; `.ci/run` provides all three. Screenshots go to `<target dir>/tmp/web_app/`.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use astrid_e2e::{cosine, floats, root, trainer, trainer_json};

const TEXT: &str =
    "The petitioner argued that the search of the vehicle violated the Fourth Amendment, and the court agreed.";
/// The teacher, a student, and the same student aligned with the teacher's reasons (what the
/// Pages demo shows side by side).
const MODELS: [&str; 3] = ["teacher_bert", "custom_2x384", "custom_2x384-align"];
const STEPS: &str = "16";

/// One Chromium at a time: SwiftShader on a 2-core machine is slow enough alone.
static BROWSER: Mutex<()> = Mutex::new(());

fn output_dir() -> PathBuf {
    astrid_e2e::output_dir("web_app")
}

fn chromium() -> String {
    let path = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&path).exists(),
        "{path} is missing: install Debian's chromium package (bash .ci/run does) or set CHROMIUM"
    );
    path
}

/// The built site: fails with what to run when it is missing or older than the page's code.
fn built_site() -> PathBuf {
    let www = root().join("www");
    let wasm = www.join("pkg/web_bg.wasm");
    let built = std::fs::metadata(&wasm)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| panic!("{} is missing: run `bash web/build.sh` first", wasm.display()));
    for entry in std::fs::read_dir(root().join("web/src")).unwrap() {
        let source = entry.unwrap().path();
        let changed = std::fs::metadata(&source).unwrap().modified().unwrap();
        assert!(
            changed <= built,
            "{} is newer than the built site: run `bash web/build.sh` again",
            source.display()
        );
    }
    www
}

/// A run of two test-size models and its exported bundle, made once per test binary.
struct Bundle {
    run: PathBuf,
    models: PathBuf,
}

fn bundle() -> &'static Bundle {
    static BUNDLE: OnceLock<Bundle> = OnceLock::new();
    BUNDLE.get_or_init(|| {
        let dir = output_dir().join(format!("bundle-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let run = dir.join("run");
        let out = trainer(&[
            "run",
            "--out",
            run.to_str().unwrap(),
            "--suite",
            "test",
            "--corpus-size",
            "200",
            "--epochs",
            "1",
            "--explain-n",
            "3",
            "--n-steps",
            "4",
            "--max-length",
            "48",
            "--training",
            "independent,align",
            "--quiet",
        ]);
        assert!(
            out.status.success(),
            "trainer run: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let models = dir.join("models");
        let out = trainer(&[
            "export",
            "--run",
            run.to_str().unwrap(),
            "--to",
            models.to_str().unwrap(),
            "--models",
            &MODELS[1..].join(","),
        ]);
        assert!(
            out.status.success(),
            "trainer export: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let manifest = astrid::schema::Manifest::parse(
            &std::fs::read_to_string(models.join("manifest.json")).unwrap(),
            "manifest.json",
        )
        .unwrap();
        let names: Vec<&str> = manifest.models.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names, MODELS,
            "export --models keeps the teacher and the named students"
        );
        let bad = trainer(&[
            "export",
            "--run",
            run.to_str().unwrap(),
            "--to",
            dir.join("x").to_str().unwrap(),
            "--models",
            "bert_xl",
        ]);
        assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("no model called 'bert_xl'"));
        assert!(!dir.join("x").exists(), "nothing written on error");
        Bundle { run, models }
    })
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') || name == "models" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(&name));
        } else {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

/// The site with the bundle as its models/, in a fresh directory.
fn site(name: &str, bundle: &Path) -> PathBuf {
    let dir = output_dir().join(format!("site-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&built_site(), &dir);
    copy_dir(bundle, &dir.join("models"));
    dir
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript",
        Some("css") => "text/css",
        Some("wasm") => "application/wasm",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

fn serve_one(mut stream: TcpStream, root: &Path, log: &Mutex<Vec<String>>) {
    let mut line = String::new();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    if reader.read_line(&mut line).is_err() {
        return;
    }
    // Drain the headers.
    let mut header = String::new();
    while reader.read_line(&mut header).map(|n| n > 2).unwrap_or(false) {
        header.clear();
    }
    let target = line.split_whitespace().nth(1).unwrap_or("/");
    let path = target.split(['?', '#']).next().unwrap_or("/");
    log.lock().unwrap().push(path.to_string());
    let path = if path.ends_with('/') {
        format!("{path}index.html")
    } else {
        path.to_string()
    };
    let file = root.join(path.trim_start_matches('/'));
    let response = match (path.contains(".."), std::fs::read(&file)) {
        (false, Ok(body)) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
                content_type(&file),
                body.len()
            );
            [head.into_bytes(), body].concat()
        }
        _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found".to_vec(),
    };
    let _ = stream.write_all(&response);
}

/// A static file server for one site, which records the paths it was asked for.
struct Server {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn count(&self, path: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.as_str() == path)
            .count()
    }
}

/// Serves `root` on 127.0.0.1 (a secure context, so WebGPU and Cache Storage work).
fn serve(root: PathBuf) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (root, log) = (root.clone(), log.clone());
            std::thread::spawn(move || serve_one(stream, &root, &log));
        }
    });
    Server { port, requests }
}

/// Opens the page in Chromium, types `text` and clicks Explain; returns the driver's JSON.
fn drive(url: &str, text: Option<&str>, webgpu: bool, screenshot: &Path, visits: usize) -> serde_json::Value {
    drive_with(url, text, webgpu, screenshot, visits, false)
}

/// [`drive`], then (with `evidence`) clicks "Remove the teacher's top tokens" and waits for
/// every model's probability without them.
fn drive_with(
    url: &str,
    text: Option<&str>,
    webgpu: bool,
    screenshot: &Path,
    visits: usize,
    evidence: bool,
) -> serde_json::Value {
    let _one = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let mut cmd = Command::new("node");
    cmd.arg(root().join("tests/browser/drive.mjs"))
        .args(["--url", url, "--chrome", &chromium(), "--timeout", "600"])
        .args([
            "--screenshot",
            screenshot.to_str().unwrap(),
            "--visits",
            &visits.to_string(),
        ]);
    if let Some(text) = text {
        cmd.args(["--text", text, "--click"]);
    }
    if !webgpu {
        cmd.arg("--no-webgpu");
    }
    if evidence {
        cmd.arg("--evidence");
    }
    let out = cmd
        .output()
        .expect("run node (Node.js is needed for the browser tests)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "driver output is not JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(out.status.success(), "the browser driver failed: {value:#}");
    eprintln!("screenshot: {}", screenshot.display());
    value
}

/// The page's attributions for each model equal `trainer explain`'s on the same text.
fn check_against_the_trainer(page: &serde_json::Value, backend: &str) {
    let result = &page["result"];
    assert!(result.get("error").is_none(), "the page reported an error: {page:#}");
    assert_eq!(result["backend"], backend, "{page:#}");
    assert_eq!(page["typedText"], TEXT);
    let models = result["models"].as_array().expect("models");
    let names: Vec<&str> = models.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, MODELS, "{page:#}");
    assert_eq!(page["rows"], serde_json::json!(MODELS), "one row per model on the page");
    for model in models {
        let name = model["name"].as_str().unwrap();
        let dir = bundle().run.join("models").join(name);
        let native = trainer_json(&[
            "explain",
            "--model",
            dir.to_str().unwrap(),
            "--text",
            TEXT,
            "--json",
            "--n-steps",
            STEPS,
        ]);
        assert_eq!(model["tokens"], native["tokens"], "{name}: tokens");
        assert_eq!(model["target"], native["target"], "{name}: target");
        let (web, cli) = (floats(&model["attributions"]), floats(&native["attributions"]));
        let similarity = cosine(&web, &cli);
        eprintln!(
            "{backend} {name}: cosine {similarity:.7} with trainer explain, {} ms",
            model["ms"]
        );
        assert!(similarity >= 0.999, "{name} on {backend}: cosine {similarity} < 0.999");
        let probs = floats(&model["probs"]);
        for (p, q) in probs.iter().zip(floats(&native["probs"])) {
            assert!((p - q).abs() < 1e-3, "{name}: probabilities {probs:?} vs trainer's");
        }
        let delta = model["convergence_delta"].as_f64().unwrap();
        assert!(
            delta.is_finite() && delta.abs() < 0.05,
            "{name}: convergence delta {delta}"
        );
        assert!(model["ms"].as_f64().unwrap() > 0.0);
        if name == MODELS[0] {
            assert!(model["similarity_to_teacher"].is_null());
        } else {
            let s = model["similarity_to_teacher"].as_f64().unwrap();
            assert!((-1.0..=1.0).contains(&s), "{name}: similarity {s}");
        }
    }
}

/// After "Remove the teacher's top tokens": the erased tokens are the teacher's top k by
/// attribution, and each model reports its probability for its class before (the explained
/// one) and after.
fn check_teacher_evidence_removed(page: &serde_json::Value) {
    let models = page["result"]["models"].as_array().expect("models");
    let teacher = &models[0];
    let k = teacher["without_teacher_evidence"]["k"].as_u64().expect("k") as usize;
    assert!(k >= 1, "{page:#}");
    let attributions = floats(&teacher["attributions"]);
    let attributions: Vec<f32> = attributions.iter().map(|&a| a as f32).collect();
    let special: Vec<bool> = teacher["special"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_bool().unwrap())
        .collect();
    let ranking = astrid::erasure::ranked_content(&attributions, &special);
    let expected: Vec<&str> = ranking[..k]
        .iter()
        .map(|&i| teacher["tokens"][i].as_str().unwrap())
        .collect();
    for model in models {
        let e = &model["without_teacher_evidence"];
        let removed: Vec<&str> = e["removed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert_eq!(removed, expected, "{}: the teacher's top {k}", model["name"]);
        let target = model["target"].as_u64().unwrap() as usize;
        let before = e["before"].as_f64().unwrap();
        assert!((before - floats(&model["probs"])[target]).abs() < 1e-6, "{e}");
        let after = e["after"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&after), "{e}");
    }
    let shown = page["evidenceText"].to_string();
    assert!(shown.contains("without the teacher's top"), "{shown}");
}

fn page_url(server: &Server) -> String {
    format!(
        "http://127.0.0.1:{}/index.html?models={}&n_steps={STEPS}",
        server.port,
        MODELS[1..].join(",")
    )
}

#[test]
fn explains_on_webgpu_like_the_trainer() {
    let server = serve(site("webgpu", &bundle().models));
    // backend=webgpu: left to choose, the page prefers the CPU to a software adapter.
    let url = format!("{}&backend=webgpu", page_url(&server));
    let page = drive(&url, Some(TEXT), true, &output_dir().join("webgpu.png"), 1);
    check_against_the_trainer(&page, "webgpu");
    // The page showed IG's progress while it ran (SwiftShader is slow enough to see it).
    let progress = page["progressSeen"].to_string();
    assert!(
        progress.contains(&format!("/{STEPS} points")),
        "no progress shown: {progress}"
    );
    let badge = page["backendText"].as_str().unwrap_or_default();
    assert!(
        badge.contains("WebGPU") && badge.contains("software"),
        "backend badge: {badge}"
    );
}

#[test]
fn explains_on_the_cpu_fallback_like_the_trainer() {
    let server = serve(site("cpu", &bundle().models));
    // Two visits in one browser profile: the second must take the weights from Cache Storage.
    let page = drive_with(
        &page_url(&server),
        Some(TEXT),
        false,
        &output_dir().join("cpu.png"),
        2,
        true,
    );
    check_against_the_trainer(&page, "cpu");
    check_teacher_evidence_removed(&page);
    for model in MODELS {
        let weights = format!("/models/{model}/model.safetensors");
        assert_eq!(server.count(&weights), 1, "{weights} was downloaded again on reload");
    }
    assert_eq!(server.count("/models/manifest.json"), 2);
    // The same attributions from the cached files.
    let first = page["firstResult"]["models"].as_array().expect("first visit's result");
    for (a, b) in first.iter().zip(page["result"]["models"].as_array().unwrap()) {
        assert_eq!(a["attributions"], b["attributions"], "{}", a["name"]);
    }
    let badge = page["backendText"].as_str().unwrap_or_default();
    assert!(
        badge.contains("CPU") && badge.contains("no WebGPU adapter"),
        "backend badge: {badge}"
    );
    // The leaderboard lists the aligned student beside the independent one, each with how it
    // was trained and the rule's verdict.
    let rows: Vec<Vec<String>> = serde_json::from_value(page["leaderboard"].clone()).expect("leaderboard rows");
    let row = |name: &str| {
        rows.iter()
            .find(|r| r[0] == name)
            .unwrap_or_else(|| panic!("{name}: {rows:?}"))
    };
    assert_eq!(row("custom_2x384")[1], "independent");
    assert_eq!(row("custom_2x384-align")[1], "align");
    // Where each started: the test bundle's models are trained from scratch.
    assert!(row("custom_2x384")[2].starts_with("scratch"), "{rows:?}");
    assert!(!row("custom_2x384-align").last().unwrap().is_empty(), "a verdict");
}

#[test]
fn corrupt_weights_give_an_error_not_a_result() {
    let dir = site("corrupt", &bundle().models);
    let weights = dir.join("models").join(MODELS[1]).join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&weights, bytes).unwrap();
    let server = serve(dir);
    let page = drive(
        &page_url(&server),
        Some(TEXT),
        true,
        &output_dir().join("corrupt.png"),
        1,
    );
    let error = page["result"]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error: {page:#}"));
    assert!(
        error.contains("custom_2x384/model.safetensors is corrupt") && error.contains("sha256"),
        "{error}"
    );
    let shown = page["errorText"].as_str().unwrap_or_default();
    assert!(shown.contains("is corrupt"), "the page shows: {shown}");
    assert!(page["result"].get("models").is_none());
    // Left to choose, the page prefers the CPU to SwiftShader's software adapter, and says why.
    let badge = page["backendText"].as_str().unwrap_or_default();
    assert!(
        badge.contains("CPU") && badge.contains("software rendering"),
        "backend badge: {badge}"
    );
}

#[test]
fn a_missing_bundle_is_explained_on_the_page() {
    let dir = output_dir().join(format!("site-empty-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&built_site(), &dir);
    let server = serve(dir);
    let url = format!("http://127.0.0.1:{}/", server.port);
    let page = drive(&url, None, true, &output_dir().join("missing.png"), 1);
    let error = page["result"]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error: {page:#}"));
    assert!(
        error.contains("models/manifest.json") && error.contains("trainer export"),
        "{error}"
    );
    assert!(page["errorText"].as_str().unwrap_or_default().contains("HTTP 404"));
}

#[test]
fn a_deep_link_runs_at_once_and_text_stays_text() {
    let server = serve(site("link", &bundle().models));
    // Markup, and longer than the models' 48 tokens.
    let text =
        "<img src=x onerror=\"window.injected=1\"> the court agreed with the petitioner on every count. ".repeat(6);
    let text = text.trim();
    let url = format!(
        "http://127.0.0.1:{}/index.html?models=&n_steps=4&method=riemann_trapezoid&run=1&text={}",
        server.port,
        text.replace('<', "%3C")
            .replace('>', "%3E")
            .replace(' ', "%20")
            .replace('"', "%22")
            .replace('=', "%3D")
    );
    let page = drive(&url, None, false, &output_dir().join("link.png"), 1);
    let result = &page["result"];
    assert!(result.get("error").is_none(), "{page:#}");
    // No students chosen: the teacher alone.
    let models = result["models"].as_array().unwrap();
    assert_eq!(models.len(), 1);
    assert_eq!(page["typedText"], text);
    assert!(page["injected"].is_null(), "markup in the text ran: {page:#}");
    assert_eq!(models[0]["truncated"], true);
    assert_eq!(models[0]["tokens"].as_array().unwrap().len(), 48);
    let notices = page["notices"].to_string();
    assert!(notices.contains("only its first 48 tokens"), "{notices}");
    let native = trainer_json(&[
        "explain",
        "--model",
        bundle().run.join("models").join(MODELS[0]).to_str().unwrap(),
        "--text",
        text,
        "--json",
        "--n-steps",
        "4",
        "--method",
        "riemann_trapezoid",
    ]);
    let similarity = cosine(&floats(&models[0]["attributions"]), &floats(&native["attributions"]));
    assert!(similarity >= 0.999, "cosine {similarity}");
}
