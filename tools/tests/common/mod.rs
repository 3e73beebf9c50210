//! Helpers shared by the command-line tests: run the `ssdann` binary, read its output.

#![allow(dead_code)]

use std::process::{Command, Output};

/// Runs the `ssdann` binary with `args`.
pub fn ssdann(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ssdann"))
        .args(args)
        .output()
        .expect("run ssdann")
}

/// stdout then stderr, as text.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
