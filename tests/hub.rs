//! Hub ids (`hf:org/name@rev`) against a stand-in for the Hugging Face Hub on 127.0.0.1: a
//! small HTTP server that serves the committed tiny BERT fixture with the Hub's URL scheme
//! and headers (`/api/models/{repo}/revision/{rev}`, `/{repo}/resolve/{rev}/{file}` with
//! X-Repo-Commit, ETag / X-Linked-Etag, ranges), reached through HF_ENDPOINT. No network.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use astrid::schema::RunResults;
use astrid_e2e::{cosine, fixture, floats, max_rel_diff, output_dir, trainer_bin};
use sha2::{Digest, Sha256};

const REPO: &str = "astrid-test/tiny-bert";
/// The same files, served only with the token below (a gated or private repository).
const GATED: &str = "astrid-test/gated-bert";
const TOKEN: &str = "hf_astrid_test_token";
/// The fixture with its weights in two shards and their index.
const SHARDED: &str = "astrid-test/sharded-bert";
const COMMIT: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

/// What the stand-in does with the next downloads of the weights' bytes.
#[derive(Default)]
struct Faults {
    /// Send the headers of the whole file, half of the bytes, then close: this many times.
    cut_weights: AtomicUsize,
    /// Serve the weights with one byte changed (the announced SHA-256 is the true one's).
    corrupt_weights: AtomicBool,
}

/// A request line and its Authorization header.
type Request = (String, Option<String>);

struct HubStandIn {
    endpoint: String,
    /// Every request line received, in order, with its Authorization header.
    requests: Arc<Mutex<Vec<Request>>>,
    faults: Arc<Faults>,
}

/// A repository's files: name and bytes.
type Files = Vec<(String, Vec<u8>)>;

/// Weights split in two shards, with the index that names them (as large models are saved).
fn shards(weights: &[u8]) -> Files {
    let file = safetensors::SafeTensors::deserialize(weights).unwrap();
    let mut names: Vec<String> = file.names().into_iter().map(str::to_string).collect();
    names.sort();
    let half = names.len() / 2;
    let mut out = Vec::new();
    let mut map = serde_json::Map::new();
    for (k, part) in [&names[..half], &names[half..]].into_iter().enumerate() {
        let shard = format!("model-0000{}-of-00002.safetensors", k + 1);
        let views: Vec<(String, safetensors::tensor::TensorView)> =
            part.iter().map(|n| (n.clone(), file.tensor(n).unwrap())).collect();
        out.push((shard.clone(), safetensors::serialize(views, None).unwrap()));
        for n in part {
            map.insert(n.clone(), shard.clone().into());
        }
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": map });
    out.push((
        "model.safetensors.index.json".to_string(),
        index.to_string().into_bytes(),
    ));
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl HubStandIn {
    fn start() -> Self {
        let dir = fixture("tiny_bert");
        let read = |f: &str| (f.to_string(), std::fs::read(dir.join(f)).unwrap());
        let whole: Files = ["config.json", "model.safetensors", "tokenizer.json"]
            .map(read)
            .to_vec();
        let mut sharded: Files = ["config.json", "tokenizer.json"].map(read).to_vec();
        sharded.extend(shards(&std::fs::read(dir.join("model.safetensors")).unwrap()));
        let files = [(REPO, whole.clone()), (GATED, whole), (SHARDED, sharded)];
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let faults = Arc::new(Faults::default());
        let (seen, fault) = (requests.clone(), faults.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                serve(stream, &files, &seen, &fault);
            }
        });
        Self {
            endpoint,
            requests,
            faults,
        }
    }

    fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

fn respond(stream: &mut TcpStream, status: &str, headers: &[(String, String)], body: &[u8], declared: usize) {
    let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {declared}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let _ = stream.flush();
}

fn not_found(stream: &mut TcpStream, code: &str) {
    let body = format!("{{\"error\": \"{code}\"}}");
    let headers = [("X-Error-Code".to_string(), code.to_string())];
    respond(stream, "404 Not Found", &headers, body.as_bytes(), body.len());
}

fn serve(mut stream: TcpStream, repos: &[(&str, Files)], seen: &Mutex<Vec<Request>>, faults: &Faults) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut range: Option<(usize, Option<usize>)> = None;
    let mut authorization = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("authorization")
        {
            authorization = Some(value.trim().to_string());
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("range")
            && let Some(spec) = value.trim().strip_prefix("bytes=")
            && let Some((from, to)) = spec.split_once('-')
        {
            range = Some((from.parse().unwrap_or(0), to.parse().ok()));
        }
    }
    seen.lock()
        .unwrap()
        .push((line.trim().to_string(), authorization.clone()));
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let Some((repo, files)) = repos.iter().find(|(r, _)| path.contains(&format!("/{r}/"))) else {
        // The Hub answers 401 for a repository it does not show, whatever the reason.
        return respond(&mut stream, "401 Unauthorized", &[], b"", 0);
    };
    if *repo == GATED && authorization.as_deref() != Some(&format!("Bearer {TOKEN}")) {
        return respond(&mut stream, "401 Unauthorized", &[], b"", 0);
    }
    let known_revision = |rev: &str| rev == "main" || rev == COMMIT;
    if let Some(rest) = path.strip_prefix(&format!("/api/models/{repo}/revision/")) {
        if !known_revision(rest) {
            return not_found(&mut stream, "RevisionNotFound");
        }
        let siblings: Vec<serde_json::Value> = files
            .iter()
            .map(|(f, _)| serde_json::json!({ "rfilename": f }))
            .chain([serde_json::json!({ "rfilename": "README.md" })])
            .collect();
        let body = serde_json::json!({ "id": repo, "sha": COMMIT, "siblings": siblings }).to_string();
        let headers = [("Content-Type".to_string(), "application/json".to_string())];
        return respond(&mut stream, "200 OK", &headers, body.as_bytes(), body.len());
    }
    let Some(rest) = path.strip_prefix(&format!("/{repo}/resolve/")) else {
        return not_found(&mut stream, "EntryNotFound");
    };
    let (rev, name) = rest.split_once('/').unwrap_or((rest, ""));
    if !known_revision(rev) {
        return not_found(&mut stream, "RevisionNotFound");
    }
    let Some((_, bytes)) = files.iter().find(|(f, _)| f == name) else {
        return not_found(&mut stream, "EntryNotFound");
    };
    let weights = name.ends_with(".safetensors");
    // Large files are LFS files on the Hub: their SHA-256 is the linked ETag.
    let mut headers = vec![("X-Repo-Commit".to_string(), COMMIT.to_string())];
    if weights {
        headers.push((
            "X-Linked-Etag".to_string(),
            format!("\"{}\"", hex(&Sha256::digest(bytes))),
        ));
        headers.push(("ETag".to_string(), "\"0123abcd\"".to_string()));
    } else {
        headers.push((
            "ETag".to_string(),
            format!("\"{}\"", &hex(&Sha256::digest(bytes))[..40]),
        ));
    }
    let mut served = bytes.clone();
    if weights && faults.corrupt_weights.load(Ordering::SeqCst) {
        let middle = served.len() / 2;
        served[middle] ^= 0x55;
    }
    let (from, to) = range.unwrap_or((0, None));
    let to = to.unwrap_or(served.len() - 1).min(served.len() - 1);
    let part = &served[from.min(served.len())..=to];
    headers.push((
        "Content-Range".to_string(),
        format!("bytes {from}-{to}/{}", served.len()),
    ));
    let probe = range == Some((0, Some(0)));
    let cut = weights
        && !probe
        && faults
            .cut_weights
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
    let status = if range.is_some() {
        "206 Partial Content"
    } else {
        "200 OK"
    };
    if cut {
        respond(&mut stream, status, &headers, &part[..part.len() / 2], part.len());
    } else {
        respond(&mut stream, status, &headers, part, part.len());
    }
}

/// `trainer ARGS…` with the Hub's environment: HF_ENDPOINT the stand-in, HF_HOME a
/// directory of the test's; `offline` sets HF_HUB_OFFLINE=1.
fn trainer_with_hub(args: &[&str], hub: &HubStandIn, hf_home: &Path, offline: bool) -> Output {
    let offline: &[(&str, &str)] = if offline { &[("HF_HUB_OFFLINE", "1")] } else { &[] };
    trainer_with_env(args, hub, hf_home, offline)
}

/// [`trainer_with_hub`] with other Hub variables set (none of the caller's leak in).
fn trainer_with_env(args: &[&str], hub: &HubStandIn, hf_home: &Path, vars: &[(&str, &str)]) -> Output {
    let mut command = Command::new(trainer_bin());
    command
        .args(args)
        .env("HF_ENDPOINT", &hub.endpoint)
        .env("HF_HOME", hf_home)
        .env_remove("HF_HUB_CACHE")
        .env_remove("HF_TOKEN")
        .env_remove("HF_TOKEN_PATH")
        .env_remove("HF_HUB_OFFLINE")
        .envs(vars.iter().copied());
    command.output().unwrap()
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = output_dir("hub").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn snapshot_of(hf_home: &Path, repo: &str) -> PathBuf {
    hf_home
        .join("hub")
        .join(format!("models--{}", repo.replace('/', "--")))
        .join("snapshots")
        .join(COMMIT)
}

fn snapshot(hf_home: &Path) -> PathBuf {
    snapshot_of(hf_home, REPO)
}

/// The oracle's first case, explained through a model reference: its attributions must be
/// Captum's for the fixture.
fn explain_matches_the_oracle(reference: &str, hub: &HubStandIn, hf_home: &Path, offline: bool) {
    let oracle: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("tiny_bert_oracle.json")).unwrap()).unwrap();
    let case = &oracle["cases"][0];
    let mut args = vec![
        "explain",
        "--model",
        reference,
        "--text",
        case["text"].as_str().unwrap(),
        "--json",
    ];
    args.extend(case["cli_args"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()));
    let out = trainer_with_hub(&args, hub, hf_home, offline);
    assert!(out.status.success(), "{}", stderr(&out));
    let ours: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (a, b) = (floats(&ours["attributions"]), floats(&case["attributions"]));
    assert!(
        cosine(&a, &b) >= 0.9999 && max_rel_diff(&a, &b) <= 1e-4,
        "{reference}: attributions differ from Captum's"
    );
}

#[test]
fn a_hub_id_is_fetched_once_into_the_hugging_face_cache_then_used_offline() {
    let hub = HubStandIn::start();
    let home = fresh_dir("first-use");
    let reference = format!("hf:{REPO}");
    explain_matches_the_oracle(&reference, &hub, &home, false);
    let fetched = hub.request_count();
    assert!(
        fetched >= 4,
        "the file list and three files: {:?}",
        hub.requests.lock().unwrap()
    );
    // Python's layout: blobs named by ETag, snapshot links, refs/main → the commit.
    let refs = std::fs::read_to_string(home.join("hub/models--astrid-test--tiny-bert/refs/main")).unwrap();
    assert_eq!(refs.trim(), COMMIT);
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        let linked = snapshot(&home).join(file);
        assert!(linked.is_symlink(), "{}", linked.display());
        assert_eq!(
            std::fs::read(&linked).unwrap(),
            std::fs::read(fixture("tiny_bert").join(file)).unwrap()
        );
    }
    // Only what a checkpoint needs: no README.
    assert!(!snapshot(&home).join("README.md").exists());
    // Second use: from the cache, no request at all; the same with HF_HUB_OFFLINE and by commit.
    explain_matches_the_oracle(&reference, &hub, &home, false);
    explain_matches_the_oracle(&reference, &hub, &home, true);
    explain_matches_the_oracle(&format!("{reference}@{COMMIT}"), &hub, &home, true);
    assert_eq!(hub.request_count(), fetched, "{:?}", hub.requests.lock().unwrap());
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn offline_with_an_empty_cache_and_a_missing_revision_fail_clearly() {
    let hub = HubStandIn::start();
    let home = fresh_dir("failures");
    let explain = |reference: &str, extra: &[&str], offline: bool| {
        let mut args = vec!["explain", "--model", reference, "--text", "a case"];
        args.extend(extra);
        trainer_with_hub(&args, &hub, &home, offline)
    };
    for (extra, offline) in [(&["--offline"][..], false), (&[][..], true)] {
        let out = explain(&format!("hf:{REPO}"), extra, offline);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(
            err.contains("offline")
                && err.contains("not in the Hugging Face cache")
                && err.contains("models--astrid-test--tiny-bert"),
            "{err}"
        );
    }
    assert_eq!(hub.request_count(), 0, "offline made a request");
    let out = explain(&format!("hf:{REPO}@v9"), &[], false);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("no revision 'v9'") && err.contains("HTTP 404"), "{err}");
    let out = explain("hf:astrid-test/absent", &[], false);
    assert!(
        stderr(&out).contains("HTTP 401") && stderr(&out).contains("HF_TOKEN"),
        "{}",
        stderr(&out)
    );
    let out = explain("hf:astrid-test/../x", &[], false);
    assert!(stderr(&out).contains("not a Hub model id"), "{}", stderr(&out));
    // Nothing was cached for any of them.
    assert!(!home.join("hub/models--astrid-test--tiny-bert/snapshots").exists());
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn an_interrupted_or_corrupted_download_leaves_nothing_a_later_run_trusts() {
    let hub = HubStandIn::start();
    let home = fresh_dir("interrupted");
    let reference = format!("hf:{REPO}");
    let args = ["explain", "--model", reference.as_str(), "--text", "a case"];
    // Every download of the weights is cut halfway (retries included).
    hub.faults.cut_weights.store(100, Ordering::SeqCst);
    let out = trainer_with_hub(&args, &hub, &home, false);
    assert!(!out.status.success(), "a cut download was accepted");
    assert!(stderr(&out).contains("model.safetensors"), "{}", stderr(&out));
    assert!(!snapshot(&home).join("model.safetensors").exists());
    // Offline, the cache does not pass for complete.
    let out = trainer_with_hub(&args, &hub, &home, true);
    assert!(stderr(&out).contains("has no model.safetensors"), "{}", stderr(&out));
    // Bytes that do not match the announced SHA-256 are removed, not kept.
    hub.faults.cut_weights.store(0, Ordering::SeqCst);
    hub.faults.corrupt_weights.store(true, Ordering::SeqCst);
    let fresh = fresh_dir("corrupted");
    // A user's files in the cache, beside and inside the repository's folder.
    let planted = [
        fresh.join("token-notes.txt"),
        fresh.join("hub/models--other--model/blobs/keep.bin"),
        fresh.join("hub/models--astrid-test--tiny-bert/blobs/users-file.bin"),
    ];
    for file in &planted {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, b"the user's").unwrap();
    }
    let out = trainer_with_hub(&args, &hub, &fresh, false);
    assert!(!out.status.success(), "a corrupted download was accepted");
    assert!(stderr(&out).contains("SHA-256"), "{}", stderr(&out));
    for file in &planted {
        assert_eq!(std::fs::read(file).unwrap(), b"the user's", "{}", file.display());
    }
    assert!(!snapshot(&fresh).join("model.safetensors").exists());
    let blobs = std::fs::read_dir(fresh.join("hub/models--astrid-test--tiny-bert/blobs")).unwrap();
    let kept: Vec<String> = blobs
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 64)
        .collect();
    assert!(kept.is_empty(), "a corrupted blob stayed: {kept:?}");
    // A later run with a sound server completes (resuming the cut one) and is right.
    hub.faults.corrupt_weights.store(false, Ordering::SeqCst);
    explain_matches_the_oracle(&reference, &hub, &home, false);
    explain_matches_the_oracle(&reference, &hub, &fresh, false);
    // A blob already in the cache is another program's as much as ours: even when its bytes
    // do not match its name, it is used as found, never removed.
    let weights = std::fs::canonicalize(snapshot(&home).join("model.safetensors")).unwrap();
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&weights, &bytes).unwrap();
    std::fs::remove_file(snapshot(&home).join("config.json")).unwrap();
    let _ = trainer_with_hub(&args, &hub, &home, false);
    assert_eq!(
        std::fs::read(&weights).unwrap(),
        bytes,
        "the cached blob was left as it was"
    );
    assert!(
        snapshot(&home).join("config.json").exists(),
        "the missing file was fetched"
    );
    std::fs::remove_dir_all(&home).unwrap();
    std::fs::remove_dir_all(&fresh).unwrap();
}

#[test]
fn a_run_starts_its_teacher_from_a_hub_id_and_says_so() {
    let hub = HubStandIn::start();
    let home = fresh_dir("run-home");
    let out_dir = fresh_dir("run").join("run");
    let init = format!("teacher=hf:{REPO}");
    let args = [
        "run",
        "--out",
        out_dir.to_str().unwrap(),
        "--suite",
        "test",
        "--corpus-size",
        "400",
        "--epochs",
        "1",
        "--reference-seeds",
        "0",
        "--explain-n",
        "4",
        "--n-steps",
        "4",
        "--max-length",
        "48",
        "--init",
        init.as_str(),
        "--quiet",
    ];
    let out = trainer_with_hub(&args, &hub, &home, false);
    assert!(out.status.success(), "{}", stderr(&out));
    let results: RunResults =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("results.json")).unwrap()).unwrap();
    let teacher = &results.models[0];
    assert_eq!(teacher.starts_from, format!("checkpoint hf:{REPO}@{COMMIT}"));
    assert_eq!((teacher.layers, teacher.hidden), (2, 16), "the checkpoint's shape");
    assert_eq!(teacher.learning_rate, 5e-5, "a pretrained role fine-tunes");
    assert!(results.models[1..].iter().all(|m| m.starts_from == "scratch"));
    let report = std::fs::read_to_string(out_dir.join("report.md")).unwrap();
    assert!(
        report.contains(&format!("| checkpoint hf:{REPO}@{COMMIT} |")),
        "the report names it"
    );
    // The run's tokenizer is the checkpoint's.
    assert_eq!(
        std::fs::read(out_dir.join("tokenizer.json")).unwrap(),
        std::fs::read(fixture("tiny_bert/tokenizer.json")).unwrap()
    );
    // The same command resumes offline from the cache, without a request.
    let before = hub.request_count();
    let again = trainer_with_hub(&args, &hub, &home, true);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(hub.request_count(), before);
    std::fs::remove_dir_all(out_dir.parent().unwrap()).unwrap();
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn pretrained_is_refused_outside_the_paper_suite_before_anything_is_fetched() {
    let hub = HubStandIn::start();
    let home = fresh_dir("pretrained");
    let out = trainer_with_hub(&["run", "--pretrained", "--suite", "quick"], &hub, &home, false);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("add --suite paper"), "{}", stderr(&out));
    assert_eq!(hub.request_count(), 0);
    // Offline with the paper suite: each missing checkpoint is named, nothing is fetched.
    let run_dir = home.join("run");
    let out = trainer_with_hub(
        &[
            "run",
            "--pretrained",
            "--suite",
            "paper",
            "--out",
            run_dir.to_str().unwrap(),
        ],
        &hub,
        &home,
        true,
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("--pretrained") && err.contains("hf:bert-base-uncased"),
        "{err}"
    );
    assert!(!run_dir.exists(), "nothing is written before the checkpoints are there");
    assert_eq!(hub.request_count(), 0);
    // A wrong data path is said before any checkpoint is fetched.
    let init = format!("teacher=hf:{REPO}");
    let missing = home.join("absent.csv");
    let out = trainer_with_hub(
        &[
            "run",
            "--init",
            &init,
            "--data",
            missing.to_str().unwrap(),
            "--out",
            run_dir.to_str().unwrap(),
        ],
        &hub,
        &home,
        false,
    );
    assert!(stderr(&out).contains("absent.csv: no such file"), "{}", stderr(&out));
    assert_eq!(hub.request_count(), 0);
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn a_gated_model_needs_the_token_from_hf_token_or_the_token_file() {
    let hub = HubStandIn::start();
    let home = fresh_dir("gated");
    let reference = format!("hf:{GATED}");
    let args = ["explain", "--model", reference.as_str(), "--text", "a case"];
    let out = trainer_with_hub(&args, &hub, &home, false);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("HTTP 401") && err.contains("HF_TOKEN"), "{err}");
    // HF_TOKEN is sent as a bearer token.
    let out = trainer_with_env(&args, &hub, &home, &[("HF_TOKEN", TOKEN)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bearer = format!("Bearer {TOKEN}");
    assert!(
        hub.requests
            .lock()
            .unwrap()
            .iter()
            .any(|(_, auth)| auth.as_deref() == Some(bearer.as_str())),
        "the token was not sent"
    );
    // The token file Python's `huggingface-cli login` writes ($HF_HOME/token) serves as well.
    let second = fresh_dir("gated-token-file");
    std::fs::write(second.join("token"), format!("{TOKEN}\n")).unwrap();
    let out = trainer_with_hub(&args, &hub, &second, false);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(snapshot_of(&second, GATED).join("model.safetensors").exists());
    std::fs::remove_dir_all(&home).unwrap();
    std::fs::remove_dir_all(&second).unwrap();
}

#[test]
fn sharded_weights_are_fetched_through_their_index() {
    let hub = HubStandIn::start();
    let home = fresh_dir("sharded");
    let reference = format!("hf:{SHARDED}");
    explain_matches_the_oracle(&reference, &hub, &home, false);
    let snapshot = snapshot_of(&home, SHARDED);
    for file in [
        "model.safetensors.index.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ] {
        assert!(snapshot.join(file).exists(), "{file}");
    }
    assert!(!snapshot.join("model.safetensors").exists());
    // Complete in the cache: offline it is used as it is.
    let fetched = hub.request_count();
    explain_matches_the_oracle(&reference, &hub, &home, true);
    assert_eq!(hub.request_count(), fetched);
    std::fs::remove_dir_all(&home).unwrap();
}
