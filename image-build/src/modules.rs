//! Choosing the kernel modules an initramfs carries: given a modules directory
//! (`/lib/modules/<version>/`) and the names PID 1 must load, find each module file and its
//! dependencies and return them in load order (dependencies first).
//!
//! Dependencies come from `modules.dep` (`kernel/a.ko: kernel/b.ko kernel/c.ko`, written by
//! `depmod`) when the directory has one. Debian's kernel package ships none, so otherwise each
//! module's ELF `.modinfo` `depends=` field is read; that needs uncompressed `.ko` files, and
//! a compressed module (`.ko.xz`, `.ko.zst`, `.ko.gz`) then asks for `depmod` to be run.
//! Names listed in `modules.builtin` are compiled into the kernel and need no file. Module names
//! treat `-` and `_` as the same character, as the kernel does.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::elf;

const EXTENSIONS: [&str; 4] = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"];

/// Why the modules could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ModulesError {
    /// Reading the modules directory or a file in it failed.
    #[error("could not read {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A line of `modules.dep` is not `path: deps…`.
    #[error("{path} line {line}: expected `path/to/module.ko: dependency paths`")]
    BadDepFile {
        /// The `modules.dep` file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// No module of that name exists (and it is not built in).
    #[error("kernel module `{name}` not found in {dir}{}", needed_by_suffix(needed_by.as_deref()))]
    NotFound {
        /// The normalised module name.
        name: String,
        /// The module that depends on it, if it was not requested directly.
        needed_by: Option<String>,
        /// The modules directory.
        dir: PathBuf,
    },
    /// A compressed module without `modules.dep` to say what it needs.
    #[error(
        "kernel module `{name}` is compressed ({}), so its dependencies cannot be read without \
         modules.dep; generate it with `depmod -b <root> <kernel version>`",
        path.display()
    )]
    Compressed {
        /// The module name.
        name: String,
        /// Its file.
        path: PathBuf,
    },
    /// A module file whose `.modinfo` could not be read.
    #[error("kernel module {}: {reason}", path.display())]
    BadModule {
        /// The module file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Modules that depend on each other in a loop.
    #[error("kernel modules depend on each other in a loop: {}", chain.join(" -> "))]
    Cycle {
        /// The loop, first module repeated at the end.
        chain: Vec<String>,
    },
}

fn needed_by_suffix(needed_by: Option<&str>) -> String {
    needed_by.map_or_else(String::new, |m| format!(" (needed by `{m}`)"))
}

/// One module file to put in the image and load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleFile {
    /// Normalised module name (`-` written as `_`).
    pub name: String,
    /// Path relative to the modules directory (`kernel/drivers/net/virtio_net.ko`).
    pub path: PathBuf,
}

/// The result of resolving a list of module names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadPlan {
    /// Module files in load order: every module comes after all of its dependencies.
    pub modules: Vec<ModuleFile>,
    /// Requested or needed names that are built into the kernel (nothing to load).
    pub builtin: Vec<String>,
}

/// Where a module's dependencies come from.
#[derive(Debug)]
enum Source {
    /// From `modules.dep`: module name → dependency names.
    DepFile(BTreeMap<String, Vec<String>>),
    /// From each module's `.modinfo`, read when needed.
    Modinfo,
}

/// A kernel modules directory, indexed by module name.
#[derive(Debug)]
pub struct ModuleTree {
    dir: PathBuf,
    files: BTreeMap<String, PathBuf>,
    builtin: BTreeSet<String>,
    source: Source,
}

/// The kernel's notion of a module name: the file name without extension, `-` as `_`.
pub fn normalise_name(name: &str) -> String {
    name.replace('-', "_")
}

fn name_of(path: &str) -> Option<String> {
    let file = path.rsplit('/').next()?;
    EXTENSIONS
        .iter()
        .find_map(|ext| file.strip_suffix(ext))
        .filter(|stem| !stem.is_empty())
        .map(normalise_name)
}

impl ModuleTree {
    /// Indexes `dir` (`/lib/modules/<version>`): reads `modules.dep` and `modules.builtin` if
    /// present, otherwise lists the module files under it.
    pub fn open(dir: &Path) -> Result<Self, ModulesError> {
        let builtin = match read_optional(&dir.join("modules.builtin"))? {
            Some(text) => text.lines().filter_map(name_of).collect(),
            None => BTreeSet::new(),
        };
        let dep_path = dir.join("modules.dep");
        let (files, source) = match read_optional(&dep_path)? {
            Some(text) => parse_dep_file(&dep_path, &text)?,
            None => (scan(dir)?, Source::Modinfo),
        };
        Ok(Self {
            dir: dir.to_owned(),
            files,
            builtin,
            source,
        })
    }

    /// Whether dependencies come from `modules.dep` (rather than from each `.modinfo`).
    pub fn has_dep_file(&self) -> bool {
        matches!(self.source, Source::DepFile(_))
    }

    /// Resolves `names` and everything they depend on into load order.
    pub fn resolve<S: AsRef<str>>(&self, names: &[S]) -> Result<LoadPlan, ModulesError> {
        let mut walk = Walk {
            tree: self,
            done: BTreeSet::new(),
            stack: Vec::new(),
            plan: LoadPlan::default(),
        };
        for name in names {
            walk.visit(&normalise_name(name.as_ref()), None)?;
        }
        Ok(walk.plan)
    }

    fn dependencies(&self, name: &str, path: &Path) -> Result<Vec<String>, ModulesError> {
        match &self.source {
            Source::DepFile(deps) => Ok(deps.get(name).cloned().unwrap_or_default()),
            Source::Modinfo => {
                let text = path.to_string_lossy();
                if !text.ends_with(".ko") {
                    return Err(ModulesError::Compressed {
                        name: name.to_owned(),
                        path: path.to_owned(),
                    });
                }
                let full = self.dir.join(path);
                let bytes = fs::read(&full).map_err(|source| ModulesError::Io {
                    path: full.clone(),
                    source,
                })?;
                let info = elf::modinfo(&bytes)
                    .map_err(|reason| ModulesError::BadModule { path: full, reason })?;
                Ok(info
                    .iter()
                    .filter(|(key, _)| key == "depends")
                    .flat_map(|(_, value)| value.split(','))
                    .filter(|dep| !dep.is_empty())
                    .map(normalise_name)
                    .collect())
            }
        }
    }
}

/// Depth-first walk that appends each module after its dependencies.
struct Walk<'a> {
    tree: &'a ModuleTree,
    done: BTreeSet<String>,
    stack: Vec<String>,
    plan: LoadPlan,
}

impl Walk<'_> {
    fn visit(&mut self, name: &str, needed_by: Option<&str>) -> Result<(), ModulesError> {
        if self.done.contains(name) {
            return Ok(());
        }
        if let Some(start) = self.stack.iter().position(|n| n == name) {
            let mut chain = self.stack[start..].to_vec();
            chain.push(name.to_owned());
            return Err(ModulesError::Cycle { chain });
        }
        let Some(path) = self.tree.files.get(name) else {
            if self.tree.builtin.contains(name) {
                self.done.insert(name.to_owned());
                self.plan.builtin.push(name.to_owned());
                return Ok(());
            }
            return Err(ModulesError::NotFound {
                name: name.to_owned(),
                needed_by: needed_by.map(str::to_owned),
                dir: self.tree.dir.clone(),
            });
        };
        self.stack.push(name.to_owned());
        for dep in self.tree.dependencies(name, path)? {
            self.visit(&dep, Some(name))?;
        }
        self.stack.pop();
        self.done.insert(name.to_owned());
        self.plan.modules.push(ModuleFile {
            name: name.to_owned(),
            path: path.clone(),
        });
        Ok(())
    }
}

fn read_optional(path: &Path) -> Result<Option<String>, ModulesError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ModulesError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

type Index = (BTreeMap<String, PathBuf>, Source);

fn parse_dep_file(path: &Path, text: &str) -> Result<Index, ModulesError> {
    let mut files = BTreeMap::new();
    let mut deps = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || ModulesError::BadDepFile {
            path: path.to_owned(),
            line: index + 1,
        };
        let (module, rest) = line.split_once(':').ok_or_else(bad)?;
        let name = name_of(module).ok_or_else(bad)?;
        let names = rest
            .split_whitespace()
            .map(|dep| name_of(dep).ok_or_else(bad))
            .collect::<Result<Vec<_>, _>>()?;
        files
            .entry(name.clone())
            .or_insert_with(|| PathBuf::from(module));
        deps.entry(name).or_insert(names);
    }
    Ok((files, Source::DepFile(deps)))
}

/// Lists every module file under `dir`, not following symlinks (`build`, `source`). When two
/// files share a name, the one under `updates/` wins, then the first in path order.
fn scan(dir: &Path) -> Result<BTreeMap<String, PathBuf>, ModulesError> {
    let mut found: Vec<PathBuf> = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let full = dir.join(&relative);
        let io_error = |source| ModulesError::Io {
            path: full.clone(),
            source,
        };
        for entry in fs::read_dir(&full).map_err(io_error)? {
            let entry = entry.map_err(io_error)?;
            let kind = entry.file_type().map_err(io_error)?;
            let path = relative.join(entry.file_name());
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() && name_of(&path.to_string_lossy()).is_some() {
                found.push(path);
            }
        }
    }
    found.sort_by_key(|p| (!p.starts_with("updates"), p.clone()));
    let mut files = BTreeMap::new();
    for path in found {
        if let Some(name) = name_of(&path.to_string_lossy()) {
            files.entry(name).or_insert(path);
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, relative: &str, contents: &[u8]) {
        let path = root.join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents).unwrap();
    }

    fn names(plan: &LoadPlan) -> Vec<&str> {
        plan.modules.iter().map(|m| m.name.as_str()).collect()
    }

    /// A diamond: net_top needs left and right, both need base-core.
    fn dep_tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let dep = "\
kernel/net/net_top.ko.zst: kernel/net/left.ko.zst kernel/net/right.ko.zst kernel/lib/base-core.ko.zst
kernel/net/left.ko.zst: kernel/lib/base-core.ko.zst
kernel/net/right.ko.zst: kernel/lib/base-core.ko.zst
kernel/lib/base-core.ko.zst:
kernel/fs/overlay/overlay.ko.zst:
kernel/loop/a.ko: kernel/loop/b.ko
kernel/loop/b.ko: kernel/loop/a.ko
";
        write(dir.path(), "modules.dep", dep.as_bytes());
        write(
            dir.path(),
            "modules.builtin",
            b"kernel/drivers/virtio/virtio.ko\n",
        );
        dir
    }

    #[test]
    fn diamond_dependencies_load_once_in_order() {
        let dir = dep_tree();
        let tree = ModuleTree::open(dir.path()).unwrap();
        assert!(tree.has_dep_file());
        let plan = tree.resolve(&["net-top", "overlay", "base_core"]).unwrap();
        let order = names(&plan);
        assert_eq!(order.len(), 5, "{order:?}");
        let at = |n: &str| order.iter().position(|m| *m == n).unwrap();
        assert_eq!(at("base_core"), 0);
        assert!(at("left") < at("net_top") && at("right") < at("net_top"));
        assert_eq!(
            plan.modules[at("net_top")].path,
            PathBuf::from("kernel/net/net_top.ko.zst")
        );
        assert!(plan.builtin.is_empty());
    }

    #[test]
    fn builtin_modules_need_no_file() {
        let dir = dep_tree();
        let tree = ModuleTree::open(dir.path()).unwrap();
        let plan = tree.resolve(&["virtio", "overlay"]).unwrap();
        assert_eq!(plan.builtin, ["virtio"]);
        assert_eq!(names(&plan), ["overlay"]);
    }

    #[test]
    fn missing_and_looping_modules_are_clear_errors() {
        let dir = dep_tree();
        let tree = ModuleTree::open(dir.path()).unwrap();
        let err = tree.resolve(&["nf_tables"]).unwrap_err().to_string();
        assert!(err.contains("`nf_tables` not found"), "{err}");
        let err = tree.resolve(&["a"]).unwrap_err().to_string();
        assert!(err.contains("a -> b -> a"), "{err}");
        write(dir.path(), "modules.dep", b"kernel/x.ko: kernel/y.ko\n");
        let err = ModuleTree::open(dir.path())
            .unwrap()
            .resolve(&["x"])
            .unwrap_err();
        assert!(
            err.to_string().contains("`y` not found") && err.to_string().contains("needed by `x`"),
            "{err}"
        );
        write(dir.path(), "modules.dep", b"kernel/x.ko kernel/y.ko\n");
        let err = ModuleTree::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn without_modules_dep_reads_modinfo() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "kernel/net/virtio_net.ko",
            &elf::fake_module(&["depends=net_failover,virtio_ring"]),
        );
        write(
            root,
            "kernel/net/net_failover.ko",
            &elf::fake_module(&["depends=failover"]),
        );
        write(
            root,
            "kernel/net/failover.ko",
            &elf::fake_module(&["depends="]),
        );
        write(
            root,
            "kernel/virtio/virtio_ring.ko",
            &elf::fake_module(&["license=GPL"]),
        );
        write(root, "kernel/fs/zstd-mod.ko.zst", b"compressed");
        std::os::unix::fs::symlink("/nonexistent", root.join("build")).unwrap();
        let tree = ModuleTree::open(root).unwrap();
        assert!(!tree.has_dep_file());
        let plan = tree.resolve(&["virtio-net"]).unwrap();
        let order = names(&plan);
        let at = |n: &str| order.iter().position(|m| *m == n).unwrap();
        assert_eq!(order.len(), 4, "{order:?}");
        assert!(at("failover") < at("net_failover"));
        assert!(at("net_failover") < at("virtio_net") && at("virtio_ring") < at("virtio_net"));
        let err = tree.resolve(&["zstd_mod"]).unwrap_err();
        assert!(matches!(err, ModulesError::Compressed { .. }), "{err:?}");
        assert!(err.to_string().contains("depmod"));
    }
}
