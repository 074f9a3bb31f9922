//! A writer (and a small reader) for the `newc` cpio format the Linux kernel unpacks as an
//! initramfs. Archives are reproducible: entries are written in sorted path order with parents
//! first, inode numbers follow that order, and every entry carries the same fixed mtime, so the
//! same inputs always give the same bytes.
//!
//! Layout of one entry: the 6-byte magic `070701`, thirteen 8-digit hex fields (ino, mode, uid,
//! gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize, check), the
//! NUL-terminated name padded so header + name is a multiple of 4, then the data padded to 4.
//! The archive ends with an entry named `TRAILER!!!`.

use std::collections::BTreeMap;
use std::io::{self, Write};

const MAGIC: &[u8; 6] = b"070701";
const HEADER_LEN: usize = 110;
const TRAILER: &str = "TRAILER!!!";
const MAX_PATH: usize = 4095;

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;
const S_IFMT: u32 = 0o170_000;

/// Why an archive could not be built, written or read.
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    /// The path cannot be stored.
    #[error("invalid archive path `{path}`: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The same path was added twice.
    #[error("`{0}` is already in the archive")]
    Duplicate(String),
    /// A path's parent is something other than a directory.
    #[error("cannot add `{path}`: `{parent}` is not a directory")]
    NotADirectory {
        /// The path being added.
        path: String,
        /// The parent that is not a directory.
        parent: String,
    },
    /// Permission bits outside `0o7777`.
    #[error("`{path}`: mode {mode:#o} has bits outside the permission bits 0o7777")]
    InvalidMode {
        /// The path being added.
        path: String,
        /// The mode given.
        mode: u32,
    },
    /// A file or link target larger than the format's 4 GiB limit.
    #[error("`{path}` is {size} bytes; newc entries hold at most 4 GiB")]
    TooLarge {
        /// The path being added.
        path: String,
        /// Its size.
        size: usize,
    },
    /// Writing the archive failed.
    #[error("could not write the archive")]
    Io(#[from] io::Error),
    /// Reading: the archive is damaged or not `newc`.
    #[error("not a valid newc archive at byte {offset}: {reason}")]
    Corrupt {
        /// Offset of the entry or field at fault.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
}

/// Ownership and permission bits of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits (`0o755`); the file type bits come from the entry kind.
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
}

impl Meta {
    /// Owned by root with the given permission bits.
    pub fn root(mode: u32) -> Self {
        Self {
            mode,
            uid: 0,
            gid: 0,
        }
    }
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A directory.
    Directory,
    /// A regular file with its contents.
    File(Vec<u8>),
    /// A symbolic link to the target.
    Symlink(String),
    /// A character device node.
    CharDevice {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
}

impl Node {
    fn type_bits(&self) -> u32 {
        match self {
            Self::Directory => S_IFDIR,
            Self::File(_) => S_IFREG,
            Self::Symlink(_) => S_IFLNK,
            Self::CharDevice { .. } => S_IFCHR,
        }
    }

    fn data(&self) -> &[u8] {
        match self {
            Self::File(data) => data,
            Self::Symlink(target) => target.as_bytes(),
            Self::Directory | Self::CharDevice { .. } => &[],
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    node: Node,
    meta: Meta,
    /// Created only because a child needed it; an explicit `add_dir` may replace it.
    implicit: bool,
}

/// An initramfs being assembled in memory. Paths are relative to the archive root (a leading
/// `/` is accepted and dropped); missing parent directories are created as root-owned `0755`.
#[derive(Debug, Clone)]
pub struct Archive {
    entries: BTreeMap<String, Entry>,
    mtime: u32,
}

impl Archive {
    /// An empty archive whose entries all carry `mtime` (seconds since the epoch; use
    /// `SOURCE_DATE_EPOCH` or 0 for reproducible output).
    pub fn new(mtime: u32) -> Self {
        Self {
            entries: BTreeMap::new(),
            mtime,
        }
    }

    /// Adds a directory.
    pub fn add_dir(&mut self, path: &str, meta: Meta) -> Result<(), CpioError> {
        self.insert(path, Node::Directory, meta)
    }

    /// Adds a regular file.
    pub fn add_file(
        &mut self,
        path: &str,
        data: impl Into<Vec<u8>>,
        meta: Meta,
    ) -> Result<(), CpioError> {
        self.insert(path, Node::File(data.into()), meta)
    }

    /// Adds a symbolic link pointing at `target` (stored as is; relative or absolute).
    pub fn add_symlink(&mut self, path: &str, target: &str, meta: Meta) -> Result<(), CpioError> {
        if target.is_empty() || target.contains('\0') {
            return Err(CpioError::InvalidPath {
                path: target.to_owned(),
                reason: "a link target must be non-empty and contain no NUL",
            });
        }
        self.insert(path, Node::Symlink(target.to_owned()), meta)
    }

    /// Adds a character device node (`/dev/console` is major 5, minor 1).
    pub fn add_char_device(
        &mut self,
        path: &str,
        major: u32,
        minor: u32,
        meta: Meta,
    ) -> Result<(), CpioError> {
        self.insert(path, Node::CharDevice { major, minor }, meta)
    }

    /// Number of entries, including implicitly created directories.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn insert(&mut self, path: &str, node: Node, meta: Meta) -> Result<(), CpioError> {
        let path = normalise(path)?;
        if meta.mode & !0o7777 != 0 {
            return Err(CpioError::InvalidMode {
                path,
                mode: meta.mode,
            });
        }
        if u32::try_from(node.data().len()).is_err() {
            return Err(CpioError::TooLarge {
                size: node.data().len(),
                path,
            });
        }
        self.ensure_parents(&path)?;
        match self.entries.get(&path) {
            Some(existing) if existing.implicit && node == Node::Directory => {}
            Some(_) => return Err(CpioError::Duplicate(path)),
            None => {}
        }
        self.entries.insert(
            path,
            Entry {
                node,
                meta,
                implicit: false,
            },
        );
        Ok(())
    }

    fn ensure_parents(&mut self, path: &str) -> Result<(), CpioError> {
        let mut end = 0;
        while let Some(offset) = path[end..].find('/') {
            end += offset;
            let parent = &path[..end];
            match self.entries.get(parent) {
                Some(entry) if entry.node == Node::Directory => {}
                Some(_) => {
                    return Err(CpioError::NotADirectory {
                        path: path.to_owned(),
                        parent: parent.to_owned(),
                    });
                }
                None => {
                    self.entries.insert(
                        parent.to_owned(),
                        Entry {
                            node: Node::Directory,
                            meta: Meta::root(0o755),
                            implicit: true,
                        },
                    );
                }
            }
            end += 1;
        }
        Ok(())
    }

    /// Writes the archive; returns the number of bytes written.
    pub fn write_to<W: Write>(&self, mut out: W) -> Result<u64, CpioError> {
        let mut written = 0u64;
        for (index, (path, entry)) in self.entries.iter().enumerate() {
            let ino = u32::try_from(index + 1).map_err(|_| too_many())?;
            let subdirs = self.subdirectory_count(path);
            let nlink = match entry.node {
                Node::Directory => 2 + subdirs,
                _ => 1,
            };
            let (rdev_major, rdev_minor) = match entry.node {
                Node::CharDevice { major, minor } => (major, minor),
                _ => (0, 0),
            };
            let header = Header {
                ino,
                mode: entry.node.type_bits() | entry.meta.mode,
                uid: entry.meta.uid,
                gid: entry.meta.gid,
                nlink,
                mtime: self.mtime,
                rdev_major,
                rdev_minor,
            };
            written += write_entry(&mut out, &header, path, entry.node.data())?;
        }
        let trailer = Header {
            ino: 0,
            mode: 0,
            uid: 0,
            gid: 0,
            nlink: 1,
            mtime: 0,
            rdev_major: 0,
            rdev_minor: 0,
        };
        written += write_entry(&mut out, &trailer, TRAILER, &[])?;
        Ok(written)
    }

    /// The archive as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing to a Vec cannot fail, and sizes were checked when entries were added.
        let _ = self.write_to(&mut out);
        out
    }

    fn subdirectory_count(&self, dir: &str) -> u32 {
        let prefix = format!("{dir}/");
        let count = self
            .entries
            .range(prefix.clone()..)
            .take_while(|(path, _)| path.starts_with(&prefix))
            .filter(|(path, entry)| {
                entry.node == Node::Directory && !path[prefix.len()..].contains('/')
            })
            .count();
        u32::try_from(count).unwrap_or(u32::MAX)
    }
}

fn too_many() -> CpioError {
    CpioError::Io(io::Error::other("more than 2^32 entries"))
}

fn normalise(path: &str) -> Result<String, CpioError> {
    let invalid = |reason| CpioError::InvalidPath {
        path: path.to_owned(),
        reason,
    };
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    if trimmed.is_empty() {
        return Err(invalid("the archive root cannot be added"));
    }
    if trimmed.len() > MAX_PATH || trimmed.contains('\0') {
        return Err(invalid("too long or contains NUL"));
    }
    if trimmed
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(invalid("empty, `.` or `..` components are not allowed"));
    }
    if trimmed == TRAILER {
        return Err(invalid("the name is reserved for the archive trailer"));
    }
    Ok(trimmed.to_owned())
}

struct Header {
    ino: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    mtime: u32,
    rdev_major: u32,
    rdev_minor: u32,
}

fn write_entry<W: Write>(
    out: &mut W,
    header: &Header,
    name: &str,
    data: &[u8],
) -> Result<u64, CpioError> {
    let name_size = u32::try_from(name.len() + 1).map_err(|_| too_many())?;
    let file_size = u32::try_from(data.len()).map_err(|_| too_many())?;
    let fields = [
        header.ino,
        header.mode,
        header.uid,
        header.gid,
        header.nlink,
        header.mtime,
        file_size,
        0,
        0,
        header.rdev_major,
        header.rdev_minor,
        name_size,
        0,
    ];
    let mut head = Vec::with_capacity(HEADER_LEN + name.len() + 4);
    head.extend_from_slice(MAGIC);
    for field in fields {
        head.extend_from_slice(format!("{field:08x}").as_bytes());
    }
    head.extend_from_slice(name.as_bytes());
    head.push(0);
    head.resize(head.len().next_multiple_of(4), 0);
    out.write_all(&head)?;
    out.write_all(data)?;
    let padding = data.len().next_multiple_of(4) - data.len();
    out.write_all(&[0; 3][..padding])?;
    Ok(u64::try_from(head.len() + data.len() + padding).unwrap_or(u64::MAX))
}

/// One entry read back from an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadEntry {
    /// Path inside the archive.
    pub path: String,
    /// The full mode: type and permission bits.
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Inode number.
    pub ino: u32,
    /// Link count.
    pub nlink: u32,
    /// Modification time.
    pub mtime: u32,
    /// What the entry is, with its contents.
    pub node: Node,
}

/// Reads a `newc` archive (up to its trailer), checking every header and bound: for
/// inspecting built images and for tests.
pub fn read(archive: &[u8]) -> Result<Vec<ReadEntry>, CpioError> {
    let mut entries = Vec::new();
    let mut offset = 0;
    loop {
        let corrupt = |offset: usize, reason: String| CpioError::Corrupt { offset, reason };
        let header = archive
            .get(offset..offset + HEADER_LEN)
            .ok_or_else(|| corrupt(offset, "truncated header".into()))?;
        if &header[..6] != MAGIC {
            return Err(corrupt(offset, "bad magic (expected 070701)".into()));
        }
        let mut fields = [0u32; 13];
        for (index, slot) in fields.iter_mut().enumerate() {
            let start = 6 + index * 8;
            let text = std::str::from_utf8(&header[start..start + 8])
                .ok()
                .filter(|t| t.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| corrupt(offset + start, "header field is not hex".into()))?;
            *slot = u32::from_str_radix(text, 16)
                .map_err(|e| corrupt(offset + start, e.to_string()))?;
        }
        let [
            ino,
            mode,
            uid,
            gid,
            nlink,
            mtime,
            file_size,
            _,
            _,
            rdev_major,
            rdev_minor,
            name_size,
            _,
        ] = fields;
        let name_size = usize::try_from(name_size).map_err(|e| corrupt(offset, e.to_string()))?;
        let file_size = usize::try_from(file_size).map_err(|e| corrupt(offset, e.to_string()))?;
        let name_start = offset + HEADER_LEN;
        let name = archive
            .get(name_start..name_start + name_size)
            .ok_or_else(|| corrupt(name_start, "truncated name".into()))?;
        let Some((0, name)) = name.split_last().map(|(last, rest)| (*last, rest)) else {
            return Err(corrupt(name_start, "name is not NUL-terminated".into()));
        };
        let name = std::str::from_utf8(name)
            .map_err(|_| corrupt(name_start, "name is not UTF-8".into()))?
            .to_owned();
        let data_start = (name_start + name_size).next_multiple_of(4);
        let data = archive
            .get(data_start..data_start + file_size)
            .ok_or_else(|| corrupt(data_start, format!("truncated data of `{name}`")))?;
        offset = (data_start + file_size).next_multiple_of(4);
        if name == TRAILER {
            return Ok(entries);
        }
        let node = match mode & S_IFMT {
            S_IFDIR => Node::Directory,
            S_IFREG => Node::File(data.to_vec()),
            S_IFLNK => Node::Symlink(
                String::from_utf8(data.to_vec())
                    .map_err(|_| corrupt(data_start, "link target is not UTF-8".into()))?,
            ),
            S_IFCHR => Node::CharDevice {
                major: rdev_major,
                minor: rdev_minor,
            },
            other => return Err(corrupt(offset, format!("unsupported file type {other:#o}"))),
        };
        entries.push(ReadEntry {
            path: name,
            mode,
            uid,
            gid,
            ino,
            nlink,
            mtime,
            node,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Archive {
        let mut archive = Archive::new(1_700_000_000);
        // Added out of order on purpose: output order must not depend on insertion order.
        archive
            .add_file(
                "/usr/bin/skiff",
                b"\x7fELF binary".to_vec(),
                Meta::root(0o755),
            )
            .unwrap();
        archive
            .add_symlink("init", "usr/bin/skiff", Meta::root(0o777))
            .unwrap();
        archive
            .add_char_device("dev/console", 5, 1, Meta::root(0o600))
            .unwrap();
        archive.add_dir("dev", Meta::root(0o755)).unwrap();
        archive
            .add_file(
                "etc/skiff/trusted.pub",
                "key\n",
                Meta {
                    mode: 0o640,
                    uid: 0,
                    gid: 42,
                },
            )
            .unwrap();
        archive.add_dir("tmp", Meta::root(0o1777)).unwrap();
        archive
    }

    #[test]
    fn builds_are_byte_identical_whatever_the_insertion_order() {
        let first = sample().to_bytes();
        let mut reordered = Archive::new(1_700_000_000);
        reordered.add_dir("tmp", Meta::root(0o1777)).unwrap();
        reordered
            .add_file(
                "etc/skiff/trusted.pub",
                "key\n",
                Meta {
                    mode: 0o640,
                    uid: 0,
                    gid: 42,
                },
            )
            .unwrap();
        reordered.add_dir("dev", Meta::root(0o755)).unwrap();
        reordered
            .add_char_device("dev/console", 5, 1, Meta::root(0o600))
            .unwrap();
        reordered
            .add_symlink("init", "usr/bin/skiff", Meta::root(0o777))
            .unwrap();
        reordered
            .add_file(
                "usr/bin/skiff",
                b"\x7fELF binary".to_vec(),
                Meta::root(0o755),
            )
            .unwrap();
        assert_eq!(first, reordered.to_bytes());
        assert_eq!(first, sample().to_bytes());
        assert_eq!(first.len() % 4, 0);
        assert!(first.starts_with(b"070701"));
    }

    #[test]
    fn reads_back_what_was_written_parents_first() {
        let bytes = sample().to_bytes();
        let entries = read(&bytes).unwrap();
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "dev",
                "dev/console",
                "etc",
                "etc/skiff",
                "etc/skiff/trusted.pub",
                "init",
                "tmp",
                "usr",
                "usr/bin",
                "usr/bin/skiff"
            ]
        );
        let inodes: Vec<u32> = entries.iter().map(|e| e.ino).collect();
        assert_eq!(inodes, (1..=10).collect::<Vec<u32>>());
        let by_path = |p: &str| entries.iter().find(|e| e.path == p).unwrap();
        assert_eq!(by_path("dev/console").mode, 0o020_600);
        assert_eq!(
            by_path("dev/console").node,
            Node::CharDevice { major: 5, minor: 1 }
        );
        assert_eq!(by_path("init").mode, 0o120_777);
        assert_eq!(by_path("init").node, Node::Symlink("usr/bin/skiff".into()));
        assert_eq!(by_path("tmp").mode, 0o041_777);
        assert_eq!(by_path("usr").mode, 0o040_755, "implicit parents are 0755");
        assert_eq!(by_path("usr").nlink, 3, "one subdirectory");
        let key = by_path("etc/skiff/trusted.pub");
        assert_eq!((key.mode, key.uid, key.gid), (0o100_640, 0, 42));
        assert_eq!(key.node, Node::File(b"key\n".to_vec()));
        assert!(entries.iter().all(|e| e.mtime == 1_700_000_000));
    }

    #[test]
    fn header_layout_matches_newc() {
        let mut archive = Archive::new(0x10);
        archive.add_file("ab", "xyz", Meta::root(0o644)).unwrap();
        let bytes = archive.to_bytes();
        let expected_header = concat!(
            "070701", "00000001", "000081a4", "00000000", "00000000", "00000001", "00000010",
            "00000003", "00000000", "00000000", "00000000", "00000000", "00000003", "00000000"
        );
        assert_eq!(&bytes[..110], expected_header.as_bytes());
        // 110 + "ab\0" = 113, padded to 116; data "xyz" padded to 4.
        assert_eq!(&bytes[110..116], b"ab\0\0\0\0");
        assert_eq!(&bytes[116..120], b"xyz\0");
        assert_eq!(&bytes[120..126], b"070701");
        let trailer_name = 120 + 110;
        assert_eq!(&bytes[trailer_name..trailer_name + 11], b"TRAILER!!!\0");
        assert_eq!(bytes.len(), (trailer_name + 11).next_multiple_of(4));
    }

    #[test]
    fn refuses_bad_paths_and_conflicts() {
        let mut archive = Archive::new(0);
        for bad in ["", "/", "a/../b", "./a", "a//b", "TRAILER!!!"] {
            assert!(
                matches!(
                    archive.add_file(bad, "", Meta::root(0o644)),
                    Err(CpioError::InvalidPath { .. })
                ),
                "{bad}"
            );
        }
        archive.add_file("bin", "x", Meta::root(0o755)).unwrap();
        assert!(matches!(
            archive.add_file("bin/sh", "", Meta::root(0o755)),
            Err(CpioError::NotADirectory { .. })
        ));
        assert!(matches!(
            archive.add_file("bin", "", Meta::root(0o755)),
            Err(CpioError::Duplicate(_))
        ));
        assert!(matches!(
            archive.add_dir("etc", Meta::root(0o100_755)),
            Err(CpioError::InvalidMode { .. })
        ));
        // An explicit directory may refine one created implicitly, but only once.
        archive
            .add_file("var/lib/x", "", Meta::root(0o644))
            .unwrap();
        archive.add_dir("var", Meta::root(0o700)).unwrap();
        assert!(archive.add_dir("var", Meta::root(0o700)).is_err());
        let entries = read(&archive.to_bytes()).unwrap();
        assert_eq!(
            entries.iter().find(|e| e.path == "var").unwrap().mode,
            0o040_700
        );
    }

    #[test]
    fn reader_refuses_damaged_archives() {
        let bytes = sample().to_bytes();
        for cut in [0, 50, 120, bytes.len() - 8] {
            assert!(
                matches!(read(&bytes[..cut]), Err(CpioError::Corrupt { .. })),
                "{cut}"
            );
        }
        let mut bad_magic = bytes.clone();
        bad_magic[5] = b'2';
        assert!(read(&bad_magic).unwrap_err().to_string().contains("magic"));
        let mut bad_hex = bytes;
        bad_hex[7] = b'z';
        assert!(read(&bad_hex).unwrap_err().to_string().contains("hex"));
    }
}
