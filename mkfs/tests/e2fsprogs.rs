//! Filesystems made by `skiff_mkfs::format` checked by Debian's e2fsprogs (`e2fsck -fn`,
//! `dumpe2fs`) and mounted by the running kernel through a loop device.
//!
//! Needs `e2fsprogs`; the mount test needs root and loop devices and says so when skipped.

use std::fs::OpenOptions;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

fn options(label: &str, n: u8) -> skiff_mkfs::Options {
    skiff_mkfs::Options {
        label: label.into(),
        uuid: [
            n, 0x11, 0x22, 0x33, 0x44, 0x55, 0x46, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee,
            n,
        ],
        hash_seed: [n.wrapping_mul(7); 16],
        time: 1_760_000_000,
    }
}

/// A sparse file of `bytes`, formatted.
fn formatted(dir: &Path, name: &str, bytes: u64, label: &str) -> Result<skiff_mkfs::Summary> {
    let path = dir.join(name);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    file.set_len(bytes)?;
    let summary = skiff_mkfs::format(
        &mut file,
        &options(label, u8::try_from(bytes >> 24).unwrap_or(1)),
    )?;
    file.sync_all()?;
    Ok(summary)
}

fn run(program: &str, args: &[&str]) -> Result<(i32, String)> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program} (apt-get install e2fsprogs)"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.code().unwrap_or(-1), text))
}

fn fsck_clean(path: &Path) -> Result<String> {
    let (code, text) = run("e2fsck", &["-fn", path.to_str().unwrap()])?;
    if code != 0 {
        bail!("e2fsck -fn {} exited {code}:\n{text}", path.display());
    }
    Ok(text)
}

fn field<'a>(dump: &'a str, name: &str) -> Option<&'a str> {
    dump.lines()
        .find_map(|l| l.strip_prefix(name))
        .map(|rest| rest.trim_start_matches(':').trim())
}

#[test]
fn e2fsck_and_dumpe2fs_accept_several_sizes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    for (name, bytes) in [
        ("min.img", skiff_mkfs::MIN_BYTES),
        ("16m.img", 16 << 20),
        ("1g.img", 1 << 30),
        ("odd.img", (3 << 30) + (5 << 20) + 4096 * 3 + 512),
        ("one-group.img", 128 << 20),
        ("short-tail.img", (128 << 20) + (300 << 10)),
        ("kept-tail.img", (128 << 20) + (8 << 20)),
        ("20g.img", 20 << 30),
    ] {
        let summary = formatted(dir.path(), name, bytes, "skiff-state")?;
        let path = dir.path().join(name);
        let text = fsck_clean(&path).with_context(|| format!("{name}: {summary:?}"))?;
        assert!(text.contains("11/"), "{name}: 11 inodes in use: {text}");
        let (code, dump) = run("dumpe2fs", &["-h", path.to_str().unwrap()])?;
        assert_eq!(code, 0, "{dump}");
        let features = field(&dump, "Filesystem features").unwrap_or_default();
        for f in [
            "has_journal",
            "extent",
            "64bit",
            "metadata_csum",
            "sparse_super",
            "dir_index",
        ] {
            assert!(
                features.split(' ').any(|x| x == f),
                "{name}: no {f} in {features}"
            );
        }
        assert_eq!(field(&dump, "Filesystem volume name"), Some("skiff-state"));
        assert_eq!(field(&dump, "Filesystem state"), Some("clean"));
        assert_eq!(field(&dump, "Checksum type"), Some("crc32c"));
        assert_eq!(field(&dump, "Journal inode"), Some("8"));
        assert_eq!(
            field(&dump, "Block count").and_then(|v| v.parse::<u64>().ok()),
            Some(summary.blocks)
        );
        assert_eq!(
            field(&dump, "Free blocks").and_then(|v| v.parse::<u64>().ok()),
            Some(summary.free_blocks)
        );
        let journal = field(&dump, "Total journal blocks").and_then(|v| v.parse::<u64>().ok());
        assert_eq!(journal, Some(summary.journal_blocks), "{name}");
        assert!(summary.journal_blocks >= 1024);
        // The backups agree with the primary: e2fsck reading the superblock in group 1.
        if summary.groups > 1 {
            let (code, text) = run(
                "e2fsck",
                &["-fn", "-b", "32768", "-B", "4096", path.to_str().unwrap()],
            )?;
            assert_eq!(code, 0, "{name} from the group 1 backup: {text}");
        }
    }
    Ok(())
}

#[test]
fn too_small_a_device_is_refused_and_left_untouched() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("tiny.img");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    file.set_len(4 << 20)?;
    let e = skiff_mkfs::format(&mut file, &options("x", 1)).unwrap_err();
    assert!(e.to_string().contains("at least 8 MiB"), "{e}");
    assert!(std::fs::read(&path)?.iter().all(|&b| b == 0));
    Ok(())
}

struct Loop(String);
impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}
struct Mounted(std::path::PathBuf);
impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn the_kernel_mounts_it_and_files_survive_a_remount() -> Result<()> {
    let dir = tempfile::tempdir()?;
    formatted(dir.path(), "disk.img", 256 << 20, "mounted")?;
    let image = dir.path().join("disk.img");
    let (code, text) = run("losetup", &["--find", "--show", image.to_str().unwrap()])?;
    if code != 0 {
        eprintln!("SKIPPED: no loop device here (needs root): {text}");
        return Ok(());
    }
    let dev = Loop(text.trim().to_owned());
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt)?;
    let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    for round in 0..2 {
        let (code, text) = run("mount", &["-t", "ext4", &dev.0, mnt.to_str().unwrap()])?;
        assert_eq!(code, 0, "mount: {text}");
        let m = Mounted(mnt.clone());
        if round == 0 {
            assert!(mnt.join("lost+found").is_dir());
            std::fs::create_dir_all(mnt.join("lib/skiff/agent"))?;
            std::fs::write(mnt.join("lib/skiff/agent/blob"), &payload)?;
            for i in 0..300 {
                std::fs::write(mnt.join(format!("lib/f{i}")), i.to_string())?;
            }
        } else {
            assert_eq!(std::fs::read(mnt.join("lib/skiff/agent/blob"))?, payload);
            assert_eq!(std::fs::read_to_string(mnt.join("lib/f299"))?, "299");
            assert_eq!(std::fs::read_dir(mnt.join("lib"))?.count(), 301);
        }
        drop(m);
    }
    drop(dev);
    fsck_clean(&image)?;
    Ok(())
}

/// The check above means something: one flipped bit in a group descriptor (its checksum no
/// longer matches) or in the root directory's block makes e2fsck report errors.
#[test]
fn e2fsck_notices_a_flipped_bit() -> Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let dir = tempfile::tempdir()?;
    let layout = skiff_mkfs::plan(64 << 20)?;
    for (name, offset) in [
        ("gdt.img", 4096 + 0x0C),                  // group 0's free-blocks count
        ("root.img", layout.root_dir * 4096 + 30), // inside the root's "lost+found" entry
    ] {
        formatted(dir.path(), name, 64 << 20, "flip")?;
        let path = dir.path().join(name);
        let mut file = OpenOptions::new().read(true).write(true).open(&path)?;
        let mut byte = [0u8; 1];
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(&mut byte)?;
        byte[0] ^= 0x01;
        file.seek(SeekFrom::Start(offset))?;
        file.write_all(&byte)?;
        drop(file);
        let (code, text) = run("e2fsck", &["-fn", path.to_str().unwrap()])?;
        assert_ne!(code, 0, "{name}: e2fsck found nothing:\n{text}");
    }
    Ok(())
}
