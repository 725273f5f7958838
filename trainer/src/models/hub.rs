//! Model references: a local directory, or a Hugging Face Hub id (`hf:org/name@revision`)
//! fetched into the cache Python's `huggingface_hub` uses, so a model either of them has
//! downloaded is reused without a request. Only the files a checkpoint needs are fetched:
//! `config.json`, the safetensors weights (one file or shards) and the tokenizer.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use astrid::bundle::{CONFIG_FILE, SHARD_INDEX_FILE, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE, VOCAB_FILE, WEIGHTS_FILE};
use hf_hub::api::sync::{ApiBuilder, ApiError, ApiRepo};
use hf_hub::{Cache, CacheRepo, Repo, RepoType};
use sha2::{Digest, Sha256};

pub use crate::settings::{HUB_PREFIX, ModelRef};

/// Where and how the Hub is reached, from the environment variables Python's
/// `huggingface_hub` reads (HF_ENDPOINT, HF_HUB_CACHE, HF_HOME, HF_TOKEN, HF_TOKEN_PATH,
/// HF_HUB_OFFLINE) and the command's `--offline` and `--quiet`.
#[derive(Debug, Clone)]
pub struct HubAccess {
    pub endpoint: String,
    /// The cache's `hub` directory (`models--ORG--NAME/{blobs,refs,snapshots}` inside).
    pub cache: PathBuf,
    pub token: Option<String>,
    pub offline: bool,
    pub progress: bool,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl HubAccess {
    pub fn from_env(offline: bool, quiet: bool) -> Self {
        let hf_home = env("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            let cache = env("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| env("HOME").map(|h| Path::new(&h).join(".cache")))
                .unwrap_or_else(|| PathBuf::from(".cache"));
            cache.join("huggingface")
        });
        let cache = env("HF_HUB_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("hub"));
        let token_file = env("HF_TOKEN_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("token"));
        let token = env("HF_TOKEN").or_else(|| {
            std::fs::read_to_string(token_file)
                .ok()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
        });
        let offline_env = env("HF_HUB_OFFLINE")
            .is_some_and(|v| ["1", "on", "yes", "true"].contains(&v.trim().to_ascii_lowercase().as_str()));
        Self {
            endpoint: env("HF_ENDPOINT")
                .unwrap_or_else(|| "https://huggingface.co".to_string())
                .trim_end_matches('/')
                .to_string(),
            cache,
            token,
            offline: offline || offline_env,
            progress: !quiet,
        }
    }
}

/// A model reference made local: the directory to load, and how to name where it came from
/// (the Hub id at its resolved commit, or the directory).
#[derive(Debug, Clone, PartialEq)]
pub struct LocalModel {
    pub dir: PathBuf,
    pub source: String,
}

/// Makes a reference local: a directory as it is; a Hub id from the cache when every file
/// the checkpoint needs is there (no request), else fetched (refused when offline).
pub fn resolve(reference: &ModelRef, access: &HubAccess) -> anyhow::Result<LocalModel> {
    match reference {
        ModelRef::Dir(dir) => Ok(LocalModel {
            dir: dir.clone(),
            source: dir.display().to_string(),
        }),
        ModelRef::Hub { repo, revision } => {
            let shown = format!("{HUB_PREFIX}{repo}@{revision}");
            let cached = cached_snapshot(&access.cache, repo, revision);
            if let Some(dir) = &cached
                && missing_files(dir).is_empty()
            {
                return Ok(LocalModel {
                    source: format!("{HUB_PREFIX}{repo}@{}", commit_of(dir)),
                    dir: dir.clone(),
                });
            }
            if access.offline {
                let missing = match &cached {
                    Some(dir) => format!("{} has no {}", dir.display(), missing_files(dir).join(", ")),
                    None => format!(
                        "{} holds no snapshot of it",
                        access.cache.join(repo_folder(repo)).display()
                    ),
                };
                bail!(
                    "{shown}: offline (--offline or HF_HUB_OFFLINE) and not in the Hugging Face cache: {missing}. \
                     Fetch it once with network access (same command without --offline), or set HF_HUB_CACHE / \
                     HF_HOME to the cache that holds it."
                );
            }
            let dir = fetch(repo, revision, access).with_context(|| format!("{shown} (from {})", access.endpoint))?;
            Ok(LocalModel {
                source: format!("{HUB_PREFIX}{repo}@{}", commit_of(&dir)),
                dir,
            })
        }
    }
}

/// The cache's folder of a model repository, as Python names it.
fn repo_folder(repo: &str) -> String {
    format!("models--{}", repo.replace('/', "--"))
}

/// The snapshot directory a revision points to in the cache, if any: a commit hash names
/// its snapshot, a branch or tag is looked up in `refs/`.
fn cached_snapshot(cache: &Path, repo: &str, revision: &str) -> Option<PathBuf> {
    let folder = cache.join(repo_folder(repo));
    let is_commit = revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit());
    let commit = if is_commit {
        revision.to_string()
    } else {
        std::fs::read_to_string(folder.join("refs").join(revision))
            .ok()?
            .trim()
            .to_string()
    };
    let commit_ok = !commit.is_empty() && commit.chars().all(|c| c.is_ascii_alphanumeric());
    let dir = folder.join("snapshots").join(commit);
    (commit_ok && dir.is_dir()).then_some(dir)
}

/// A snapshot directory's name is its commit.
fn commit_of(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The files a checkpoint directory lacks to be loaded: its config, its weights (one file,
/// or an index and every shard it names) and a tokenizer (tokenizer.json or vocab.txt).
fn missing_files(dir: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    if !dir.join(CONFIG_FILE).is_file() {
        missing.push(CONFIG_FILE.to_string());
    }
    if !dir.join(WEIGHTS_FILE).is_file() {
        let index = dir.join(SHARD_INDEX_FILE);
        match std::fs::read(&index)
            .ok()
            .and_then(|b| astrid::bundle::shard_index(&b, &index.display().to_string()).ok())
        {
            Some((_, shards)) => missing.extend(shards.into_iter().filter(|s| !dir.join(s).is_file())),
            None => missing.push(WEIGHTS_FILE.to_string()),
        }
    }
    if !dir.join(TOKENIZER_FILE).is_file() && !dir.join(VOCAB_FILE).is_file() {
        missing.push(TOKENIZER_FILE.to_string());
    }
    missing
}

/// What a refused request means, in words a user can act on.
fn explain_api_error(error: ApiError, what: &str, revision: &str) -> anyhow::Error {
    let status = match &error {
        ApiError::RequestError(e) => match e.as_ref() {
            ureq::Error::StatusCode(code) => Some(*code),
            _ => None,
        },
        _ => None,
    };
    match status {
        Some(404) => anyhow::anyhow!(
            "{what}: not found (HTTP 404): no revision '{revision}' of this repository, or no such repository"
        ),
        Some(401 | 403) => anyhow::anyhow!(
            "{what}: refused (HTTP {}): the repository does not exist, is private, or is gated; for a gated or \
             private model, accept its terms on the Hub and set HF_TOKEN (or log in: the token file in HF_HOME)",
            status.unwrap_or_default()
        ),
        _ => anyhow::Error::new(error).context(format!(
            "{what}: the request failed; check the network (or HF_ENDPOINT), or use a cached copy with --offline"
        )),
    }
}

/// Fetches the checkpoint's files at a revision into the cache and returns its snapshot.
fn fetch(repo: &str, revision: &str, access: &HubAccess) -> anyhow::Result<PathBuf> {
    let api = ApiBuilder::new()
        .with_cache_dir(access.cache.clone())
        .with_endpoint(access.endpoint.clone())
        .with_token(access.token.clone())
        .with_progress(access.progress)
        .with_user_agent("astrid", env!("CARGO_PKG_VERSION"))
        .build()
        .context("cannot set up the Hub client")?;
    let hub_repo = Repo::with_revision(repo.to_string(), RepoType::Model, revision.to_string());
    let cached = Cache::new(access.cache.clone()).repo(hub_repo.clone());
    let api = api.repo(hub_repo);
    let info = api
        .info()
        .map_err(|e| explain_api_error(e, "the repository's file list", revision))?;
    let files: Vec<&str> = info.siblings.iter().map(|s| s.rfilename.as_str()).collect();
    let has = |name: &str| files.contains(&name);
    if !has(CONFIG_FILE) {
        bail!("revision {} has no {CONFIG_FILE}: not a model checkpoint", info.sha);
    }
    let mut wanted = vec![CONFIG_FILE.to_string()];
    let mut shards_from_index = false;
    if has(WEIGHTS_FILE) {
        wanted.push(WEIGHTS_FILE.to_string());
    } else if has(SHARD_INDEX_FILE) {
        wanted.push(SHARD_INDEX_FILE.to_string());
        shards_from_index = true;
    } else if has("pytorch_model.bin") {
        bail!(
            "revision {} has only pytorch_model.bin (a pickle, which Astrid does not load) and no {WEIGHTS_FILE}. \
             Convert it (transformers: from_pretrained(...).save_pretrained(DIR, safe_serialization=True)) and \
             give --init ROLE=DIR, or name a revision that has safetensors weights (the Hub's conversion bot \
             often offers one as a pull request: @refs/pr/N)",
            info.sha
        );
    } else {
        bail!("revision {} has no {WEIGHTS_FILE} (nor {SHARD_INDEX_FILE})", info.sha);
    }
    if has(TOKENIZER_FILE) {
        wanted.push(TOKENIZER_FILE.to_string());
    } else {
        wanted.extend(
            [VOCAB_FILE, TOKENIZER_CONFIG_FILE]
                .iter()
                .filter(|f| has(f))
                .map(|f| f.to_string()),
        );
    }
    // The shards join the list once their index is fetched.
    let mut snapshot: Option<PathBuf> = None;
    let mut next = 0;
    while let Some(file) = wanted.get(next).cloned() {
        next += 1;
        let path = download(&api, &cached, &access.cache.join(repo_folder(repo)), &file, revision)?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        match &snapshot {
            Some(first) if *first != dir => bail!(
                "the revision moved while its files were fetched ({} then {}); run the command again",
                commit_of(first),
                commit_of(&dir)
            ),
            _ => snapshot = Some(dir),
        }
        if shards_from_index && file == SHARD_INDEX_FILE {
            let bytes = std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
            let (_, shards) = astrid::bundle::shard_index(&bytes, &format!("{SHARD_INDEX_FILE} of {repo}"))?;
            if let Some(absent) = shards.iter().find(|s| !has(s)) {
                bail!("{SHARD_INDEX_FILE} names the shard {absent}, which the repository does not hold");
            }
            wanted.extend(shards);
        }
    }
    snapshot.context("no file was fetched")
}

/// Fetches one file, or finds it in the cache. A file this call downloads is checked against
/// the SHA-256 the Hub gives for large files, and removed when it does not match, so no later
/// run can trust it; a file already in the cache is left as it is (it may be another
/// program's). hf-hub writes into `BLOB.part` and renames when complete, so an interrupted
/// download never looks finished (the next one resumes it, then is checked).
/// `folder` is the repository's folder of the cache: only a blob inside it, linked from one of
/// its snapshots, is ever removed.
fn download(api: &ApiRepo, cached: &CacheRepo, folder: &Path, file: &str, revision: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = cached.get(file) {
        return Ok(path);
    }
    let path = api
        .download(file)
        .map_err(|e| explain_api_error(e, &format!("fetching {file}"), revision))?;
    let blob = std::fs::canonicalize(&path).with_context(|| format!("{}: cannot resolve", path.display()))?;
    let etag = blob
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let is_sha256 = etag.len() == 64 && etag.chars().all(|c| c.is_ascii_hexdigit());
    if is_sha256 {
        let mut hasher = Sha256::new();
        let mut reader = std::fs::File::open(&blob).with_context(|| format!("{}: cannot read", blob.display()))?;
        std::io::copy(&mut reader, &mut hasher).with_context(|| format!("{}: cannot read", blob.display()))?;
        let digest = crate::util::digest::hex(&hasher.finalize());
        if !digest.eq_ignore_ascii_case(&etag) {
            let blobs = std::fs::canonicalize(folder.join("blobs")).ok();
            let ours = path.starts_with(folder.join("snapshots")) && blob.parent() == blobs.as_deref();
            let fate = if ours {
                let _ = std::fs::remove_file(&path);
                let _ = std::fs::remove_file(&blob);
                "the file was removed from the cache. Run the command again."
            } else {
                "it lies outside the repository's folder of the cache, so it was left where it is."
            };
            bail!(
                "{file}: the downloaded bytes have SHA-256 {digest}, not the {etag} the Hub announced; {fate} ({})",
                blob.display()
            );
        }
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_as_directories_or_hub_ids() {
        assert_eq!(
            ModelRef::parse("checkpoints/bert").unwrap(),
            ModelRef::Dir(PathBuf::from("checkpoints/bert"))
        );
        assert_eq!(
            ModelRef::parse("hf:bert-base-uncased").unwrap(),
            ModelRef::Hub {
                repo: "bert-base-uncased".into(),
                revision: "main".into()
            }
        );
        assert_eq!(
            ModelRef::parse("hf:huawei-noah/TinyBERT_General_4L_312D@refs/pr/1").unwrap(),
            ModelRef::Hub {
                repo: "huawei-noah/TinyBERT_General_4L_312D".into(),
                revision: "refs/pr/1".into()
            }
        );
        for bad in [
            "hf:",
            "hf:a/b/c",
            "hf:../x",
            "hf:org/..",
            "hf:org/na me",
            "hf:x@",
            "hf:x@../../etc",
            "hf:x@refs//pr",
        ] {
            let error = ModelRef::parse(bad).unwrap_err().to_string();
            assert!(error.starts_with(bad), "{bad}: {error}");
        }
    }

    #[test]
    fn the_cache_layout_is_pythons_and_a_snapshot_needs_every_file() {
        let cache = std::env::temp_dir().join(format!("astrid-hub-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&cache);
        let commit = "0123456789abcdef0123456789abcdef01234567";
        let folder = cache.join("models--org--name");
        let snapshot = folder.join("snapshots").join(commit);
        std::fs::create_dir_all(&snapshot).unwrap();
        std::fs::create_dir_all(folder.join("refs")).unwrap();
        std::fs::write(folder.join("refs").join("main"), commit).unwrap();
        assert_eq!(cached_snapshot(&cache, "org/name", "main"), Some(snapshot.clone()));
        assert_eq!(cached_snapshot(&cache, "org/name", commit), Some(snapshot.clone()));
        assert_eq!(cached_snapshot(&cache, "org/name", "v2"), None);
        assert_eq!(missing_files(&snapshot), [CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE]);
        std::fs::write(snapshot.join(CONFIG_FILE), "{}").unwrap();
        std::fs::write(snapshot.join(VOCAB_FILE), "[PAD]").unwrap();
        std::fs::write(
            snapshot.join(SHARD_INDEX_FILE),
            r#"{"weight_map": {"a": "model-1.safetensors", "b": "model-2.safetensors"}}"#,
        )
        .unwrap();
        std::fs::write(snapshot.join("model-1.safetensors"), "").unwrap();
        assert_eq!(missing_files(&snapshot), ["model-2.safetensors"]);
        std::fs::write(snapshot.join("model-2.safetensors"), "").unwrap();
        assert!(missing_files(&snapshot).is_empty());
        let access = HubAccess {
            endpoint: "http://127.0.0.1:9".into(),
            cache: cache.clone(),
            token: None,
            offline: true,
            progress: false,
        };
        // Complete in the cache: used offline, named by its commit.
        let found = resolve(&ModelRef::parse("hf:org/name").unwrap(), &access).unwrap();
        assert_eq!(found.dir, snapshot);
        assert_eq!(found.source, format!("hf:org/name@{commit}"));
        let absent = resolve(&ModelRef::parse("hf:org/other").unwrap(), &access).unwrap_err();
        assert!(format!("{absent:#}").contains("offline"), "{absent:#}");
        std::fs::remove_dir_all(&cache).unwrap();
    }
}
