//! Paths inside a container's root filesystem, resolved so that nothing an image ships
//! (absolute or `..` symlinks) can point a mount outside the root.

use std::path::{Component, Path, PathBuf};

/// How many symlinks one resolution may follow before giving up (as the kernel's ELOOP).
const MAX_LINKS: usize = 40;

/// `root` joined with `inside`, following symlinks found under `root` as if `root` were `/`:
/// absolute targets restart at `root`, `..` never climbs above it. Components that do not
/// exist yet are appended as they are.
pub fn secure_join(root: &Path, inside: &str) -> std::io::Result<PathBuf> {
    let mut pending: Vec<String> = components(inside);
    pending.reverse();
    let mut resolved: Vec<String> = Vec::new();
    let mut links = 0usize;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved
            .iter()
            .fold(root.to_path_buf(), |p, c| p.join(c))
            .join(&part);
        match std::fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(std::io::Error::other("too many levels of symbolic links"));
                }
                let target = std::fs::read_link(&candidate)?;
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    resolved.clear();
                }
                let mut more = components(&target);
                more.reverse();
                pending.extend(more);
            }
            _ => resolved.push(part),
        }
    }
    Ok(resolved.iter().fold(root.to_path_buf(), |p, c| p.join(c)))
}

fn components(path: &str) -> Vec<String> {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".to_owned()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn plain_and_dotdot_stay_inside() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        assert_eq!(secure_join(r, "/etc/hosts").unwrap(), r.join("etc/hosts"));
        assert_eq!(secure_join(r, "/../../etc").unwrap(), r.join("etc"));
        assert_eq!(secure_join(r, "a/../b").unwrap(), r.join("b"));
    }

    #[test]
    fn symlinks_are_resolved_under_root() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("real/dir")).unwrap();
        symlink("/etc", r.join("abs")).unwrap();
        symlink("../../../../tmp", r.join("real/up")).unwrap();
        symlink("dir", r.join("real/rel")).unwrap();
        assert_eq!(secure_join(r, "/abs/passwd").unwrap(), r.join("etc/passwd"));
        assert_eq!(secure_join(r, "/real/up/x").unwrap(), r.join("tmp/x"));
        assert_eq!(secure_join(r, "/real/rel/f").unwrap(), r.join("real/dir/f"));
        symlink("loop", r.join("loop")).unwrap();
        assert!(secure_join(r, "/loop").is_err());
    }
}
