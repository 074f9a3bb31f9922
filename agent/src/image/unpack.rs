//! Safe layer unpacking: one image layer (a tar stream, gzip/zstd/uncompressed) into one empty
//! directory that becomes an overlayfs lower dir.
//!
//! Every path is resolved component by component from a directory file descriptor with
//! `O_NOFOLLOW` (openat-style), so nothing is ever written through a symlink the kernel would
//! follow. Entry paths with `..` or a leading `/` are refused. A symlink *inside this layer* that
//! a later entry is written through is resolved by hand: relative targets that stay inside the
//! layer are followed, absolute targets and targets that climb above the layer root are refused.
//! Hard links must name an entry of this layer, resolved the same way.
//!
//! Whiteouts are converted to overlayfs's own format rather than applied by flattening, because
//! layers are stored once by diff-id and shared between images: `.wh.name` becomes a 0/0 character
//! device `name`, and `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its directory. Both need
//! root, which the agent is. Device nodes are skipped unless running as root.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timestamps, XattrFlags};
use rustix::io::Errno;
use sha2::{Digest, Sha256};

/// Most symlinks followed while resolving one path (Linux's own limit).
const MAX_SYMLINK_FOLLOWS: usize = 40;
const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Why a layer could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The layer is hostile or malformed; `entry` names the offending tar entry.
    #[error("refused layer entry {entry:?}: {reason}")]
    Refused { entry: String, reason: String },
    /// Writing one entry failed.
    #[error("writing layer entry {entry:?}")]
    Entry {
        entry: String,
        #[source]
        source: io::Error,
    },
    /// Reading or decompressing the layer failed.
    #[error("reading layer")]
    Read(#[source] io::Error),
    /// The uncompressed tar does not hash to the diff id the image config declares.
    #[error("layer diff id mismatch: expected {expected}, got {actual}")]
    DiffId { expected: String, actual: String },
}

/// What one unpacked layer amounted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// `sha256:<hex>` of the uncompressed tar stream.
    pub diff_id: String,
    /// Bytes of uncompressed tar.
    pub tar_bytes: u64,
    pub entries: u64,
}

/// Unpack the layer in `reader` into `dest`, an existing empty directory. The compression is
/// detected from the stream's magic bytes. When `expected_diff_id` is given, the uncompressed
/// stream must hash to it. On error, `dest` may hold a partial tree: the caller discards it.
pub fn unpack_layer(
    reader: impl Read,
    dest: &Path,
    expected_diff_id: Option<&str>,
) -> Result<Unpacked, UnpackError> {
    let mut buffered = BufReader::new(reader);
    let magic = buffered.fill_buf().map_err(UnpackError::Read)?;
    let tar: Box<dyn Read> = if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(buffered))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(buffered).map_err(UnpackError::Read)?)
    } else {
        Box::new(buffered)
    };
    let mut hashing = HashingReader::new(tar);
    let root = open_dir_fd(dest).map_err(|e| UnpackError::Entry {
        entry: ".".into(),
        source: e,
    })?;
    let writer = Writer {
        root,
        is_root: rustix::process::geteuid().is_root(),
    };
    let entries = writer.unpack(&mut hashing)?;
    // The diff id covers the whole stream, including padding after the end-of-archive blocks.
    io::copy(&mut hashing, &mut io::sink()).map_err(UnpackError::Read)?;
    let (diff_id, tar_bytes) = hashing.finish();
    if let Some(expected) = expected_diff_id
        && expected != diff_id
    {
        return Err(UnpackError::DiffId {
            expected: expected.to_string(),
            actual: diff_id,
        });
    }
    Ok(Unpacked {
        diff_id,
        tar_bytes,
        entries,
    })
}

/// A reader that hashes (sha256) and counts what passes through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// `("sha256:<hex>", bytes read)`.
    pub(crate) fn finish(self) -> (String, u64) {
        (
            format!("sha256:{}", hex::encode(self.hasher.finalize())),
            self.bytes,
        )
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

fn open_dir_fd(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn refused(entry: &str, reason: impl Into<String>) -> UnpackError {
    UnpackError::Refused {
        entry: entry.to_string(),
        reason: reason.into(),
    }
}

/// The components of an entry path, refusing anything that could leave the root.
fn entry_components(entry: &str, path: &Path) -> Result<Vec<OsString>, UnpackError> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::CurDir => {}
            Component::ParentDir => return Err(refused(entry, "path contains '..'")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(refused(entry, "absolute path"));
            }
        }
    }
    Ok(out)
}

/// Metadata applied to a directory after all entries are written (so a read-only directory
/// mode cannot block its own children, and children do not bump its mtime).
struct DirMeta {
    entry: String,
    components: Vec<OsString>,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
}

struct Writer {
    root: OwnedFd,
    is_root: bool,
}

impl Writer {
    fn unpack(&self, reader: &mut dyn Read) -> Result<u64, UnpackError> {
        let mut archive = tar::Archive::new(reader);
        let mut dirs = Vec::new();
        let mut count = 0u64;
        for entry in archive.entries().map_err(UnpackError::Read)? {
            let mut entry = entry.map_err(UnpackError::Read)?;
            count += 1;
            let path = entry.path().map_err(UnpackError::Read)?.into_owned();
            let name = path.to_string_lossy().into_owned();
            let components = entry_components(&name, &path)?;
            if let Some(meta) = self.write_entry(&name, components, &mut entry)? {
                dirs.push(meta);
            }
        }
        // Deepest first, so a parent's mtime is set after its children's.
        for meta in dirs.iter().rev() {
            self.apply_dir_meta(meta)?;
        }
        Ok(count)
    }

    fn write_entry(
        &self,
        name: &str,
        mut components: Vec<OsString>,
        entry: &mut tar::Entry<'_, &mut dyn Read>,
    ) -> Result<Option<DirMeta>, UnpackError> {
        let header = entry.header();
        let kind = header.entry_type();
        let mode = header.mode().map_err(UnpackError::Read)? & 0o7777;
        let uid = header.uid().map_err(UnpackError::Read)?;
        let gid = header.gid().map_err(UnpackError::Read)?;
        let mtime = header.mtime().map_err(UnpackError::Read)?;
        let io_err = |source: io::Error| UnpackError::Entry {
            entry: name.to_string(),
            source,
        };

        let Some(last) = components.pop() else {
            // The root itself ("./"): only its metadata can change.
            return Ok(kind.is_dir().then(|| DirMeta {
                entry: name.to_string(),
                components: Vec::new(),
                mode,
                uid,
                gid,
                mtime,
            }));
        };
        let parent = self.resolve_dir(name, &components, true)?;
        let last_str = last.to_string_lossy();

        // Whiteouts.
        if last_str == OPAQUE_MARKER {
            rustix::fs::fsetxattr(&parent, OPAQUE_XATTR, b"y", XattrFlags::empty())
                .map_err(|e| io_err(e.into()))?;
            return Ok(None);
        }
        if let Some(hidden) = last_str.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.starts_with(WHITEOUT_PREFIX) {
                // Other AUFS metadata (.wh..wh.plnk etc.): meaningless here.
                return Ok(None);
            }
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(refused(name, "malformed whiteout"));
            }
            remove_existing(&parent, OsStr::new(hidden)).map_err(io_err)?;
            rustix::fs::mknodat(
                &parent,
                hidden,
                FileType::CharacterDevice,
                Mode::empty(),
                rustix::fs::makedev(0, 0),
            )
            .map_err(|e| io_err(e.into()))?;
            return Ok(None);
        }

        match kind {
            tar::EntryType::Directory => {
                match rustix::fs::statat(&parent, &last, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
                    Ok(_) => {
                        remove_existing(&parent, &last).map_err(io_err)?;
                        mkdir(&parent, &last).map_err(io_err)?;
                    }
                    Err(Errno::NOENT) => mkdir(&parent, &last).map_err(io_err)?,
                    Err(e) => return Err(io_err(e.into())),
                }
                components.push(last);
                Ok(Some(DirMeta {
                    entry: name.to_string(),
                    components,
                    mode,
                    uid,
                    gid,
                    mtime,
                }))
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                remove_existing(&parent, &last).map_err(io_err)?;
                let fd = rustix::fs::openat(
                    &parent,
                    &last,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| io_err(e.into()))?;
                let mut file = std::fs::File::from(fd);
                io::copy(entry, &mut file).map_err(io_err)?;
                if self.is_root {
                    rustix::fs::fchown(&file, to_uid(uid), to_gid(gid))
                        .map_err(|e| io_err(e.into()))?;
                }
                rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))
                    .map_err(|e| io_err(e.into()))?;
                rustix::fs::futimens(&file, &timestamps(mtime)).map_err(|e| io_err(e.into()))?;
                Ok(None)
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(UnpackError::Read)?
                    .ok_or_else(|| refused(name, "symlink without target"))?
                    .into_owned();
                remove_existing(&parent, &last).map_err(io_err)?;
                rustix::fs::symlinkat(target.as_os_str(), &parent, &last)
                    .map_err(|e| io_err(e.into()))?;
                if self.is_root {
                    rustix::fs::chownat(
                        &parent,
                        &last,
                        to_uid(uid),
                        to_gid(gid),
                        AtFlags::SYMLINK_NOFOLLOW,
                    )
                    .map_err(|e| io_err(e.into()))?;
                }
                rustix::fs::utimensat(
                    &parent,
                    &last,
                    &timestamps(mtime),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|e| io_err(e.into()))?;
                Ok(None)
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(UnpackError::Read)?
                    .ok_or_else(|| refused(name, "hard link without target"))?
                    .into_owned();
                let mut target_components = match entry_components(name, &target) {
                    Ok(c) => c,
                    Err(_) => {
                        return Err(refused(
                            name,
                            format!("hard link target {} is outside the layer", target.display()),
                        ));
                    }
                };
                let Some(target_last) = target_components.pop() else {
                    return Err(refused(name, "hard link to the layer root"));
                };
                let target_parent = self.resolve_dir(name, &target_components, false)?;
                match rustix::fs::statat(&target_parent, &target_last, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                        return Err(refused(name, "hard link to a directory"));
                    }
                    Ok(_) => {}
                    Err(Errno::NOENT) => {
                        return Err(refused(
                            name,
                            format!("hard link target {} is not in this layer", target.display()),
                        ));
                    }
                    Err(e) => return Err(io_err(e.into())),
                }
                remove_existing(&parent, &last).map_err(io_err)?;
                rustix::fs::linkat(
                    &target_parent,
                    &target_last,
                    &parent,
                    &last,
                    AtFlags::empty(),
                )
                .map_err(|e| io_err(e.into()))?;
                Ok(None)
            }
            tar::EntryType::Fifo | tar::EntryType::Char | tar::EntryType::Block => {
                let file_type = match kind {
                    tar::EntryType::Fifo => FileType::Fifo,
                    tar::EntryType::Char => FileType::CharacterDevice,
                    _ => FileType::BlockDevice,
                };
                if file_type != FileType::Fifo && !self.is_root {
                    tracing::debug!(entry = name, "skipping device node (not root)");
                    return Ok(None);
                }
                // Writers leave these blank for FIFOs.
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                remove_existing(&parent, &last).map_err(io_err)?;
                rustix::fs::mknodat(
                    &parent,
                    &last,
                    file_type,
                    Mode::from_raw_mode(mode),
                    rustix::fs::makedev(major, minor),
                )
                .map_err(|e| io_err(e.into()))?;
                if self.is_root {
                    rustix::fs::chownat(
                        &parent,
                        &last,
                        to_uid(uid),
                        to_gid(gid),
                        AtFlags::SYMLINK_NOFOLLOW,
                    )
                    .map_err(|e| io_err(e.into()))?;
                }
                Ok(None)
            }
            tar::EntryType::XGlobalHeader => Ok(None),
            other => Err(refused(
                name,
                format!("unsupported tar entry type {other:?}"),
            )),
        }
    }

    fn apply_dir_meta(&self, meta: &DirMeta) -> Result<(), UnpackError> {
        let io_err = |source: io::Error| UnpackError::Entry {
            entry: meta.entry.clone(),
            source,
        };
        let dir = self.resolve_dir(&meta.entry, &meta.components, false)?;
        if self.is_root {
            rustix::fs::fchown(&dir, to_uid(meta.uid), to_gid(meta.gid))
                .map_err(|e| io_err(e.into()))?;
        }
        rustix::fs::fchmod(&dir, Mode::from_raw_mode(meta.mode)).map_err(|e| io_err(e.into()))?;
        rustix::fs::futimens(&dir, &timestamps(meta.mtime)).map_err(|e| io_err(e.into()))?;
        Ok(())
    }

    /// Open the directory named by `components` below the root without ever letting the kernel
    /// follow a symlink. Missing directories are created when `create` is set. Symlinks met on
    /// the way are resolved by hand and must stay inside the layer.
    fn resolve_dir(
        &self,
        entry: &str,
        components: &[OsString],
        create: bool,
    ) -> Result<OwnedFd, UnpackError> {
        let io_err = |source: io::Error| UnpackError::Entry {
            entry: entry.to_string(),
            source,
        };
        let open = |dir: &OwnedFd, name: &OsStr| -> io::Result<OwnedFd> {
            Ok(rustix::fs::openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?)
        };
        let mut stack: Vec<OwnedFd> = vec![open(&self.root, OsStr::new(".")).map_err(io_err)?];
        let mut queue: VecDeque<OsString> = components.iter().cloned().collect();
        let mut follows = 0;
        while let Some(name) = queue.pop_front() {
            if name.is_empty() || name == "." {
                continue;
            }
            if name == ".." {
                if stack.len() == 1 {
                    return Err(refused(
                        entry,
                        "a symlink on its path leads outside the layer",
                    ));
                }
                stack.pop();
                continue;
            }
            let cur = stack.last().ok_or_else(|| refused(entry, "empty path"))?;
            match rustix::fs::statat(cur, &name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => match FileType::from_raw_mode(st.st_mode) {
                    FileType::Directory => {
                        let fd = open(cur, &name).map_err(io_err)?;
                        stack.push(fd);
                    }
                    FileType::Symlink => {
                        follows += 1;
                        if follows > MAX_SYMLINK_FOLLOWS {
                            return Err(refused(entry, "too many levels of symlinks"));
                        }
                        let target = rustix::fs::readlinkat(cur, &name, Vec::new())
                            .map_err(|e| io_err(e.into()))?;
                        let target = OsStr::from_bytes(target.as_bytes());
                        if target.as_bytes().starts_with(b"/") {
                            return Err(refused(
                                entry,
                                format!(
                                    "symlink {} -> {} would be followed outside the layer",
                                    name.to_string_lossy(),
                                    target.to_string_lossy()
                                ),
                            ));
                        }
                        let parts: Vec<OsString> = target
                            .as_bytes()
                            .split(|b| *b == b'/')
                            .map(|p| OsStr::from_bytes(p).to_os_string())
                            .collect();
                        for part in parts.into_iter().rev() {
                            queue.push_front(part);
                        }
                    }
                    _ => {
                        return Err(refused(
                            entry,
                            format!("{} is not a directory", name.to_string_lossy()),
                        ));
                    }
                },
                Err(Errno::NOENT) if create => {
                    mkdir(cur, &name).map_err(io_err)?;
                    let fd = open(cur, &name).map_err(io_err)?;
                    stack.push(fd);
                }
                Err(Errno::NOENT) => {
                    return Err(refused(
                        entry,
                        format!("{} does not exist in this layer", name.to_string_lossy()),
                    ));
                }
                Err(e) => return Err(io_err(e.into())),
            }
        }
        stack.pop().ok_or_else(|| refused(entry, "empty path"))
    }
}

fn mkdir(parent: &OwnedFd, name: &OsStr) -> io::Result<()> {
    match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(Errno::EXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Remove whatever non-directory sits at `name`, so the next create cannot go through it.
/// A directory in the way is removed only when empty.
fn remove_existing(parent: &OwnedFd, name: &OsStr) -> io::Result<()> {
    match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
            Ok(rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)?)
        }
        Ok(_) => Ok(rustix::fs::unlinkat(parent, name, AtFlags::empty())?),
        Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn to_uid(raw: u64) -> Option<rustix::process::Uid> {
    u32::try_from(raw)
        .ok()
        .filter(|r| *r != u32::MAX)
        .map(rustix::process::Uid::from_raw)
}

fn to_gid(raw: u64) -> Option<rustix::process::Gid> {
    u32::try_from(raw)
        .ok()
        .filter(|r| *r != u32::MAX)
        .map(rustix::process::Gid::from_raw)
}

fn timestamps(mtime: u64) -> Timestamps {
    let t = rustix::fs::Timespec {
        tv_sec: i64::try_from(mtime).unwrap_or(i64::MAX),
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

    /// One tar entry, with its raw name written as-is (so hostile names are possible).
    enum E<'a> {
        Dir(&'a str),
        File(&'a str, &'a [u8], u32),
        Symlink(&'a str, &'a str),
        Hardlink(&'a str, &'a str),
        Fifo(&'a str),
    }

    fn tar_of(entries: &[E<'_>]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            let mut h = tar::Header::new_ustar();
            let (name, kind, data, mode, link): (&str, _, &[u8], u32, Option<&str>) = match e {
                E::Dir(n) => (n, tar::EntryType::Directory, b"", 0o755, None),
                E::File(n, d, m) => (n, tar::EntryType::Regular, d, *m, None),
                E::Symlink(n, t) => (n, tar::EntryType::Symlink, b"", 0o777, Some(t)),
                E::Hardlink(n, t) => (n, tar::EntryType::Link, b"", 0o644, Some(t)),
                E::Fifo(n) => (n, tar::EntryType::Fifo, b"", 0o600, None),
            };
            let raw = &mut h.as_old_mut().name;
            raw[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(l) = link {
                h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_size(data.len() as u64);
            h.set_mtime(1_700_000_000);
            h.set_uid(0);
            h.set_gid(0);
            h.set_cksum();
            b.append(&h, data).unwrap();
        }
        b.into_inner().unwrap()
    }

    /// A layer dir and a sentinel dir beside it that hostile layers aim at.
    struct Sandbox {
        _tmp: tempfile::TempDir,
        layer: std::path::PathBuf,
        sentinel: std::path::PathBuf,
    }

    impl Sandbox {
        fn new() -> Self {
            let tmp = tempfile::tempdir().unwrap();
            let layer = tmp.path().join("layer");
            let sentinel = tmp.path().join("sentinel");
            fs::create_dir(&layer).unwrap();
            fs::create_dir(&sentinel).unwrap();
            fs::write(sentinel.join("keep"), b"original").unwrap();
            Self {
                _tmp: tmp,
                layer,
                sentinel,
            }
        }

        fn unpack(&self, tar: &[u8]) -> Result<Unpacked, UnpackError> {
            unpack_layer(tar, &self.layer, None)
        }

        fn assert_sentinel_untouched(&self) {
            let names: Vec<_> = fs::read_dir(&self.sentinel)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, vec![OsString::from("keep")]);
            assert_eq!(fs::read(self.sentinel.join("keep")).unwrap(), b"original");
        }
    }

    fn expect_refused(result: Result<Unpacked, UnpackError>, entry: &str) -> String {
        match result {
            Err(UnpackError::Refused { entry: e, reason }) => {
                assert_eq!(e, entry);
                reason
            }
            other => panic!("expected refusal of {entry:?}, got {other:?}"),
        }
    }

    #[test]
    fn unpacks_files_dirs_links_and_modes() {
        let sb = Sandbox::new();
        let tar = tar_of(&[
            E::Dir("usr/"),
            E::Dir("usr/bin/"),
            E::File("usr/bin/tool", b"#!/bin/sh\n", 0o4755),
            E::Symlink("bin", "usr/bin"),
            E::Hardlink("usr/bin/tool2", "usr/bin/tool"),
            E::File("etc/implicit/parent.conf", b"x=1", 0o640),
            E::Fifo("run.fifo"),
        ]);
        let out = sb.unpack(&tar).unwrap();
        assert_eq!(out.entries, 7);
        assert_eq!(out.tar_bytes, tar.len() as u64);
        assert_eq!(out.diff_id, super::super::store::sha256_digest(&tar));
        let l = &sb.layer;
        assert_eq!(fs::read(l.join("usr/bin/tool")).unwrap(), b"#!/bin/sh\n");
        let md = fs::metadata(l.join("usr/bin/tool")).unwrap();
        assert_eq!(md.permissions().mode() & 0o7777, 0o4755);
        assert_eq!(md.mtime(), 1_700_000_000);
        assert_eq!(md.nlink(), 2, "hard link shares the inode");
        assert_eq!(fs::read_link(l.join("bin")).unwrap(), Path::new("usr/bin"));
        assert_eq!(
            fs::read(l.join("etc/implicit/parent.conf")).unwrap(),
            b"x=1"
        );
        assert!(
            fs::symlink_metadata(l.join("run.fifo"))
                .unwrap()
                .file_type()
                .is_fifo()
        );
        sb.assert_sentinel_untouched();
    }

    #[test]
    fn gzip_zstd_and_plain_give_the_same_tree_and_diff_id() {
        let tar = tar_of(&[E::File("a/b.txt", b"hello", 0o644)]);
        let diff_id = super::super::store::sha256_digest(&tar);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &tar).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&tar[..], 3).unwrap();
        for (name, bytes) in [("plain", &tar), ("gzip", &gz), ("zstd", &zst)] {
            let sb = Sandbox::new();
            let out = unpack_layer(&bytes[..], &sb.layer, Some(&diff_id)).unwrap();
            assert_eq!(out.diff_id, diff_id, "{name}");
            assert_eq!(
                fs::read(sb.layer.join("a/b.txt")).unwrap(),
                b"hello",
                "{name}"
            );
        }
    }

    #[test]
    fn wrong_diff_id_is_refused() {
        let sb = Sandbox::new();
        let tar = tar_of(&[E::File("f", b"x", 0o644)]);
        let wrong = format!("sha256:{}", "0".repeat(64));
        match unpack_layer(&tar[..], &sb.layer, Some(&wrong)) {
            Err(UnpackError::DiffId { expected, actual }) => {
                assert_eq!(expected, wrong);
                assert_eq!(actual, super::super::store::sha256_digest(&tar));
            }
            other => panic!("expected diff id mismatch, got {other:?}"),
        }
    }

    #[test]
    fn dotdot_and_absolute_paths_are_refused() {
        let sb = Sandbox::new();
        let r = expect_refused(
            sb.unpack(&tar_of(&[E::File("../sentinel/evil", b"pwned", 0o644)])),
            "../sentinel/evil",
        );
        assert!(r.contains(".."), "{r}");
        let sb2 = Sandbox::new();
        expect_refused(
            sb2.unpack(&tar_of(&[E::File("a/../../sentinel/evil", b"x", 0o644)])),
            "a/../../sentinel/evil",
        );
        let abs = format!("{}/evil", sb.sentinel.display());
        let r = expect_refused(sb.unpack(&tar_of(&[E::File(&abs, b"x", 0o644)])), &abs);
        assert!(r.contains("absolute"), "{r}");
        sb.assert_sentinel_untouched();
        sb2.assert_sentinel_untouched();
    }

    #[test]
    fn writing_through_an_escaping_symlink_is_refused() {
        // Relative escape.
        let sb = Sandbox::new();
        let tar = tar_of(&[
            E::Symlink("link", "../sentinel"),
            E::File("link/evil", b"pwned", 0o644),
        ]);
        let r = expect_refused(sb.unpack(&tar), "link/evil");
        assert!(r.contains("outside the layer"), "{r}");
        sb.assert_sentinel_untouched();

        // Absolute target, through a chain of symlinks and a directory.
        let sb = Sandbox::new();
        let target = sb.sentinel.display().to_string();
        let tar = tar_of(&[
            E::Symlink("abs", &target),
            E::Symlink("hop", "abs"),
            E::Dir("d/"),
            E::File("hop/evil", b"pwned", 0o644),
        ]);
        let r = expect_refused(sb.unpack(&tar), "hop/evil");
        assert!(r.contains("would be followed outside"), "{r}");
        sb.assert_sentinel_untouched();

        // A directory entry through the symlink is refused too.
        let sb = Sandbox::new();
        let tar = tar_of(&[E::Symlink("up", "a/../.."), E::Dir("up/sentinel/newdir/")]);
        expect_refused(sb.unpack(&tar), "up/sentinel/newdir/");
        sb.assert_sentinel_untouched();
    }

    #[test]
    fn symlinks_that_stay_inside_are_followed_and_final_symlinks_replaced() {
        let sb = Sandbox::new();
        let evil = format!("{}/keep", sb.sentinel.display());
        let tar = tar_of(&[
            E::Dir("real/"),
            E::Symlink("alias", "./real/../real"),
            E::File("alias/through.txt", b"ok", 0o644),
            // A file entry over a symlink replaces the link; it never writes its target.
            E::Symlink("over", &evil),
            E::File("over", b"replaced", 0o644),
        ]);
        sb.unpack(&tar).unwrap();
        assert_eq!(fs::read(sb.layer.join("real/through.txt")).unwrap(), b"ok");
        let md = fs::symlink_metadata(sb.layer.join("over")).unwrap();
        assert!(md.is_file());
        assert_eq!(fs::read(sb.layer.join("over")).unwrap(), b"replaced");
        sb.assert_sentinel_untouched();
    }

    #[test]
    fn hard_links_outside_the_layer_are_refused() {
        let sb = Sandbox::new();
        let r = expect_refused(
            sb.unpack(&tar_of(&[E::Hardlink("h", "../sentinel/keep")])),
            "h",
        );
        assert!(r.contains("outside the layer"), "{r}");
        let abs = format!("{}/keep", sb.sentinel.display());
        expect_refused(sb.unpack(&tar_of(&[E::Hardlink("h2", &abs)])), "h2");
        // Through a symlink that points out.
        let tar = tar_of(&[E::Symlink("s", "../sentinel"), E::Hardlink("h3", "s/keep")]);
        expect_refused(sb.unpack(&tar), "h3");
        // To something that is not in this layer.
        let r = expect_refused(sb.unpack(&tar_of(&[E::Hardlink("h4", "etc/passwd")])), "h4");
        assert!(r.contains("does not exist in this layer"), "{r}");
        sb.assert_sentinel_untouched();
        assert_eq!(fs::metadata(sb.sentinel.join("keep")).unwrap().nlink(), 1);
    }

    fn is_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        if !is_root() {
            eprintln!("skipped: overlay whiteouts need root");
            return;
        }
        let sb = Sandbox::new();
        let tar = tar_of(&[
            E::File("etc/.wh.removed.conf", b"", 0o644),
            E::Dir("var/cache/"),
            E::File("var/cache/.wh..wh..opq", b"", 0o644),
            E::File("var/cache/new", b"n", 0o644),
        ]);
        sb.unpack(&tar).unwrap();
        let wh = fs::symlink_metadata(sb.layer.join("etc/removed.conf")).unwrap();
        assert!(wh.file_type().is_char_device());
        assert_eq!(wh.rdev(), 0);
        assert!(!sb.layer.join("etc/.wh.removed.conf").exists());
        let mut buf = [0u8; 8];
        let n = rustix::fs::getxattr(sb.layer.join("var/cache").as_path(), OPAQUE_XATTR, &mut buf)
            .unwrap();
        assert_eq!(&buf[..n], b"y");
        assert!(!sb.layer.join("var/cache/.wh..wh..opq").exists());
        assert_eq!(fs::read(sb.layer.join("var/cache/new")).unwrap(), b"n");
    }

    /// Stack two layers with a real overlayfs mount and look at the merged view.
    #[test]
    fn stacked_layers_honour_whiteouts_and_opaque_dirs() {
        if !is_root() {
            eprintln!("skipped: mounting overlayfs needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let lower = tmp.path().join("l0");
        let upper = tmp.path().join("l1");
        let merged = tmp.path().join("merged");
        for d in [&lower, &upper, &merged] {
            fs::create_dir(d).unwrap();
        }
        unpack_layer(
            &tar_of(&[
                E::File("etc/keep.conf", b"k", 0o644),
                E::File("etc/gone.conf", b"g", 0o644),
                E::File("cache/old1", b"1", 0o644),
                E::File("cache/old2", b"2", 0o644),
            ])[..],
            &lower,
            None,
        )
        .unwrap();
        unpack_layer(
            &tar_of(&[
                E::File("etc/.wh.gone.conf", b"", 0o644),
                E::Dir("cache/"),
                E::File("cache/.wh..wh..opq", b"", 0o644),
                E::File("cache/fresh", b"f", 0o644),
            ])[..],
            &upper,
            None,
        )
        .unwrap();
        let opts = format!("lowerdir={}:{}", upper.display(), lower.display());
        let status = std::process::Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(&merged)
            .status()
            .unwrap();
        assert!(status.success(), "mount overlay");
        let listing = |p: &str| {
            let mut v: Vec<String> = fs::read_dir(merged.join(p))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        let etc = listing("etc");
        let cache = listing("cache");
        let _ = std::process::Command::new("umount").arg(&merged).status();
        assert_eq!(etc, vec!["keep.conf"]);
        assert_eq!(cache, vec!["fresh"]);
    }

    #[test]
    fn device_nodes_are_created_only_as_root() {
        let sb = Sandbox::new();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_path("dev/null").unwrap();
        h.set_entry_type(tar::EntryType::Char);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        h.set_mode(0o666);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(0);
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
        sb.unpack(&b.into_inner().unwrap()).unwrap();
        let p = sb.layer.join("dev/null");
        if is_root() {
            let md = fs::symlink_metadata(&p).unwrap();
            assert!(md.file_type().is_char_device());
            assert_eq!(md.rdev(), rustix::fs::makedev(1, 3));
        } else {
            assert!(fs::symlink_metadata(&p).is_err());
        }
    }
}
