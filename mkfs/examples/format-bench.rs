//! Times `skiff_mkfs::format` against Debian's `mke2fs -t ext4` on sparse files of the same
//! sizes, in the same run: each format ends with the data synced (ours: `fsync` after
//! `format`; mke2fs syncs before it exits). Prints a Markdown section; `--write FILE` puts it
//! between `<!-- mkfs-bench:start -->` and `<!-- mkfs-bench:end -->` in FILE.
//!
//! ```sh
//! cargo run --release -p skiff-mkfs --example format-bench -- --runs 7 --write docs/benchmarks.md
//! ```
//! Flags: `--runs N` (default 5), `--dir DIR` (where the sparse files go; default the system
//! temporary directory), `--write FILE`.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

const SIZES: [(&str, u64); 3] = [
    ("16 MiB", 16 << 20),
    ("1 GiB", 1 << 30),
    ("20 GiB", 20 << 30),
];
const START: &str = "<!-- mkfs-bench:start -->";
const END: &str = "<!-- mkfs-bench:end -->";

fn sparse(path: &Path, bytes: u64) -> Result<std::fs::File> {
    let _ = std::fs::remove_file(path);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)?;
    file.set_len(bytes)?;
    Ok(file)
}

fn ours(path: &Path, bytes: u64, run: u8) -> Result<Duration> {
    let mut file = sparse(path, bytes)?;
    let options = skiff_mkfs::Options {
        label: "skiff-state".into(),
        uuid: [run; 16],
        hash_seed: [run.wrapping_add(1); 16],
        time: 1_760_000_000,
    };
    let started = Instant::now();
    skiff_mkfs::format(&mut file, &options)?;
    file.sync_all()?;
    Ok(started.elapsed())
}

fn mke2fs(path: &Path, bytes: u64) -> Result<Duration> {
    drop(sparse(path, bytes)?);
    let started = Instant::now();
    let out = Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-L", "skiff-state"])
        .arg(path)
        .output()
        .context("running mke2fs (apt-get install e2fsprogs)")?;
    let took = started.elapsed();
    if !out.status.success() {
        bail!("mke2fs: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(took)
}

/// Bytes the file really occupies (sparse files: only what was written).
fn allocated(path: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(path)?.blocks() * 512)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() -> Result<()> {
    let mut runs = 5u8;
    let mut dir = std::env::temp_dir();
    let mut write: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().context("flag needs a value");
        match arg.as_str() {
            "--runs" => runs = value()?.parse()?,
            "--dir" => dir = value()?.into(),
            "--write" => write = Some(value()?.into()),
            other => bail!("unknown flag {other}; use --runs N, --dir DIR, --write FILE"),
        }
    }
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let work = tempfile::tempdir_in(&dir)?;
    let path = work.path().join("disk.img");
    let mut rows = Vec::new();
    for (name, bytes) in SIZES {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let (mut a_alloc, mut b_alloc) = (0, 0);
        for run in 0..runs {
            a.push(ms(ours(&path, bytes, run)?));
            a_alloc = allocated(&path)?;
            b.push(ms(mke2fs(&path, bytes)?));
            b_alloc = allocated(&path)?;
        }
        let (ma, mb) = (median(a.clone()), median(b.clone()));
        eprintln!("{name}: skiff-mkfs {ma:.1} ms, mke2fs {mb:.1} ms");
        rows.push(format!(
            "| {name} | **{ma:.1}** ms | **{mb:.1}** ms | **{:.2}** × | {} / {} KiB |",
            ma / mb,
            a_alloc / 1024,
            b_alloc / 1024
        ));
    }
    let version = Command::new("mke2fs")
        .arg("-V")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let section = format!(
        "{START}\n## Formatting a state disk\n\n\
         Command: `cargo run --release -p skiff-mkfs --example format-bench -- --runs {runs}`\n\n\
         Machine: {cpus} CPUs, kernel {}, sparse files in `{}`; {version}; load average {} (the machine is shared).\n\n\
         Median of {runs} runs per size, each on a fresh sparse file, timed until the data is \
         synced: `skiff_mkfs::format` + `fsync` (what init runs on a blank state disk) against \
         `mke2fs -q -F -t ext4 -L skiff-state` in the same run. Both are lazy (inode tables \
         left for the kernel to zero after mounting); mke2fs also discards (punches) the whole \
         file first and zeroes its journal, and builds `flex_bg` and `resize_inode`, which ours \
         leaves out. \"written\" is what the file occupies afterwards.\n\n\
         | size | skiff-mkfs | mke2fs | ratio | written (skiff / mke2fs) |\n|---|---|---|---|---|\n{}\n{END}\n",
        kernel.trim(),
        dir.display(),
        load.join(" "),
        rows.join("\n")
    );
    print!("{section}");
    if let Some(file) = write {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let new = match (text.find(START), text.find(END)) {
            (Some(a), Some(b)) if a < b => {
                format!(
                    "{}{}{}",
                    &text[..a],
                    section.trim_end(),
                    &text[b + END.len()..]
                )
            }
            _ => format!("{}\n\n{section}", text.trim_end()),
        };
        std::fs::write(&file, new)?;
        eprintln!("wrote {}", file.display());
    }
    Ok(())
}
