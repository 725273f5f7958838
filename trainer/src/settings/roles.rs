//! The settings that name models: a model reference (a directory or a Hub id), and the
//! per-role options (`--init ROLE=REF`, `--role-lr ROLE=RATE`, `--role-warmup ROLE=SHARE`),
//! parsed without touching the disk or the network.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use astrid::config::PRESET_NAMES as ROLES;

/// The paper's pretrained starting points (`--pretrained`), by role: the two custom shapes
/// have no published model.
pub const PRETRAINED: [(&str, &str); 4] = [
    (ROLES[0], "bert-base-uncased"),
    ("distilbert", "distilbert-base-uncased"),
    ("tinybert", "huawei-noah/TinyBERT_General_4L_312D"),
    ("minilm", "microsoft/MiniLM-L12-H384-uncased"),
];

/// What a model reference starts with when it names a Hub repository.
pub const HUB_PREFIX: &str = "hf:";

/// A model directory on disk, or a repository of the Hugging Face Hub at a revision.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelRef {
    Dir(PathBuf),
    Hub { repo: String, revision: String },
}

impl ModelRef {
    /// `hf:NAME`, `hf:ORG/NAME` or either with `@REVISION` (a branch, tag, commit or
    /// `refs/pr/N`; default `main`); anything else is a directory.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let Some(id) = text.strip_prefix(HUB_PREFIX) else {
            return Ok(Self::Dir(PathBuf::from(text)));
        };
        let (repo, revision) = match id.split_once('@') {
            Some((repo, revision)) => (repo, revision),
            None => (id, "main"),
        };
        let part_ok = |p: &str| {
            !p.is_empty()
                && p.len() <= 96
                && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                && !p.starts_with(['.', '-'])
                && !p.ends_with('.')
                && !p.contains("..")
        };
        let parts: Vec<&str> = repo.split('/').collect();
        if parts.len() > 2 || !parts.iter().all(|p| part_ok(p)) {
            bail!(
                "{text}: not a Hub model id; expected hf:NAME or hf:ORG/NAME (letters, digits, '-', '_', '.'), \
                 optionally @REVISION, e.g. hf:bert-base-uncased or hf:huawei-noah/TinyBERT_General_4L_312D@main"
            );
        }
        // The revision names a file under the cache's refs/: no empty, '.' or '..' parts.
        let revision_ok = revision
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != ".." && !p.chars().any(|c| c.is_whitespace() || c == '\\'));
        if !revision_ok || revision.len() > 256 {
            bail!("{text}: '{revision}' is not a revision; give a branch, tag, commit hash or refs/pr/N");
        }
        Ok(Self::Hub {
            repo: repo.to_string(),
            revision: revision.to_string(),
        })
    }
}

/// `ROLE=VALUE` of a per-role option, the role checked (`teacher` names the teacher's role
/// whatever the suite calls it); `expected` completes "expected ROLE=" in the error.
pub fn role_and_value<'a>(option: &str, spec: &'a str, expected: &str) -> anyhow::Result<(&'a str, &'a str)> {
    let Some((role, value)) = spec.split_once('=') else {
        bail!("{option} {spec}: expected ROLE={expected}");
    };
    let role = if role == "teacher" { ROLES[0] } else { role };
    if !ROLES.contains(&role) {
        bail!("{option} {spec}: unknown role '{role}'; roles are {}", ROLES.join(", "));
    }
    Ok((role, value))
}

/// `--init ROLE=REF` options, then `--pretrained`'s checkpoint for every role not given:
/// each role's reference and the words that name it in errors.
pub fn parse_inits(specs: &[String], pretrained: bool) -> anyhow::Result<BTreeMap<String, (ModelRef, String)>> {
    let mut out = BTreeMap::new();
    for spec in specs {
        let (role, reference) = role_and_value(
            "--init",
            spec,
            "DIR or ROLE=hf:ID, e.g. teacher_bert=checkpoints/bert-base-uncased or teacher=hf:bert-base-uncased",
        )?;
        let parsed = ModelRef::parse(reference).with_context(|| format!("--init {spec}"))?;
        if out
            .insert(role.to_string(), (parsed, format!("--init {spec}")))
            .is_some()
        {
            bail!("--init {spec}: {role} is given twice; give one checkpoint per role");
        }
    }
    if pretrained {
        for (role, id) in PRETRAINED {
            if !out.contains_key(role) {
                let reference = ModelRef::parse(&format!("{HUB_PREFIX}{id}"))?;
                out.insert(
                    role.to_string(),
                    (reference, format!("--pretrained ({role}: {HUB_PREFIX}{id})")),
                );
            }
        }
    }
    Ok(out)
}

/// A per-role number option (`--role-lr ROLE=R`, `--role-warmup ROLE=S`) as a map
/// (`teacher` names the teacher's role); `range` says what a value must be, for the error.
pub fn parse_role_values(
    option: &str,
    specs: &[String],
    example: &str,
    range: (&str, fn(f64) -> bool),
) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    for spec in specs {
        let (role, value) = role_and_value(option, spec, example)?;
        let value: f64 = value
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && range.1(*v))
            .with_context(|| format!("{option} {spec}: {}", range.0))?;
        if out.insert(role.to_string(), value).is_some() {
            bail!("{option} {spec}: {role} is given twice");
        }
    }
    Ok(out)
}

pub fn parse_role_lrs(specs: &[String]) -> anyhow::Result<BTreeMap<String, f64>> {
    parse_role_values(
        "--role-lr",
        specs,
        "RATE, e.g. tinybert=5e-4",
        ("the rate must be a number above 0 and below 1", |r| r > 0.0 && r < 1.0),
    )
}

/// `--role-warmup`, the roles whose share differs from `--warmup` only.
pub fn parse_role_warmups(specs: &[String], common: f64) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut shares = parse_role_values(
        "--role-warmup",
        specs,
        "SHARE, e.g. teacher=0.06",
        ("the share must be a number in [0, 1)", |s| (0.0..1.0).contains(&s)),
    )?;
    shares.retain(|_, s| *s != common);
    Ok(shares)
}
