//! Linux capability names and the default set a Kubernetes container gets.

/// Every capability the kernel knows, by number.
const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The capabilities containerd/CRI-O give a container that asks for nothing else.
pub const DEFAULT: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Highest capability number this table knows.
pub fn last() -> u32 {
    u32::try_from(NAMES.len()).unwrap_or(1) - 1
}

/// The number of `name` (with or without the `CAP_` prefix, any case).
pub fn number(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    NAMES
        .iter()
        .position(|n| *n == bare)
        .and_then(|i| u32::try_from(i).ok())
}

/// The mask of the default set plus `add`, minus `drop` ("ALL" drops everything first).
/// A privileged container gets every capability.
pub fn mask(add: &[String], drop: &[String], privileged: bool) -> u64 {
    if privileged {
        return (1u64 << (last() + 1)) - 1;
    }
    let mut m = 0u64;
    if !drop.iter().any(|d| d.eq_ignore_ascii_case("ALL")) {
        for n in DEFAULT {
            if let Some(c) = number(n) {
                m |= 1 << c;
            }
        }
        for d in drop {
            if let Some(c) = number(d) {
                m &= !(1 << c);
            }
        }
    }
    for a in add {
        if a.eq_ignore_ascii_case("ALL") {
            m = (1u64 << (last() + 1)) - 1;
        } else if let Some(c) = number(a) {
            m |= 1 << c;
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_the_kernel() {
        assert_eq!(number("CAP_CHOWN"), Some(0));
        assert_eq!(number("net_admin"), Some(12));
        assert_eq!(number("SYS_ADMIN"), Some(21));
        assert_eq!(number("CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(number("NOPE"), None);
    }

    #[test]
    fn default_add_drop() {
        let d = mask(&[], &[], false);
        assert_eq!(d.count_ones(), 14);
        assert_eq!(d & (1 << 21), 0, "no SYS_ADMIN by default");
        let m = mask(&["NET_ADMIN".into()], &["KILL".into()], false);
        assert_ne!(m & (1 << 12), 0);
        assert_eq!(m & (1 << 5), 0);
        let none = mask(&["NET_BIND_SERVICE".into()], &["ALL".into()], false);
        assert_eq!(none, 1 << 10);
        assert_eq!(mask(&[], &[], true).count_ones(), 41);
    }
}
