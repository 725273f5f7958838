//! `trainer run --config FILE`: settings from a TOML or JSON file whose keys are the flags'
//! names without the dashes (`batch-size = 8`), under the flags given on the command line.
//! A run's `run.json` is such a file: its `config` holds every setting of the run.

use std::path::Path;

use anyhow::{Context, bail};
use clap::ArgMatches;
use clap::parser::ValueSource;
use serde_json::{Map, Value};
use toml::Table;
use trainer::settings::RunConfig;

use super::run::RunArgs;

/// The key of `run.json` that holds a run's settings as a config.
const RUN_FILE_CONFIG_KEY: &str = "config";

/// The settings of a run: the flags given on the command line, over `--config`'s file, over
/// the defaults. `matches` are the `run` subcommand's (they say which flags were given).
/// The values travel as TOML, which holds every number a flag can give (NaN included, for
/// the checks to name).
pub fn run_config(args: &RunArgs, matches: &ArgMatches) -> anyhow::Result<RunConfig> {
    let mut values = Table::try_from(args)?;
    let Some(path) = &args.config else {
        return Ok(values.try_into()?);
    };
    let known = known_keys()?;
    let file = read(path)?;
    for (key, value) in &file {
        if !known.contains_key(key) {
            bail!("{}: unknown key '{key}'{}", path.display(), suggestion(key, &known));
        }
        let id = key.replace('-', "_");
        if matches.value_source(&id) == Some(ValueSource::CommandLine) {
            continue;
        }
        match value {
            // Unset: the flag's default.
            Value::Null => values.remove(key),
            _ => values.insert(
                key.clone(),
                toml_value(value).with_context(|| format!("{}: key '{key}'", path.display()))?,
            ),
        };
    }
    typed(values, &file, path)
}

/// Every key a config may set (the flags' names without the dashes), unset ones included.
fn known_keys() -> anyhow::Result<Map<String, Value>> {
    match serde_json::to_value(RunConfig::default())? {
        Value::Object(keys) => Ok(keys),
        _ => bail!("the run's settings are not a table"),
    }
}

/// A JSON value as TOML (nulls inside lists cannot be given: no flag takes one).
fn toml_value(value: &Value) -> anyhow::Result<toml::Value> {
    Ok(toml::Value::try_from(value)?)
}

/// The file's keys and values: TOML, or JSON when it ends in `.json` or starts with `{`; from
/// a `run.json`, its `config`.
fn read(path: &Path) -> anyhow::Result<Map<String, Value>> {
    if path.is_dir() {
        bail!("--config {}: is a directory; give a TOML or JSON file", path.display());
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("--config {}: cannot read", path.display()))?;
    let json = path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('{');
    let value: Value = if json {
        serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))?
    } else {
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: not valid TOML: {e}", path.display()))?
    };
    let Value::Object(mut map) = value else {
        bail!("{}: expected a table of settings (key = value)", path.display());
    };
    if !map.contains_key("format") {
        return Ok(map);
    }
    match map.remove(RUN_FILE_CONFIG_KEY) {
        Some(Value::Object(config)) => Ok(config),
        _ => bail!(
            "{}: a run.json without its settings (written by an earlier version of trainer); give a config file",
            path.display()
        ),
    }
}

/// The merged values as settings; a value of the wrong type is named by its key.
fn typed(values: Table, file: &Map<String, Value>, path: &Path) -> anyhow::Result<RunConfig> {
    let error = match values.try_into::<RunConfig>() {
        Ok(config) => return Ok(config),
        Err(e) => e,
    };
    let defaults = Table::try_from(RunConfig::default())?;
    for (key, value) in file.iter().filter(|(_, v)| !v.is_null()) {
        let mut one = defaults.clone();
        one.insert(key.clone(), toml_value(value)?);
        if let Err(e) = one.try_into::<RunConfig>() {
            bail!("{}: key '{key}': {}", path.display(), e.to_string().trim());
        }
    }
    bail!("{}: {}", path.display(), error.to_string().trim())
}

/// Edits that turn `a` into `b` (Levenshtein).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let here = row[j + 1];
            row[j + 1] = (here + 1).min(row[j] + 1).min(previous + usize::from(ca != *cb));
            previous = here;
        }
    }
    row[b.len()]
}

/// What to say after "unknown key": the closest known key, when one is close.
fn suggestion(key: &str, known: &Map<String, Value>) -> String {
    known
        .keys()
        .map(|k| (distance(key, k), k))
        .min()
        .filter(|(d, _)| *d <= 2)
        .map(|(_, k)| format!("; did you mean '{k}'? (keys are the flags' names without the dashes)"))
        .unwrap_or_else(|| "; keys are the flags' names without the dashes, e.g. batch-size = 8".to_string())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches};

    use super::*;
    use crate::cli::{Cli, Command};

    /// `trainer run ARGS…`'s settings, with `file` (named NAME) as its config file.
    fn config(name: &str, file: &str, args: &[&str]) -> anyhow::Result<RunConfig> {
        let dir = std::env::temp_dir().join(format!("astrid-config-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(name);
        std::fs::write(&path, file)?;
        let path = path.display().to_string();
        let argv = [&["trainer", "run", "--config", path.as_str()], args].concat();
        let matches = Cli::command().try_get_matches_from(argv)?;
        let Command::Run(run) = Cli::from_arg_matches(&matches)?.command else {
            bail!("not the run command");
        };
        let result = run_config(&run, matches.subcommand_matches("run").expect("run"));
        std::fs::remove_dir_all(&dir)?;
        result
    }

    #[test]
    fn a_file_sets_what_the_command_line_does_not() {
        let file = "epochs = 3\nbatch-size = 8\ntraining = [\"independent\", \"align\"]\nsuite = \"test\"\n";
        let c = config("a.toml", file, &["--epochs", "4"]).unwrap();
        assert_eq!((c.epochs, c.batch_size, c.suite), (4, 8, astrid::schema::Suite::Test));
        assert_eq!(
            c.objectives(),
            [astrid::schema::Objective::Independent, astrid::schema::Objective::Align]
        );
        // Everything else keeps its default.
        assert_eq!(c.patience, RunConfig::default().patience);
        let json = config("a.json", r#"{"n-steps": 8, "baseline": "pad"}"#, &[]).unwrap();
        assert_eq!((json.ig.n_steps, json.ig.baseline), (8, astrid::explain::Baseline::Pad));
    }

    #[test]
    fn unknown_keys_and_wrong_values_are_named() {
        let err = config("b.toml", "epoch = 3\n", &[]).unwrap_err().to_string();
        assert!(
            err.contains("unknown key 'epoch'") && err.contains("did you mean 'epochs'"),
            "{err}"
        );
        let err = config("c.toml", "colour = 3\n", &[]).unwrap_err().to_string();
        assert!(
            err.contains("unknown key 'colour'") && err.contains("flags' names"),
            "{err}"
        );
        let err = config("d.toml", "epochs = \"many\"\n", &[]).unwrap_err().to_string();
        assert!(err.contains("key 'epochs'"), "{err}");
        let err = config("e.toml", "epochs = [\n", &[]).unwrap_err().to_string();
        assert!(err.contains("not valid TOML") && err.contains("line"), "{err}");
    }

    #[test]
    fn a_run_json_repeats_its_run() {
        let wanted = RunConfig {
            epochs: 2,
            explain_n: 7,
            out: Some("runs/x".into()),
            ..RunConfig::default()
        };
        let run_json = serde_json::json!({"format": 2, "data": {"seed": 7}, "config": wanted});
        let c = config("run.json", &run_json.to_string(), &[]).unwrap();
        assert_eq!(c, wanted);
        let old = config("old.json", r#"{"format": 2, "data": {}}"#, &[])
            .unwrap_err()
            .to_string();
        assert!(old.contains("without its settings"), "{old}");
    }
}
