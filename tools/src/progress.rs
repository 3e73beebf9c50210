//! indicatif progress bars for the builder's phases.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ssdann_builder::{Phase, Progress};
use std::sync::Mutex;

/// Draws one bar per phase on stderr (hidden when stderr is not a terminal or `quiet`).
pub struct Bars {
    bar: Mutex<Option<ProgressBar>>,
    quiet: bool,
}

impl Bars {
    pub fn new(quiet: bool) -> Self {
        Bars {
            bar: Mutex::new(None),
            quiet,
        }
    }
}

pub fn bar(total: u64, msg: &str, quiet: bool) -> ProgressBar {
    let b = ProgressBar::with_draw_target(
        Some(total),
        if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        },
    );
    if let Ok(style) =
        ProgressStyle::with_template("{msg:>22} [{bar:36}] {pos}/{len} ({elapsed}, eta {eta})")
    {
        b.set_style(style.progress_chars("=> "));
    }
    b.set_message(msg.to_string());
    b
}

impl Progress for Bars {
    fn start(&self, phase: Phase, total: u64) {
        if let Ok(mut g) = self.bar.lock() {
            *g = Some(bar(total, phase.name(), self.quiet));
        }
    }
    fn advance(&self, n: u64) {
        if let Ok(g) = self.bar.lock() {
            if let Some(b) = g.as_ref() {
                b.inc(n);
            }
        }
    }
    fn message(&self, msg: &str) {
        if !self.quiet {
            eprintln!("{msg}");
        }
    }
    fn finish(&self) {
        if let Ok(mut g) = self.bar.lock() {
            if let Some(b) = g.take() {
                b.finish_and_clear();
            }
        }
    }
}
