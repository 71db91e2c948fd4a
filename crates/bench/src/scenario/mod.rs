//! The scenarios: `idle`, `pairs`, `sweep`, `sync-storm` and `fanout`.

pub mod fanout;
pub mod idle;
pub mod pairs;
pub mod sweep;
pub mod sync_storm;

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar, or a hidden one when output is not for a person.
pub fn progress(len: u64, quiet: bool, what: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {prefix:>12} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
