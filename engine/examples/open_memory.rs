//! Measures what opening an index costs (issue 12, part 2): the wall time of
//! `Index::open` (read-only), and the process's resident memory before and after it, from
//! `/proc/self/status` (VmRSS: resident now; VmHWM: the peak, so transient buffers of the
//! open show up there). One open per process: an allocator that reuses freed memory would
//! hide a second open's cost. Run it a few times and take the median:
//!
//! ```text
//! cargo run --release -p ssdann-engine --example open_memory -- /tmp/idx100k
//! ```
//!
//! Prints one line: n, open ms, RSS delta (bytes and bytes per point), peak delta, and the
//! engine's own `memory_report`. A benchmark, not a test: nothing is asserted.

use ssdann_engine::{Index, OpenOptions};
use std::time::Instant;

/// A field of /proc/self/status in bytes (the kernel reports kB).
fn status_bytes(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kb| kb * 1024)
}

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: open_memory INDEX_DIR");
        std::process::exit(2);
    };
    let rss0 = status_bytes("VmRSS:");
    let hwm0 = status_bytes("VmHWM:");
    let t = Instant::now();
    let idx = match Index::open(
        std::path::Path::new(&dir),
        OpenOptions {
            read_only: true,
            ..Default::default()
        },
    ) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("{dir}: {e}");
            std::process::exit(1);
        }
    };
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let rss1 = status_bytes("VmRSS:");
    let hwm1 = status_bytes("VmHWM:");
    let n = idx.header().n_slots.max(1);
    let rss = rss1.saturating_sub(rss0);
    let hwm = hwm1.saturating_sub(hwm0);
    println!(
        "n {n} open_ms {open_ms:.1} rss_delta {rss} B ({:.1} B/point) peak_delta {hwm} B ({:.1} B/point) report {:?}",
        rss as f64 / n as f64,
        hwm as f64 / n as f64,
        idx.memory_report()
    );
}
