//! Writes a synthetic index of N slots for measuring what an open costs at a scale this
//! machine cannot build (issue 12, part 2: "a 10 M-point index opens in ≤ 2 s"): the header
//! and PQ pivots of a real index (`FROM`), N × M PQ codes repeated from it, a `labels.bin`
//! of N labels (the identity, or a permutation with `--permuted`), and a sparse `index.ssd`
//! of the size the header asks for. Every file passes the checks of `Index::open`; the
//! blocks are zeros, so searches on it are meaningless — open it, nothing else.
//!
//! ```text
//! cargo run --release -p ssdann-engine --example synth_index -- /tmp/idx100k /tmp/idx10m 10000000 [--permuted]
//! cargo run --release -p ssdann-engine --example open_memory -- /tmp/idx10m
//! ```

use ssdann_builder::build::INDEX_FILE;
use ssdann_layout::labels::{write_labels_with, LABELS_FILE};
use ssdann_layout::pq::{read_codes, write_codes_with, PQ_CODES_FILE, PQ_PIVOTS_FILE};
use ssdann_layout::IndexHeader;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: synth_index FROM OUT N [--permuted]");
        std::process::exit(2);
    }
    let (from, out) = (PathBuf::from(&args[1]), PathBuf::from(&args[2]));
    let n: usize = args[3].parse()?;
    let permuted = args.get(4).is_some_and(|a| a == "--permuted");
    if n == 0 || n > u32::MAX as usize {
        return Err("N must be in 1..=2^32-1".into());
    }
    std::fs::create_dir_all(&out)?;
    let src = std::fs::read(from.join(INDEX_FILE))?;
    let (h, _) = IndexHeader::choose(&from.join(INDEX_FILE), &src[..8192])?;
    let header = IndexHeader {
        n_slots: n as u64,
        live_count: n as u64,
        entry_point: h.entry_point.min(n as u64 - 1),
        ..h
    };
    let ssd = std::fs::File::create(out.join(INDEX_FILE))?;
    ssd.set_len(header.file_bytes())?; // sparse: only the header slot is written
    std::os::unix::fs::FileExt::write_all_at(&ssd, &header.encode(), 0)?;
    ssd.sync_all()?;
    std::fs::copy(from.join(PQ_PIVOTS_FILE), out.join(PQ_PIVOTS_FILE))?;
    let (cn, m, codes) = read_codes(&from.join(PQ_CODES_FILE))?;
    write_codes_with(&out.join(PQ_CODES_FILE), n, m, |s, c| {
        let s = s % cn;
        c.copy_from_slice(&codes[s * m..(s + 1) * m]);
    })?;
    // a permutation of 0..n: s ↦ s·a mod n with a coprime to n
    let a = (1_000_003..).find(|a| gcd(*a, n as u64) == 1).unwrap_or(1);
    write_labels_with(&out.join(LABELS_FILE), n, |s| {
        if permuted {
            ((s as u128 * a as u128) % n as u128) as u64
        } else {
            s as u64
        }
    })?;
    println!(
        "wrote {} (n = {n}, M = {m}, labels {})",
        out.display(),
        if permuted { "permuted" } else { "identity" }
    );
    Ok(())
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
