//! Writing files and directories so that neither a crash nor an error leaves a half-written
//! one behind, and replacing a directory only when it is recognisably Astrid's own.
//!
//! Every temporary name is `.NAME.KIND-PID` beside its target (`KIND` one of
//! [`TEMP_KINDS`]): a guard removes it on every error path, and a later run removes the ones
//! a killed process left ([`remove_stale_temps`]).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The kinds of temporary names Astrid writes: files being written, directories being
/// staged, directories being replaced.
pub const TEMP_KINDS: [&str; 3] = ["tmp", "partial", "old"];

/// `.NAME.KIND-PID` beside `target`.
pub fn temp_sibling(target: &Path, kind: &str) -> PathBuf {
    let name = target
        .file_name()
        .map_or_else(|| "out".to_string(), |n| n.to_string_lossy().to_string());
    target.with_file_name(format!(".{name}.{kind}-{}", std::process::id()))
}

/// The process id in a temporary name written by [`temp_sibling`], if `name` is one.
pub fn temp_name_pid(name: &str) -> Option<u32> {
    if !name.starts_with('.') {
        return None;
    }
    let (rest, pid) = name.rsplit_once('-')?;
    let pid: u32 = pid.parse().ok()?;
    let kind = rest.rsplit_once('.')?.1;
    TEMP_KINDS.contains(&kind).then_some(pid)
}

/// A temporary file or directory, removed when dropped unless [`TempPath::keep`] was called.
#[derive(Debug)]
pub struct TempPath {
    path: PathBuf,
    keep: bool,
}

impl TempPath {
    pub fn new(path: PathBuf) -> Self {
        Self { path, keep: false }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Leaves the path where it is (it was renamed into place).
    pub fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if self.path.is_dir() {
            let _ = std::fs::remove_dir_all(&self.path);
        } else {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn create_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent.display(), format!("cannot create: {e}")))?;
    }
    Ok(())
}

/// Writes `bytes` to a temporary name beside `path`, then renames it over `path`. On any
/// error the temporary file is removed and `path` is left as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    create_parent(path)?;
    let temp = TempPath::new(temp_sibling(path, "tmp"));
    std::fs::write(temp.path(), bytes).map_err(|e| Error::io(path.display(), format!("cannot write: {e}")))?;
    std::fs::rename(temp.path(), path).map_err(|e| Error::io(path.display(), format!("cannot write: {e}")))?;
    temp.keep();
    Ok(())
}

/// A directory built under a temporary name beside its target and swapped in by
/// [`StagingDir::commit`]; dropped without a commit, it is removed.
#[derive(Debug)]
pub struct StagingDir {
    temp: TempPath,
    target: PathBuf,
}

impl StagingDir {
    /// Also removes what an interrupted staging of the same target left beside it.
    pub fn new(target: &Path) -> Result<Self> {
        create_parent(target)?;
        remove_stale_siblings(target);
        let temp = TempPath::new(temp_sibling(target, "partial"));
        if temp.path().exists() {
            std::fs::remove_dir_all(temp.path()).map_err(|e| Error::io(temp.path().display(), e))?;
        }
        std::fs::create_dir(temp.path())
            .map_err(|e| Error::io(temp.path().display(), format!("cannot create: {e}")))?;
        Ok(Self {
            temp,
            target: target.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        self.temp.path()
    }

    /// Puts the staged directory at the target. An existing target is replaced only when
    /// it is an empty directory or `is_ours` recognises it (checked again here, just before
    /// the swap); otherwise the error says what is there and nothing changes.
    pub fn commit(self, is_ours: impl Fn(&Path) -> std::result::Result<(), String>) -> Result<()> {
        let target = &self.target;
        let meta = std::fs::symlink_metadata(target);
        match meta {
            Err(_) => {}
            Ok(m) if m.is_dir() && is_empty_dir(target) => {
                std::fs::remove_dir(target).map_err(|e| Error::io(target.display(), format!("cannot replace: {e}")))?;
            }
            Ok(m) if m.is_dir() => {
                is_ours(target).map_err(|why| Error::io(target.display(), format!("not replaced: {why}")))?;
                let old = TempPath::new(temp_sibling(target, "old"));
                std::fs::rename(target, old.path())
                    .map_err(|e| Error::io(target.display(), format!("cannot replace: {e}")))?;
                if let Err(e) = std::fs::rename(self.temp.path(), target) {
                    // Put the old one back: the target is never lost.
                    let _ = std::fs::rename(old.path(), target);
                    old.keep();
                    return Err(Error::io(target.display(), format!("cannot write: {e}")));
                }
                drop(old);
                self.temp.keep();
                return Ok(());
            }
            Ok(_) => {
                return Err(Error::io(
                    target.display(),
                    "not replaced: it is a file (or a link), not a directory",
                ));
            }
        }
        std::fs::rename(self.temp.path(), target)
            .map_err(|e| Error::io(target.display(), format!("cannot write: {e}")))?;
        self.temp.keep();
        Ok(())
    }
}

/// True for a directory with no entries (an unreadable one counts as not empty).
pub fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none())
}

/// Whether the process `pid` still runs. Where that cannot be told, it is assumed to run.
pub fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

fn remove_path(path: &Path, is_dir: bool) -> bool {
    let gone = if is_dir {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    gone.is_ok()
}

/// Removes the temporary names ([`temp_name_pid`]) in `dir` (and below, when `recursive`)
/// that a process left behind: all of them when `all` (the caller holds the directory's
/// lock, so no one else is writing there), else those whose process has ended. Returns the
/// paths removed.
pub fn remove_stale_temps(dir: &Path, recursive: bool, all: bool) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return removed;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        match temp_name_pid(&name) {
            Some(pid) if ((all && pid != std::process::id()) || !process_alive(pid)) && remove_path(&path, is_dir) => {
                removed.push(path);
            }
            Some(_) => {}
            None if recursive && is_dir => removed.extend(remove_stale_temps(&path, true, all)),
            None => {}
        }
    }
    removed
}

/// Removes the temporary names of `target` itself (`.NAME.KIND-PID` beside it) whose process
/// has ended: what a killed write or staging of that target left. Nothing else is touched.
pub fn remove_stale_siblings(target: &Path) -> Vec<PathBuf> {
    let (Some(parent), Some(name)) = (target.parent(), target.file_name()) else {
        return Vec::new();
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let prefix = format!(".{}.", name.to_string_lossy());
    list_dir(parent)
        .into_iter()
        .filter(|entry| entry.starts_with(&prefix) && temp_name_pid(entry).is_some_and(|pid| !process_alive(pid)))
        .map(|entry| parent.join(entry))
        .filter(|path| remove_path(path, path.is_dir()))
        .collect()
}

/// The entries of `dir` (names, sorted), for messages about what a directory holds.
pub fn list_dir(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A short list of names for a message: the first few, then how many more.
pub fn show_names(names: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut text = names.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("astrid-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn temp_names_are_recognised_with_their_process() {
        let t = temp_sibling(Path::new("a/b/model.safetensors"), "tmp");
        let name = t.file_name().unwrap().to_str().unwrap();
        assert_eq!(temp_name_pid(name), Some(std::process::id()));
        assert_eq!(temp_name_pid(".models.partial-12"), Some(12));
        assert_eq!(temp_name_pid(".x.old-7"), Some(7));
        for not_temp in [
            "models",
            ".lock",
            ".x.tmp-",
            ".x.tmp-abc",
            "x.tmp-12",
            ".x.other-12",
            ".gitignore",
        ] {
            assert_eq!(temp_name_pid(not_temp), None, "{not_temp}");
        }
    }

    #[test]
    fn an_atomic_write_leaves_no_temporary_file_on_error() {
        let dir = scratch("atomic");
        let target = dir.join("f.json");
        write_atomic(&target, b"one").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"one");
        // A directory in the way makes the rename fail: the temp file must go.
        let blocked = dir.join("blocked");
        std::fs::create_dir_all(blocked.join("inner")).unwrap();
        assert!(write_atomic(&blocked, b"two").is_err());
        assert_eq!(list_dir(&dir), ["blocked", "f.json"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_staged_directory_replaces_only_what_is_recognised() {
        let dir = scratch("staging");
        let target = dir.join("bundle");
        std::fs::create_dir_all(&target).unwrap();
        std::fs::write(target.join("mine.txt"), b"user data").unwrap();
        let staging = StagingDir::new(&target).unwrap();
        std::fs::write(staging.path().join("manifest.json"), b"{}").unwrap();
        let err = staging
            .commit(|_| Err("it holds mine.txt".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not replaced") && err.contains("mine.txt"), "{err}");
        assert_eq!(std::fs::read(target.join("mine.txt")).unwrap(), b"user data");
        assert_eq!(list_dir(&dir), ["bundle"], "the staging directory is removed on error");

        let staging = StagingDir::new(&target).unwrap();
        std::fs::write(staging.path().join("manifest.json"), b"{}").unwrap();
        staging.commit(|_| Ok(())).unwrap();
        assert_eq!(list_dir(&target), ["manifest.json"]);
        assert_eq!(list_dir(&dir), ["bundle"]);

        // An empty directory is replaced; a file is never.
        let empty = dir.join("empty");
        std::fs::create_dir(&empty).unwrap();
        StagingDir::new(&empty).unwrap().commit(|_| Err("no".into())).unwrap();
        let file = dir.join("file");
        std::fs::write(&file, b"keep").unwrap();
        assert!(StagingDir::new(&file).unwrap().commit(|_| Ok(())).is_err());
        assert_eq!(std::fs::read(&file).unwrap(), b"keep");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stale_temporaries_of_dead_processes_are_removed() {
        let dir = scratch("stale");
        // No process has pid 4_000_000_000 (above Linux's pid_max).
        std::fs::write(dir.join(".a.tmp-4000000000"), b"x").unwrap();
        std::fs::create_dir_all(dir.join("sub/.m.partial-4000000000")).unwrap();
        let mine = temp_sibling(&dir.join("b"), "tmp");
        std::fs::write(&mine, b"x").unwrap();
        std::fs::write(dir.join("user.txt"), b"x").unwrap();
        let removed = remove_stale_temps(&dir, true, false);
        assert_eq!(removed.len(), if cfg!(target_os = "linux") { 2 } else { 0 });
        assert!(mine.exists() && dir.join("user.txt").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
