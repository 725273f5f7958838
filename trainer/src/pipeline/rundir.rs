//! The run directory: whether it is Astrid's to write in, one process at a time (an
//! advisory lock the OS releases when the process dies), and what a killed run left there.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use astrid::files::{list_dir, remove_stale_temps, show_names, temp_name_pid};

/// The settings a run was started with (its fingerprint); its presence marks a run directory.
pub const RUN_FILE: &str = "run.json";
/// Held locked by the process working in the directory; names that process. A name of
/// Astrid's own, so a user's file is never taken for it (and emptied).
pub const LOCK_FILE: &str = ".astrid-run.lock";

/// What is at `--out`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutDir {
    /// Nothing yet: the run creates it.
    Absent,
    /// An empty directory (or one holding only a lock or temporary files of a run that was
    /// killed before it wrote anything).
    Empty,
    /// A run directory: `run.json` is there.
    Run,
}

/// Entries of `dir` that are not Astrid's lock or temporary files.
fn meaningful_entries(dir: &Path) -> Vec<String> {
    list_dir(dir)
        .into_iter()
        .filter(|n| n != LOCK_FILE && temp_name_pid(n).is_none())
        .collect()
}

/// Looks at `--out` without changing anything; refuses a file, or a directory that holds
/// anything but an Astrid run (a run never writes into a directory of the user's).
pub fn inspect(out: &Path) -> anyhow::Result<OutDir> {
    let meta = match std::fs::metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(OutDir::Absent),
        Err(e) => bail!("--out {}: cannot be read ({e})", out.display()),
        Ok(meta) => meta,
    };
    if !meta.is_dir() {
        bail!(
            "--out {}: is a file; --out takes a directory (a new one, an empty one, or an earlier run's)",
            out.display()
        );
    }
    let entries = meaningful_entries(out);
    if entries.is_empty() {
        return Ok(OutDir::Empty);
    }
    if out.join(RUN_FILE).is_file() {
        return Ok(OutDir::Run);
    }
    bail!(
        "--out {}: holds files that are not an Astrid run ({}); nothing was written. Give a new or empty directory, \
         or an earlier run's directory to resume it",
        out.display(),
        show_names(&entries)
    )
}

/// An exclusive hold on a run directory for the life of this value (or of the process).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

fn open_lock_file(dir: &Path) -> anyhow::Result<(File, PathBuf)> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("{}: cannot open the lock file", path.display()))?;
    Ok((file, path))
}

fn holder(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let text = text.trim();
    if text.is_empty() {
        "another process".to_string()
    } else {
        text.to_string()
    }
}

/// Takes the directory's lock, or says who holds it. `dir` must exist.
pub fn lock(dir: &Path) -> anyhow::Result<RunLock> {
    let (mut file, path) = open_lock_file(dir)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => bail!(
            "{}: in use by {}; wait for that run to finish (or stop it), or give another --out",
            dir.display(),
            holder(&path)
        ),
        Err(TryLockError::Error(e)) => bail!("{}: cannot take the lock: {e}", path.display()),
    }
    let command: Vec<String> = std::env::args().collect();
    file.set_len(0)
        .and_then(|()| {
            write!(
                file,
                "trainer process {} (started {}): {}",
                std::process::id(),
                crate::util::clock::timestamp(),
                command.join(" ")
            )
        })
        .with_context(|| format!("{}: cannot write the lock file", path.display()))?;
    Ok(RunLock { _file: file })
}

/// A shared hold on a run directory while it is read (export): refused while a run holds
/// the directory, and it keeps a run from starting there meanwhile. A directory without a
/// lock file (an older run) needs no hold.
pub fn lock_shared(dir: &Path) -> anyhow::Result<Option<File>> {
    let path = dir.join(LOCK_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let file = File::open(&path).with_context(|| format!("{}: cannot open the lock file", path.display()))?;
    match file.try_lock_shared() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => bail!(
            "{}: a run is writing it ({}); export it once that run has finished",
            dir.display(),
            holder(&path)
        ),
        Err(TryLockError::Error(e)) => bail!("{}: cannot take the lock: {e}", path.display()),
    }
}

/// Removes what an interrupted process left in the run directory (temporary files and
/// directories); the caller holds the lock, so nothing there is being written.
pub fn clean_stale(dir: &Path) -> usize {
    let removed = remove_stale_temps(dir, true, true);
    if !removed.is_empty() {
        eprintln!(
            "removed {} temporary file(s) an interrupted run left in {}",
            removed.len(),
            dir.display()
        );
    }
    removed.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("astrid-rundir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn out_is_absent_empty_a_run_or_refused() {
        let dir = scratch("inspect");
        assert_eq!(inspect(&dir).unwrap(), OutDir::Absent);
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(inspect(&dir).unwrap(), OutDir::Empty);
        std::fs::write(dir.join(LOCK_FILE), b"").unwrap();
        std::fs::write(dir.join(".x.tmp-1"), b"").unwrap();
        assert_eq!(inspect(&dir).unwrap(), OutDir::Empty, "a lock and temporaries only");
        std::fs::write(dir.join("notes.txt"), b"mine").unwrap();
        let err = inspect(&dir).unwrap_err().to_string();
        assert!(err.contains("not an Astrid run") && err.contains("notes.txt"), "{err}");
        std::fs::write(dir.join(RUN_FILE), b"{}").unwrap();
        assert_eq!(inspect(&dir).unwrap(), OutDir::Run);
        let err = inspect(&dir.join("notes.txt")).unwrap_err().to_string();
        assert!(err.contains("is a file"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_lock_is_exclusive_and_names_its_holder() {
        let dir = scratch("lock");
        std::fs::create_dir_all(&dir).unwrap();
        let held = lock(&dir).unwrap();
        let err = lock(&dir).unwrap_err().to_string();
        assert!(
            err.contains("in use by trainer process") && err.contains(&std::process::id().to_string()),
            "{err}"
        );
        assert!(
            lock_shared(&dir)
                .unwrap_err()
                .to_string()
                .contains("a run is writing it")
        );
        drop(held);
        let shared = lock_shared(&dir).unwrap();
        assert!(shared.is_some());
        assert!(lock(&dir).is_err(), "a reader keeps a run out");
        drop(shared);
        lock(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
