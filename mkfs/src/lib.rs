//! A small ext4 formatter in pure Rust, for a node's state disk: [`format`] writes a new,
//! empty, journalled ext4 filesystem onto anything that is `Write + Seek` (a block device or a
//! file), and e2fsck finds nothing to fix in it.
//!
//! What it makes (the features mke2fs' ext4 defaults use, less `flex_bg` and `resize_inode`):
//! `has_journal ext_attr dir_index filetype extent 64bit sparse_super large_file huge_file
//! dir_nlink extra_isize metadata_csum`, 4 KiB blocks, 256-byte inodes, a root directory, a
//! 16 KiB lost+found and a jbd2 journal inode sized as mke2fs sizes it (at most 256 MiB).
//!
//! It is lazy where mke2fs is lazy on a device that reads back zeros: inode tables are not
//! written (each group's `itable_unused` says none is in use and the kernel zeroes them in the
//! background after the first mount), and the journal's blocks are not zeroed; its first
//! transaction number is taken from the caller's random seed, so stale blocks from an older
//! journal never pass for new ones. Group 0's metadata, with the primary superblock, is written
//! last: an interrupted format leaves no ext4 magic behind.

mod crc32c;
pub mod layout;

use std::io::{self, Seek, SeekFrom, Write};

use layout::{BLOCK, BLOCKS_PER_GROUP, DESC_SIZE, FIRST_INO, INODE_SIZE};
pub use layout::{Layout, MIN_BYTES, Run, plan};

/// Why a device was not formatted.
#[derive(Debug, thiserror::Error)]
pub enum MkfsError {
    #[error(
        "device too small for ext4: {} KiB; give the state disk at least {} MiB",
        size / 1024,
        min >> 20
    )]
    TooSmall { size: u64, min: u64 },
    #[error("device too large: {} GiB; at most {} GiB is supported", size >> 30, max >> 30)]
    TooLarge { size: u64, max: u64 },
    #[error("volume label {0:?} is longer than 16 bytes; choose a shorter one")]
    Label(String),
    #[error("cannot write the filesystem: {0}")]
    Io(#[from] io::Error),
}

/// What the caller chooses.
#[derive(Debug, Clone)]
pub struct Options {
    /// Up to 16 bytes.
    pub label: String,
    /// The filesystem's UUID; random in practice.
    pub uuid: [u8; 16],
    /// Seed of directory hashing and of the journal's first transaction number; random too.
    pub hash_seed: [u8; 16],
    /// Creation time, seconds since the Unix epoch.
    pub time: u32,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub bytes: u64,
    pub blocks: u64,
    pub groups: u64,
    pub inodes: u64,
    pub journal_blocks: u64,
    pub free_blocks: u64,
}

/// Whether `head` (at least the first 1082 bytes of a device) holds an ext2/3/4 superblock.
pub fn has_ext4_magic(head: &[u8]) -> bool {
    head.get(1080..1082) == Some(&[0x53, 0xef][..])
}

/// Formats the whole of `dev` (its size is where `SeekFrom::End(0)` lands) and flushes it.
/// The caller syncs the device if it needs the data on stable storage.
pub fn format<D: Write + Seek>(dev: &mut D, options: &Options) -> Result<Summary, MkfsError> {
    if options.label.len() > 16 {
        return Err(MkfsError::Label(options.label.clone()));
    }
    let bytes = dev.seek(SeekFrom::End(0))?;
    let layout = plan(bytes)?;
    let fs = Fs::new(&layout, options);
    let gdt = fs.descriptors();
    // Every group but the first, then the root directory, lost+found and the journal's
    // superblock, then group 0 with the primary superblock.
    for g in 1..layout.groups {
        let head = fs.group_head(g, &gdt);
        write_at(dev, layout.group(g).start, &head)?;
    }
    write_at(dev, layout.root_dir, &fs.root_block())?;
    write_at(dev, layout.lost_found.start, &fs.lost_found_blocks())?;
    write_at(dev, layout.journal[0].start, &fs.journal_superblock())?;
    dev.flush()?;
    let mut head = fs.group_head(0, &gdt);
    head.extend_from_slice(&fs.first_inode_block());
    write_at(dev, 0, &head)?;
    dev.flush()?;
    Ok(Summary {
        bytes,
        blocks: layout.blocks,
        groups: layout.groups,
        inodes: layout.inodes(),
        journal_blocks: layout.journal_len(),
        free_blocks: fs.free_blocks.iter().sum(),
    })
}

fn write_at<D: Write + Seek>(dev: &mut D, block: u64, data: &[u8]) -> io::Result<()> {
    dev.seek(SeekFrom::Start(block * BLOCK))?;
    dev.write_all(data)
}

fn put16(buf: &mut [u8], at: usize, v: u16) {
    buf[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
fn put32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn be32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
/// The low 32 bits (the `_lo` half of a split field).
#[allow(clippy::cast_possible_truncation)]
fn lo(v: u64) -> u32 {
    v as u32
}
/// The high 32 bits.
#[allow(clippy::cast_possible_truncation)]
fn hi(v: u64) -> u32 {
    (v >> 32) as u32
}
/// A value known to fit 16 bits (counts within one group).
fn u16_of(v: u64) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}
#[allow(clippy::cast_possible_truncation)]
fn lo16(v: u32) -> u16 {
    v as u16
}

/// Sets bits `from..to` of a bitmap: whole bytes at once, the ragged ends bit by bit.
fn set_bits(bits: &mut [u8], from: u64, to: u64) {
    let (from, to) = (
        usize::try_from(from).unwrap_or(0),
        usize::try_from(to).unwrap_or(0),
    );
    if from >= to {
        return;
    }
    let mut i = from;
    while i < to && i % 8 != 0 {
        bits[i / 8] |= 1 << (i % 8);
        i += 1;
    }
    let whole = (to - i) / 8;
    bits[i / 8..i / 8 + whole].fill(0xff);
    i += whole * 8;
    while i < to {
        bits[i / 8] |= 1 << (i % 8);
        i += 1;
    }
}

const ROOT_INO: u32 = 2;
const JOURNAL_INO: u32 = 8;
const LOST_FOUND_INO: u32 = 11;
const EXTENTS_FL: u32 = 0x8_0000;
const S_IFDIR: u16 = 0o040_000;
const S_IFREG: u16 = 0o100_000;
const FT_DIR: u8 = 2;
const DIR_TAIL: usize = 12;

const COMPAT: u32 = 0x4 | 0x8 | 0x20; // has_journal, ext_attr, dir_index
const INCOMPAT: u32 = 0x2 | 0x40 | 0x80; // filetype, extents, 64bit
// sparse_super, large_file, huge_file, dir_nlink, extra_isize, metadata_csum
const RO_COMPAT: u32 = 0x1 | 0x2 | 0x8 | 0x20 | 0x40 | 0x400;

/// The filesystem being built: layout, options and the derived checksum seed.
struct Fs<'a> {
    layout: &'a Layout,
    options: &'a Options,
    csum_seed: u32,
    /// Free blocks per group, counted from the bitmaps.
    free_blocks: Vec<u64>,
    bitmaps: Vec<Vec<u8>>,
    inode_bitmaps: [Vec<u8>; 2],
}

impl<'a> Fs<'a> {
    fn new(layout: &'a Layout, options: &'a Options) -> Self {
        let csum_seed = crc32c::update(!0, &options.uuid);
        let runs = layout.data_runs();
        let mut bitmaps = Vec::new();
        let mut free_blocks = Vec::new();
        for g in 0..layout.groups {
            let group = layout.group(g);
            let mut bits = vec![0u8; usize::try_from(BLOCK).unwrap_or(4096)];
            set_bits(&mut bits, 0, group.data_start - group.start);
            for run in &runs {
                let from = run.start.max(group.start);
                let to = (run.start + run.len).min(group.start + group.blocks);
                if from < to {
                    set_bits(&mut bits, from - group.start, to - group.start);
                }
            }
            set_bits(&mut bits, group.blocks, BLOCKS_PER_GROUP);
            let used: u64 = bits.iter().map(|b| u64::from(b.count_ones())).sum();
            free_blocks.push(BLOCKS_PER_GROUP - used);
            bitmaps.push(bits);
        }
        let ipg = layout.inodes_per_group;
        let inode_bitmaps = [u64::from(FIRST_INO), 0].map(|used| {
            let mut bits = vec![0u8; usize::try_from(BLOCK).unwrap_or(4096)];
            set_bits(&mut bits, 0, used);
            set_bits(&mut bits, ipg, BLOCKS_PER_GROUP);
            bits
        });
        Self {
            layout,
            options,
            csum_seed,
            free_blocks,
            bitmaps,
            inode_bitmaps,
        }
    }

    fn free_inodes(&self, g: u64) -> u64 {
        let ipg = self.layout.inodes_per_group;
        if g == 0 {
            ipg - u64::from(FIRST_INO)
        } else {
            ipg
        }
    }

    /// Group 0's inode bitmap (the reserved inodes in use) or any other group's (none).
    fn inode_bitmap(&self, g: u64) -> &[u8] {
        &self.inode_bitmaps[usize::from(g != 0)]
    }

    /// The 1024-byte superblock as stored in group `g`.
    fn superblock(&self, g: u64) -> Vec<u8> {
        let l = self.layout;
        let o = self.options;
        let mut sb = vec![0u8; 1024];
        let free_blocks: u64 = self.free_blocks.iter().sum();
        let free_inodes = l.inodes() - u64::from(FIRST_INO);
        put32(&mut sb, 0x00, lo(l.inodes()));
        put32(&mut sb, 0x04, lo(l.blocks));
        put32(&mut sb, 0x08, lo(l.reserved_blocks));
        put32(&mut sb, 0x0C, lo(free_blocks));
        put32(&mut sb, 0x10, lo(free_inodes));
        put32(&mut sb, 0x14, 0); // first data block
        put32(&mut sb, 0x18, 2); // 1024 << 2
        put32(&mut sb, 0x1C, 2);
        put32(&mut sb, 0x20, lo(BLOCKS_PER_GROUP));
        put32(&mut sb, 0x24, lo(BLOCKS_PER_GROUP));
        put32(&mut sb, 0x28, lo(l.inodes_per_group));
        put32(&mut sb, 0x30, o.time); // write time
        put16(&mut sb, 0x36, 0xFFFF); // max mount count: -1, no forced checks
        put16(&mut sb, 0x38, 0xEF53);
        put16(&mut sb, 0x3A, 1); // clean
        put16(&mut sb, 0x3C, 1); // errors: continue
        put32(&mut sb, 0x40, o.time); // last check
        put32(&mut sb, 0x4C, 1); // dynamic revision
        put32(&mut sb, 0x54, FIRST_INO);
        put16(&mut sb, 0x58, u16_of(INODE_SIZE));
        put16(&mut sb, 0x5A, u16_of(g));
        put32(&mut sb, 0x5C, COMPAT);
        put32(&mut sb, 0x60, INCOMPAT);
        put32(&mut sb, 0x64, RO_COMPAT);
        sb[0x68..0x78].copy_from_slice(&o.uuid);
        sb[0x78..0x78 + o.label.len()].copy_from_slice(o.label.as_bytes());
        put32(&mut sb, 0xE0, JOURNAL_INO);
        sb[0xEC..0xFC].copy_from_slice(&o.hash_seed);
        sb[0xFC] = 1; // half_md4
        sb[0xFD] = 1; // s_jnl_blocks holds a copy of the journal inode's blocks
        put16(&mut sb, 0xFE, u16_of(DESC_SIZE));
        put32(&mut sb, 0x100, 0x4 | 0x8); // user_xattr, acl
        put32(&mut sb, 0x108, o.time); // mkfs time
        let journal = self.journal_inode();
        sb[0x10C..0x10C + 60].copy_from_slice(&journal[0x28..0x28 + 60]);
        put32(&mut sb, 0x10C + 60, hi(self.journal_bytes()));
        put32(&mut sb, 0x10C + 64, lo(self.journal_bytes()));
        put32(&mut sb, 0x150, hi(l.blocks));
        put32(&mut sb, 0x154, hi(l.reserved_blocks));
        put32(&mut sb, 0x158, hi(free_blocks));
        put16(&mut sb, 0x15C, 32); // min extra isize
        put16(&mut sb, 0x15E, 32); // want extra isize
        put32(&mut sb, 0x160, 1); // signed directory hash
        sb[0x175] = 1; // checksum type: crc32c
        let csum = crc32c::update(!0, &sb[..0x3FC]);
        put32(&mut sb, 0x3FC, csum);
        sb
    }

    fn descriptors(&self) -> Vec<u8> {
        let l = self.layout;
        let mut gdt = vec![0u8; usize::try_from(l.gdt_blocks * BLOCK).unwrap_or(0)];
        let ipg_bytes = usize::try_from(l.inodes_per_group / 8).unwrap_or(0);
        for g in 0..l.groups {
            let group = l.group(g);
            let at = usize::try_from(g * DESC_SIZE).unwrap_or(0);
            let d = &mut gdt[at..at + 64];
            put32(d, 0x00, lo(group.block_bitmap));
            put32(d, 0x04, lo(group.inode_bitmap));
            put32(d, 0x08, lo(group.inode_table));
            let free = self.free_blocks[usize::try_from(g).unwrap_or(0)];
            put16(d, 0x0C, u16_of(free));
            put16(d, 0x0E, u16_of(self.free_inodes(g)));
            put16(d, 0x10, if g == 0 { 2 } else { 0 }); // directories
            let bb = &self.bitmaps[usize::try_from(g).unwrap_or(0)];
            let bb_csum = crc32c::update(self.csum_seed, bb);
            let ib_csum = crc32c::update(self.csum_seed, &self.inode_bitmap(g)[..ipg_bytes]);
            put16(d, 0x18, lo16(bb_csum));
            put16(d, 0x1A, lo16(ib_csum));
            put16(d, 0x1C, u16_of(self.free_inodes(g))); // itable unused
            put32(d, 0x20, hi(group.block_bitmap));
            put32(d, 0x24, hi(group.inode_bitmap));
            put32(d, 0x28, hi(group.inode_table));
            put16(d, 0x38, lo16(bb_csum >> 16));
            put16(d, 0x3A, lo16(ib_csum >> 16));
            let mut crc = crc32c::update(self.csum_seed, &lo(g).to_le_bytes());
            crc = crc32c::update(crc, d);
            put16(d, 0x1E, lo16(crc));
        }
        gdt
    }

    /// From the group's first block through its inode bitmap.
    fn group_head(&self, g: u64, gdt: &[u8]) -> Vec<u8> {
        let group = self.layout.group(g);
        let mut out = Vec::with_capacity(
            usize::try_from((group.inode_table - group.start) * BLOCK).unwrap_or(0),
        );
        if group.has_super {
            let mut first = vec![0u8; usize::try_from(BLOCK).unwrap_or(4096)];
            let at = if g == 0 { 1024 } else { 0 };
            first[at..at + 1024].copy_from_slice(&self.superblock(g));
            out.extend_from_slice(&first);
            out.extend_from_slice(gdt);
        }
        out.extend_from_slice(&self.bitmaps[usize::try_from(g).unwrap_or(0)]);
        out.extend_from_slice(self.inode_bitmap(g));
        out
    }

    fn inode_seed(&self, ino: u32) -> u32 {
        let crc = crc32c::update(self.csum_seed, &ino.to_le_bytes());
        crc32c::update(crc, &0u32.to_le_bytes()) // generation 0
    }

    /// A 256-byte inode with extents `runs` (at most four) and its checksum.
    fn inode(&self, ino: u32, mode: u16, links: u16, size: u64, runs: &[Run]) -> Vec<u8> {
        let t = self.options.time;
        let mut i = vec![0u8; usize::try_from(INODE_SIZE).unwrap_or(256)];
        put16(&mut i, 0x00, mode);
        put32(&mut i, 0x04, lo(size));
        put32(&mut i, 0x08, t);
        put32(&mut i, 0x0C, t);
        put32(&mut i, 0x10, t);
        put16(&mut i, 0x1A, links);
        let sectors = runs.iter().map(|r| r.len).sum::<u64>() * (BLOCK / 512);
        put32(&mut i, 0x1C, lo(sectors));
        put32(&mut i, 0x20, EXTENTS_FL);
        // Extent header, then one extent per run.
        put16(&mut i, 0x28, 0xF30A);
        put16(&mut i, 0x2A, u16_of(runs.len() as u64));
        put16(&mut i, 0x2C, 4);
        let mut logical = 0u64;
        for (n, run) in runs.iter().enumerate() {
            let at = 0x34 + n * 12;
            put32(&mut i, at, lo(logical));
            put16(&mut i, at + 4, u16_of(run.len));
            put16(&mut i, at + 6, lo16(hi(run.start)));
            put32(&mut i, at + 8, lo(run.start));
            logical += run.len;
        }
        put32(&mut i, 0x6C, hi(size));
        put16(&mut i, 0x74, lo16(hi(sectors)));
        put16(&mut i, 0x80, 32); // extra isize
        put32(&mut i, 0x90, t); // creation time
        let csum = crc32c::update(self.inode_seed(ino), &i);
        put16(&mut i, 0x7C, lo16(csum));
        put16(&mut i, 0x82, lo16(csum >> 16));
        i
    }

    fn journal_bytes(&self) -> u64 {
        self.layout.journal_len() * BLOCK
    }

    fn journal_inode(&self) -> Vec<u8> {
        let size = self.journal_bytes();
        self.inode(JOURNAL_INO, S_IFREG | 0o600, 1, size, &self.layout.journal)
    }

    /// Inodes 1 to 16: the root directory, the journal and lost+found; the rest zero.
    fn first_inode_block(&self) -> Vec<u8> {
        let mut block = vec![0u8; usize::try_from(BLOCK).unwrap_or(4096)];
        let slot = |ino: u32| usize::try_from(u64::from(ino - 1) * INODE_SIZE).unwrap_or(0);
        let root = Run {
            start: self.layout.root_dir,
            len: 1,
        };
        let lf = self.layout.lost_found;
        let inodes = [
            (
                ROOT_INO,
                self.inode(ROOT_INO, S_IFDIR | 0o755, 3, BLOCK, &[root]),
            ),
            (JOURNAL_INO, self.journal_inode()),
            (
                LOST_FOUND_INO,
                self.inode(LOST_FOUND_INO, S_IFDIR | 0o700, 2, lf.len * BLOCK, &[lf]),
            ),
        ];
        for (ino, bytes) in inodes {
            block[slot(ino)..slot(ino) + bytes.len()].copy_from_slice(&bytes);
        }
        block
    }

    /// One directory block: `entries` (inode, name), the last stretched to the checksum tail.
    fn dir_block(&self, owner: u32, entries: &[(u32, &str)]) -> Vec<u8> {
        let size = usize::try_from(BLOCK).unwrap_or(4096);
        let mut b = vec![0u8; size];
        let end = size - DIR_TAIL;
        let mut at = 0;
        for (n, (ino, name)) in entries.iter().enumerate() {
            let len = (8 + name.len()).div_ceil(4) * 4;
            let rec = if n + 1 == entries.len() {
                end - at
            } else {
                len
            };
            put32(&mut b, at, *ino);
            put16(&mut b, at + 4, u16_of(rec as u64));
            b[at + 6] = u8::try_from(name.len()).unwrap_or(0);
            b[at + 7] = if *ino == 0 { 0 } else { FT_DIR };
            b[at + 8..at + 8 + name.len()].copy_from_slice(name.as_bytes());
            at += rec;
        }
        if entries.is_empty() {
            put16(&mut b, 4, u16_of(end as u64));
        }
        put16(&mut b, end + 4, u16_of(DIR_TAIL as u64));
        b[end + 7] = 0xDE;
        let csum = crc32c::update(self.inode_seed(owner), &b[..end]);
        put32(&mut b, end + 8, csum);
        b
    }

    fn root_block(&self) -> Vec<u8> {
        self.dir_block(
            ROOT_INO,
            &[
                (ROOT_INO, "."),
                (ROOT_INO, ".."),
                (LOST_FOUND_INO, "lost+found"),
            ],
        )
    }

    fn lost_found_blocks(&self) -> Vec<u8> {
        let mut out = self.dir_block(LOST_FOUND_INO, &[(LOST_FOUND_INO, "."), (ROOT_INO, "..")]);
        for _ in 1..self.layout.lost_found.len {
            out.extend_from_slice(&self.dir_block(LOST_FOUND_INO, &[]));
        }
        out
    }

    /// The jbd2 superblock (v2, big-endian), empty: nothing to replay.
    fn journal_superblock(&self) -> Vec<u8> {
        let mut j = vec![0u8; usize::try_from(BLOCK).unwrap_or(4096)];
        let seed = &self.options.hash_seed;
        let sequence = u32::from_le_bytes([seed[0], seed[5], seed[10], seed[15]]).max(1);
        be32(&mut j, 0x00, 0xC03B_3998);
        be32(&mut j, 0x04, 4); // superblock v2
        be32(&mut j, 0x0C, lo(BLOCK));
        be32(&mut j, 0x10, lo(self.layout.journal_len()));
        be32(&mut j, 0x14, 1); // first log block
        be32(&mut j, 0x18, sequence);
        j[0x30..0x40].copy_from_slice(&self.options.uuid);
        be32(&mut j, 0x40, 1); // one user: this filesystem
        j
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_bits_marks_exactly_the_range() {
        for (from, to) in [
            (0, 0),
            (0, 11),
            (3, 5),
            (5, 64),
            (7, 9),
            (8, 16),
            (100, 4000),
            (9, 32768),
        ] {
            let mut bits = vec![0u8; 4096];
            set_bits(&mut bits, from, to);
            for i in 0..32768u64 {
                let set = bits[(i / 8) as usize] & (1 << (i % 8)) != 0;
                assert_eq!(set, (from..to).contains(&i), "bit {i} of {from}..{to}");
            }
        }
    }

    #[test]
    fn free_counts_add_up() {
        let layout = plan(20 << 30).unwrap();
        let options = Options {
            label: String::new(),
            uuid: [1; 16],
            hash_seed: [2; 16],
            time: 0,
        };
        let fs = Fs::new(&layout, &options);
        let metadata: u64 = (0..layout.groups)
            .map(|g| {
                let group = layout.group(g);
                group.data_start - group.start
            })
            .sum();
        let used_data = 1 + layout.lost_found.len + layout.journal_len();
        let free: u64 = fs.free_blocks.iter().sum();
        assert_eq!(free, layout.blocks - metadata - used_data);
    }
}
