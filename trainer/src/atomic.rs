//! Writing files so that a crash never leaves a half-written one: write a temporary file
//! beside the target, then rename it over the target.

use std::path::Path;

use anyhow::Context;

pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("{}: cannot create", parent.display()))?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    std::fs::write(&temp, bytes).with_context(|| format!("{}: cannot write", temp.display()))?;
    std::fs::rename(&temp, path).with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(())
}
