//! Where everything goes: the pure arithmetic of a new filesystem, with no I/O.
//!
//! One shape, chosen for a node's state disk: 4 KiB blocks, 32768 blocks (128 MiB) per group,
//! 256-byte inodes, no `flex_bg` (each group carries its own bitmaps and inode table at its
//! start, right after the superblock backup when it has one), no reserved GDT blocks.

use crate::MkfsError;

/// Bytes per block.
pub const BLOCK: u64 = 4096;
/// Blocks per group: one block bitmap block covers this many.
pub const BLOCKS_PER_GROUP: u64 = BLOCK * 8;
/// Bytes per inode.
pub const INODE_SIZE: u64 = 256;
/// Inodes in one inode-table block.
pub const INODES_PER_BLOCK: u64 = BLOCK / INODE_SIZE;
/// Bytes per group descriptor (`64bit`).
pub const DESC_SIZE: u64 = 64;
/// The smallest journal jbd2 accepts, in blocks.
pub const MIN_JOURNAL_BLOCKS: u64 = 1024;
/// The largest journal made here: four extents in the journal inode, each within one group.
pub const MAX_JOURNAL_BLOCKS: u64 = 65536;
/// The smallest device formatted: room for the metadata and the smallest journal.
pub const MIN_BYTES: u64 = 8 << 20;
/// The largest: block numbers stay within 32 bits (16 TiB).
pub const MAX_BYTES: u64 = (1 << 32) * BLOCK - BLOCK;
/// Blocks of lost+found (16 KiB, so e2fsck rarely has to grow it).
pub const LOST_FOUND_BLOCKS: u64 = 4;
/// The highest reserved inode; the first one files get is the next.
pub const FIRST_INO: u32 = 11;
/// Smallest useful last group: shorter tails are left unused, as mke2fs does.
const MIN_TAIL_DATA_BLOCKS: u64 = 50;

/// A run of blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub start: u64,
    pub len: u64,
}

/// One block group's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group {
    pub index: u64,
    pub start: u64,
    /// Blocks in this group (the last one may be short).
    pub blocks: u64,
    /// Whether it carries a superblock and descriptor-table backup (`sparse_super`).
    pub has_super: bool,
    pub block_bitmap: u64,
    pub inode_bitmap: u64,
    pub inode_table: u64,
    /// First block after the inode table.
    pub data_start: u64,
}

/// The whole filesystem's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Blocks in the filesystem (the device's, less a tail too short to be a group).
    pub blocks: u64,
    pub groups: u64,
    pub inodes_per_group: u64,
    pub inode_table_blocks: u64,
    pub gdt_blocks: u64,
    pub reserved_blocks: u64,
    pub root_dir: u64,
    pub lost_found: Run,
    /// At most four runs, each inside one group.
    pub journal: Vec<Run>,
}

/// Whether group `g` holds a backup superblock: 0, 1 and powers of 3, 5 and 7.
pub fn has_super(g: u64) -> bool {
    if g <= 1 {
        return true;
    }
    [3u64, 5, 7].iter().any(|&base| {
        let mut p = base;
        while p < g {
            p *= base;
        }
        p == g
    })
}

/// The journal size mke2fs picks for a filesystem of `blocks`, capped at
/// [`MAX_JOURNAL_BLOCKS`].
pub fn journal_blocks(blocks: u64) -> u64 {
    let wanted = match blocks {
        0..32_768 => 1024,
        32_768..262_144 => 4096,
        262_144..524_288 => 8192,
        524_288..4_194_304 => 16_384,
        4_194_304..8_388_608 => 32_768,
        _ => 65_536,
    };
    wanted.min(MAX_JOURNAL_BLOCKS)
}

fn div_ceil(a: u64, b: u64) -> u64 {
    a.div_ceil(b)
}

/// Lays out a filesystem for a device of `bytes`.
pub fn plan(bytes: u64) -> Result<Layout, MkfsError> {
    if bytes < MIN_BYTES {
        return Err(MkfsError::TooSmall {
            size: bytes,
            min: MIN_BYTES,
        });
    }
    if bytes > MAX_BYTES {
        return Err(MkfsError::TooLarge {
            size: bytes,
            max: MAX_BYTES,
        });
    }
    let mut blocks = bytes / BLOCK;
    let mut groups = div_ceil(blocks, BLOCKS_PER_GROUP);
    // Inodes: one per 16 KiB, or per 4 KiB below 512 MiB (mke2fs' "small" type).
    let ratio = if bytes < 512 << 20 { 4096 } else { 16384 };
    let per_group = |groups: u64, blocks: u64| {
        let wanted = div_ceil(blocks * BLOCK / ratio, groups);
        div_ceil(wanted, INODES_PER_BLOCK)
            .saturating_mul(INODES_PER_BLOCK)
            .clamp(INODES_PER_BLOCK, BLOCKS_PER_GROUP)
    };
    let mut ipg = per_group(groups, blocks);
    let overhead = |g: u64, groups: u64, ipg: u64| {
        let gdt = div_ceil(groups * DESC_SIZE, BLOCK);
        let sb = if has_super(g) { 1 + gdt } else { 0 };
        sb + 2 + ipg / INODES_PER_BLOCK
    };
    let tail = blocks - (groups - 1) * BLOCKS_PER_GROUP;
    if groups > 1 && tail < overhead(groups - 1, groups, ipg) + MIN_TAIL_DATA_BLOCKS {
        blocks -= tail;
        groups -= 1;
        ipg = per_group(groups, blocks);
    }
    let gdt_blocks = div_ceil(groups * DESC_SIZE, BLOCK);
    let inode_table_blocks = ipg / INODES_PER_BLOCK;
    let group0 = group_of(0, blocks, gdt_blocks, inode_table_blocks);
    let root_dir = group0.data_start;
    let lost_found = Run {
        start: root_dir + 1,
        len: LOST_FOUND_BLOCKS,
    };
    let mut journal = Vec::new();
    let mut left = journal_blocks(blocks);
    let mut cursor = lost_found.start + lost_found.len;
    let mut g = 0;
    while left > 0 {
        if g >= groups || journal.len() == 4 {
            return Err(MkfsError::TooSmall {
                size: bytes,
                min: MIN_BYTES,
            });
        }
        let group = group_of(g, blocks, gdt_blocks, inode_table_blocks);
        let start = cursor.max(group.data_start);
        let end = group.start + group.blocks;
        if start < end {
            let len = left.min(end - start);
            journal.push(Run { start, len });
            left -= len;
        }
        g += 1;
        cursor = 0;
    }
    let layout = Layout {
        blocks,
        groups,
        inodes_per_group: ipg,
        inode_table_blocks,
        gdt_blocks,
        reserved_blocks: blocks / 20,
        root_dir,
        lost_found,
        journal,
    };
    // Every group must hold its own metadata, and the filesystem some free space.
    let used: u64 = (0..groups).map(|g| overhead(g, groups, ipg)).sum::<u64>()
        + 1
        + LOST_FOUND_BLOCKS
        + layout.journal_len();
    if used + MIN_TAIL_DATA_BLOCKS > blocks {
        return Err(MkfsError::TooSmall {
            size: bytes,
            min: MIN_BYTES,
        });
    }
    Ok(layout)
}

fn group_of(g: u64, blocks: u64, gdt_blocks: u64, itable: u64) -> Group {
    let start = g * BLOCKS_PER_GROUP;
    let has_super = has_super(g);
    let block_bitmap = start + if has_super { 1 + gdt_blocks } else { 0 };
    let inode_bitmap = block_bitmap + 1;
    let inode_table = inode_bitmap + 1;
    Group {
        index: g,
        start,
        blocks: (blocks - start).min(BLOCKS_PER_GROUP),
        has_super,
        block_bitmap,
        inode_bitmap,
        inode_table,
        data_start: inode_table + itable,
    }
}

impl Layout {
    pub fn group(&self, g: u64) -> Group {
        group_of(g, self.blocks, self.gdt_blocks, self.inode_table_blocks)
    }

    pub fn inodes(&self) -> u64 {
        self.inodes_per_group * self.groups
    }

    pub fn journal_len(&self) -> u64 {
        self.journal.iter().map(|r| r.len).sum()
    }

    /// Every allocated data run: root directory, lost+found, journal.
    pub fn data_runs(&self) -> Vec<Run> {
        let mut runs = vec![
            Run {
                start: self.root_dir,
                len: 1,
            },
            self.lost_found,
        ];
        runs.extend(self.journal.iter().copied());
        runs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_groups_are_zero_one_and_powers_of_three_five_seven() {
        let found: Vec<u64> = (0..130).filter(|&g| has_super(g)).collect();
        assert_eq!(found, [0, 1, 3, 5, 7, 9, 25, 27, 49, 81, 125]);
    }

    #[test]
    fn journal_sizes_follow_mke2fs_up_to_the_cap() {
        assert_eq!(journal_blocks(4096), 1024); // 16 MiB
        assert_eq!(journal_blocks(262_144), 8192); // 1 GiB: 32 MiB
        assert_eq!(journal_blocks(5_242_880), 32_768); // 20 GiB: 128 MiB
        assert_eq!(journal_blocks(1 << 30), MAX_JOURNAL_BLOCKS);
    }

    #[test]
    fn sixteen_mebibytes_is_one_short_group() {
        let l = plan(16 << 20).unwrap();
        assert_eq!((l.blocks, l.groups), (4096, 1));
        assert_eq!(l.inodes_per_group, 4096); // one per 4 KiB below 512 MiB
        assert_eq!(l.inode_table_blocks, 256);
        let g = l.group(0);
        assert_eq!((g.block_bitmap, g.inode_bitmap, g.inode_table), (2, 3, 4));
        assert_eq!(l.root_dir, 4 + 256);
        assert_eq!(
            l.journal,
            [Run {
                start: 265,
                len: 1024
            }]
        );
    }

    #[test]
    fn twenty_gibibytes_spreads_the_journal_over_groups() {
        let l = plan(20 << 30).unwrap();
        assert_eq!(l.groups, 160);
        assert_eq!(l.gdt_blocks, 3); // 160 descriptors of 64 bytes
        assert_eq!(l.inodes_per_group, 8192);
        assert_eq!(l.journal_len(), 32_768);
        assert_eq!(l.journal.len(), 2);
        // The second run starts right after group 1's backup and metadata.
        assert_eq!(l.journal[1].start, l.group(1).data_start);
        for run in &l.journal {
            let g = l.group(run.start / BLOCKS_PER_GROUP);
            assert!(run.start >= g.data_start && run.start + run.len <= g.start + g.blocks);
        }
        // Group 2 has no backup: its bitmaps open the group.
        assert_eq!(l.group(2).block_bitmap, 2 * BLOCKS_PER_GROUP);
    }

    #[test]
    fn a_short_tail_is_dropped_and_a_long_one_kept() {
        let l = plan((1 << 30) + (100 << 10)).unwrap();
        assert_eq!((l.blocks, l.groups), (262_144, 8));
        let l = plan((1 << 30) + (8 << 20)).unwrap();
        assert_eq!((l.blocks, l.groups), (262_144 + 2048, 9));
    }

    #[test]
    fn every_size_keeps_metadata_and_journal_inside_their_groups() {
        // 8 MiB to 64 GiB, in steps that land on, just before and just after group edges.
        let mut sizes = vec![MIN_BYTES];
        let mut bytes = MIN_BYTES;
        while bytes < 64 << 30 {
            bytes = bytes * 5 / 4 + BLOCK * 7;
            sizes.push(bytes);
        }
        for g in [1u64, 2, 3, 8, 81] {
            let edge = g * BLOCKS_PER_GROUP * BLOCK;
            sizes.extend([
                edge - BLOCK,
                edge,
                edge + BLOCK,
                edge + (1 << 20),
                edge + (8 << 20),
            ]);
        }
        for bytes in sizes {
            let l = plan(bytes).unwrap();
            assert!(l.blocks * BLOCK <= bytes);
            assert_eq!(l.groups, l.blocks.div_ceil(BLOCKS_PER_GROUP), "{bytes}");
            assert_eq!(l.journal_len(), journal_blocks(l.blocks), "{bytes}");
            assert!(l.journal.len() <= 4, "{bytes}");
            assert_eq!(l.inodes_per_group % INODES_PER_BLOCK, 0);
            assert!(l.inodes_per_group <= BLOCKS_PER_GROUP);
            for g in 0..l.groups {
                let group = l.group(g);
                assert!(
                    group.data_start < group.start + group.blocks,
                    "{bytes}: group {g}"
                );
            }
            for run in l.data_runs() {
                let g = l.group(run.start / BLOCKS_PER_GROUP);
                assert!(run.start >= g.data_start, "{bytes}: {run:?} on metadata");
                assert!(
                    run.start + run.len <= g.start + g.blocks,
                    "{bytes}: {run:?}"
                );
                assert!(run.len <= 32_768, "one extent holds at most 32768 blocks");
            }
        }
    }

    #[test]
    fn too_small_and_too_large_are_refused_with_the_limit() {
        let e = plan(MIN_BYTES - 1).unwrap_err();
        assert!(matches!(e, MkfsError::TooSmall { min: MIN_BYTES, .. }));
        assert!(e.to_string().contains("8 MiB"), "{e}");
        plan(MIN_BYTES).unwrap();
        assert!(matches!(
            plan(MAX_BYTES + 1),
            Err(MkfsError::TooLarge { .. })
        ));
    }
}
