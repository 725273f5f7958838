//! Progress bars: one look for every long loop (training epochs, explanations).

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `len` items, labelled `prefix`; `what` names the work after the prefix ("IG")
/// or is empty; `hidden` draws nothing (`--quiet`).
pub fn bar(len: usize, prefix: impl Into<String>, what: &str, hidden: bool) -> ProgressBar {
    let bar = if hidden {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(len as u64)
    };
    let what = if what.is_empty() {
        String::new()
    } else {
        format!("{what} ")
    };
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{prefix:>14}} {what}{{bar:30}} {{pos}}/{{len}} {{msg}} ETA {{eta}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(prefix.into());
    bar
}
