//! Leaving the initramfs. The kernel unpacks the initramfs into `rootfs`, a filesystem that can
//! never be unmounted, and `pivot_root(2)` refuses to move it (EINVAL): every container runtime
//! (the agent's included) pivots into the container's root, so none can start a container while
//! the node's root is `rootfs`. Like `switch_root`, init therefore moves every file into a
//! tmpfs first (copy, then delete, so memory use stays flat), moves that tmpfs onto `/`,
//! `chroot`s into it and runs itself again from there.
//!
//! This runs before anything else is mounted, on the real kernel only; the file moving is
//! ordinary file system work and is tested on a temporary directory.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

/// Set in the environment of the re-executed init: the switch is done.
pub const SWITCHED_ENV: &str = "SKIFF_INIT_SWITCHED";
/// Where the tmpfs that becomes the root is mounted while files move into it.
const NEW_ROOT: &str = "/.skiff-root";

/// Moves everything under `from` into `to` (which must exist), except `skip`: directories are
/// recreated with their modes, files copied with their modes, symlinks recreated, device nodes
/// made again; each source is deleted once copied. Returns how many entries moved.
pub fn move_tree(from: &Path, to: &Path, skip: &Path) -> io::Result<u64> {
    let mut moved = 0;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let source = entry.path();
        if source == skip {
            continue;
        }
        let target = to.join(entry.file_name());
        let meta = fs::symlink_metadata(&source)?;
        let kind = meta.file_type();
        if kind.is_dir() {
            fs::create_dir(&target).or_else(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => Ok(()),
                _ => Err(e),
            })?;
            fs::set_permissions(&target, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
            moved += move_tree(&source, &target, skip)?;
            // A directory that still holds something (a mount point) stays.
            let _ = fs::remove_dir(&source);
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&source)?, &target)?;
            fs::remove_file(&source)?;
        } else if kind.is_file() {
            fs::copy(&source, &target)?;
            fs::remove_file(&source)?;
        } else if kind.is_char_device() || kind.is_block_device() {
            let sflag = if kind.is_char_device() {
                nix::sys::stat::SFlag::S_IFCHR
            } else {
                nix::sys::stat::SFlag::S_IFBLK
            };
            nix::sys::stat::mknod(
                &target,
                sflag,
                nix::sys::stat::Mode::from_bits_truncate(meta.mode() & 0o7777),
                meta.rdev(),
            )
            .map_err(io::Error::from)?;
            fs::remove_file(&source)?;
        } else {
            // Sockets and fifos cannot be in an initramfs worth keeping.
            continue;
        }
        moved += 1;
    }
    Ok(moved)
}

/// Makes a tmpfs the root and runs `/init` again from it. Returns only when it did not switch
/// (already switched, or a step failed: then the reason is printed and the node boots on
/// `rootfs`, where containers cannot start).
pub fn leave_rootfs() {
    if std::env::var_os(SWITCHED_ENV).is_some() {
        return;
    }
    if let Err(e) = switch() {
        eprintln!(
            "skiff: cannot move the root off the initramfs ({e}); containers will not start on this node"
        );
    }
}

fn switch() -> io::Result<()> {
    use nix::mount::{MsFlags, mount};
    let errno = io::Error::from;
    fs::create_dir_all(NEW_ROOT)?;
    mount(
        Some("skiff-root"),
        NEW_ROOT,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("mode=0755"),
    )
    .map_err(errno)?;
    move_tree(Path::new("/"), Path::new(NEW_ROOT), Path::new(NEW_ROOT))?;
    nix::unistd::chdir(NEW_ROOT).map_err(errno)?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>).map_err(errno)?;
    nix::unistd::chroot(".").map_err(errno)?;
    nix::unistd::chdir("/").map_err(errno)?;
    let program = c"/init";
    let mut args = vec![program.to_owned()];
    for arg in std::env::args_os().skip(1) {
        if let Ok(c) =
            std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(arg.as_os_str()))
        {
            args.push(c);
        }
    }
    let mut env: Vec<std::ffi::CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut pair = k.into_encoded_bytes();
            pair.push(b'=');
            pair.extend(v.into_encoded_bytes());
            std::ffi::CString::new(pair).ok()
        })
        .collect();
    env.push(c"SKIFF_INIT_SWITCHED=1".to_owned());
    nix::unistd::execve(program, &args, &env).map_err(errno)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_files_dirs_and_links_and_empties_the_source() {
        let temp = tempfile::tempdir().unwrap();
        let from = temp.path().join("old");
        let to = temp.path().join("new");
        fs::create_dir_all(from.join("lib/modules")).unwrap();
        fs::create_dir(&to).unwrap();
        fs::write(from.join("init"), b"\x7fELF").unwrap();
        fs::set_permissions(from.join("init"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(from.join("lib/modules/a.ko"), b"module").unwrap();
        fs::set_permissions(from.join("lib"), fs::Permissions::from_mode(0o750)).unwrap();
        std::os::unix::fs::symlink("modules/a.ko", from.join("lib/a")).unwrap();
        // The directory being filled is skipped when it sits inside the source.
        let inner = from.join("newroot");
        fs::create_dir(&inner).unwrap();

        let moved = move_tree(&from, &to, &inner).unwrap();
        assert_eq!(moved, 5, "init, lib, lib/modules, a.ko, the link");
        assert_eq!(fs::read(to.join("init")).unwrap(), b"\x7fELF");
        assert_eq!(fs::metadata(to.join("init")).unwrap().mode() & 0o777, 0o755);
        assert_eq!(fs::metadata(to.join("lib")).unwrap().mode() & 0o777, 0o750);
        assert_eq!(fs::read(to.join("lib/a")).unwrap(), b"module");
        assert_eq!(
            fs::read_link(to.join("lib/a")).unwrap(),
            Path::new("modules/a.ko")
        );
        let left: Vec<_> = fs::read_dir(&from)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("newroot")]);
    }
}
