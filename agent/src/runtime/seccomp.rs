//! The default seccomp filter: a deny list of system calls a container has no business making
//! (kernel modules, reboot, kexec, clock setting, keyrings, BPF, swap, accounting, handle-based
//! opens and the x32 ABI), failing them with EPERM like Docker's default profile does, and
//! allowing everything else. Only x86_64 and aarch64 are known; other architectures are killed.

use crate::sys::BpfInsn;

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;
const RET_ALLOW: u32 = 0x7fff_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const EPERM: u32 = 1;
/// `struct seccomp_data`: nr at 0, arch at 4.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;
const X32_BIT: u32 = 0x4000_0000;

/// Denied system call numbers on x86_64.
const DENY_X86_64: &[u32] = &[
    163, // acct
    248, // add_key
    321, // bpf
    227, // clock_settime
    305, // clock_adjtime
    174, // create_module
    176, // delete_module
    313, // finit_module
    177, // get_kernel_syms
    175, // init_module
    173, // ioperm
    172, // iopl
    246, // kexec_load
    320, // kexec_file_load
    250, // keyctl
    212, // lookup_dcookie
    304, // open_by_handle_at
    298, // perf_event_open
    178, // query_module
    169, // reboot
    249, // request_key
    159, // adjtimex
    164, // settimeofday
    167, // swapon
    168, // swapoff
    139, // sysfs
    156, // _sysctl
    134, // uselib
    323, // userfaultfd
    136, // ustat
    310, // process_vm_readv
    311, // process_vm_writev
];

/// Denied system call numbers on aarch64 (asm-generic table).
const DENY_AARCH64: &[u32] = &[
    89,  // acct
    217, // add_key
    280, // bpf
    112, // clock_settime
    266, // clock_adjtime
    106, // delete_module
    273, // finit_module
    105, // init_module
    104, // kexec_load
    294, // kexec_file_load
    219, // keyctl
    18,  // lookup_dcookie
    265, // open_by_handle_at
    241, // perf_event_open
    142, // reboot
    218, // request_key
    171, // adjtimex
    170, // settimeofday
    224, // swapon
    225, // swapoff
    282, // userfaultfd
    270, // process_vm_readv
    271, // process_vm_writev
];

fn stmt(code: u16, k: u32) -> BpfInsn {
    BpfInsn {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> BpfInsn {
    BpfInsn { code, jt, jf, k }
}

/// Deny-list block for one architecture: load nr, EPERM on each listed number, else allow.
fn block(deny: &[u32], x32_check: bool) -> Vec<BpfInsn> {
    let mut p = vec![stmt(BPF_LD_W_ABS, OFF_NR)];
    if x32_check {
        p.push(jump(BPF_JGE_K, X32_BIT, 0, 1));
        p.push(stmt(BPF_RET_K, RET_ERRNO | EPERM));
    }
    for nr in deny {
        p.push(jump(BPF_JEQ_K, *nr, 0, 1));
        p.push(stmt(BPF_RET_K, RET_ERRNO | EPERM));
    }
    p.push(stmt(BPF_RET_K, RET_ALLOW));
    p
}

/// The default filter program.
pub fn default_filter() -> Vec<BpfInsn> {
    let x86 = block(DENY_X86_64, true);
    let arm = block(DENY_AARCH64, false);
    let mut p = vec![stmt(BPF_LD_W_ABS, OFF_ARCH)];
    // arch == x86_64 → fall into the x86 block; else skip it.
    let skip_x86 = u8::try_from(x86.len()).unwrap_or(u8::MAX);
    p.push(jump(BPF_JEQ_K, AUDIT_ARCH_X86_64, 0, skip_x86));
    p.extend(x86);
    p.push(jump(
        BPF_JEQ_K,
        AUDIT_ARCH_AARCH64,
        0,
        u8::try_from(arm.len()).unwrap_or(u8::MAX),
    ));
    p.extend(arm);
    p.push(stmt(BPF_RET_K, RET_KILL_PROCESS));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny interpreter for the instructions the filter uses.
    fn run(p: &[BpfInsn], arch: u32, nr: u32) -> u32 {
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            match i.code {
                BPF_LD_W_ABS => {
                    acc = if i.k == OFF_ARCH { arch } else { nr };
                    pc += 1;
                }
                BPF_JEQ_K => pc += 1 + usize::from(if acc == i.k { i.jt } else { i.jf }),
                BPF_JGE_K => pc += 1 + usize::from(if acc >= i.k { i.jt } else { i.jf }),
                BPF_RET_K => return i.k,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn denies_listed_allows_rest() {
        let p = default_filter();
        assert_eq!(run(&p, AUDIT_ARCH_X86_64, 169), RET_ERRNO | EPERM, "reboot");
        assert_eq!(
            run(&p, AUDIT_ARCH_X86_64, 175),
            RET_ERRNO | EPERM,
            "init_module"
        );
        assert_eq!(run(&p, AUDIT_ARCH_X86_64, 0), RET_ALLOW, "read");
        assert_eq!(run(&p, AUDIT_ARCH_X86_64, 59), RET_ALLOW, "execve");
        assert_eq!(
            run(&p, AUDIT_ARCH_X86_64, X32_BIT | 1),
            RET_ERRNO | EPERM,
            "x32"
        );
        assert_eq!(
            run(&p, AUDIT_ARCH_AARCH64, 142),
            RET_ERRNO | EPERM,
            "arm reboot"
        );
        assert_eq!(run(&p, AUDIT_ARCH_AARCH64, 63), RET_ALLOW, "arm read");
        assert_eq!(run(&p, 0x4000_0003, 1), RET_KILL_PROCESS, "i386");
    }
}
