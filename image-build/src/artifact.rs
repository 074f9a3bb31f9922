//! Building the boot artifact: fetch Debian's cloud kernel by package name (`apt-get
//! download`, `dpkg-deb -x`, `depmod -b`), pick the modules a node needs, pack the static
//! `skiff` binary as `/init` with them into a zstd-compressed newc initramfs, and write
//! `manifest.json` with its signature. The same inputs give the same bytes.
//!
//! Trust is a separate layer: [`key_layer`] is a tiny uncompressed cpio holding the cluster's
//! public key(s) under `/etc/skiff/trusted-keys/`. The kernel unpacks concatenated archives,
//! so `key layer ++ base initramfs` trusts a key without rebuilding the base (the key layer
//! goes first, the order the kernel's early-cpio handling is known to accept for mixed
//! uncompressed/compressed archives).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use skiff_machine::{PublicKey, SigningKey};

use crate::cpio::{Archive, CpioError, Meta};
use crate::manifest::{Manifest, ManifestError};
use crate::modules::{ModuleTree, ModulesError};

/// The Debian metapackage whose dependency names the kernel package.
pub const KERNEL_METAPACKAGE: &str = "linux-image-cloud-amd64";

/// Modules every node loads (dependencies are added by resolution).
pub const NODE_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_mmio",
    "virtio_net",
    "virtio_blk",
    "virtio_console",
    "virtio-rng",
    "qemu_fw_cfg",
    "overlay",
    "bridge",
    "br_netfilter",
    "veth",
    "vxlan",
    "nf_tables",
    "nf_conntrack",
    "nf_nat",
    "nft_chain_nat",
    "nft_nat",
    "nft_masq",
    "nft_redir",
    "nft_ct",
    "nft_numgen",
    "nft_hash",
    "nft_limit",
    "nft_fib_inet",
    "nft_reject_inet",
    "nft_compat",
    "xt_conntrack",
];

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("`{command}` failed: {detail}")]
    Tool { command: String, detail: String },
    #[error("cannot run `{command}` (is it installed?)")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("kernel package: {0}")]
    Kernel(String),
    #[error("kernel modules")]
    Modules(#[from] ModulesError),
    #[error("initramfs")]
    Cpio(#[from] CpioError),
    #[error("manifest")]
    Manifest(#[from] ManifestError),
    #[error("a file of {0} bytes does not fit a cpio archive")]
    TooLarge(usize),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Runs a command and returns its stdout.
fn run(cmd: &mut Command) -> Result<String, BuildError> {
    let command = format!("{cmd:?}").replace('"', "");
    let out = cmd.output().map_err(|source| BuildError::Spawn {
        command: command.clone(),
        source,
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(BuildError::Tool {
            command,
            detail: stderr.lines().last().unwrap_or("no output").to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// An unpacked kernel package.
#[derive(Debug, Clone)]
pub struct KernelTree {
    /// `6.1.0-56-cloud-amd64`.
    pub version: String,
    /// The Debian package file name it came from.
    pub package: String,
    pub vmlinuz: PathBuf,
    /// `<root>/lib/modules/<version>`, with a `modules.dep` made by `depmod -b`.
    pub modules_dir: PathBuf,
}

/// Downloads (once) and unpacks Debian's cloud kernel into `cache`.
pub fn fetch_kernel(cache: &Path) -> Result<KernelTree, BuildError> {
    fs::create_dir_all(cache).map_err(io(cache))?;
    let depends = run(Command::new("apt-cache").args(["depends", KERNEL_METAPACKAGE]))?;
    let package = depends
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-"))
        .map(str::to_owned)
        .ok_or_else(|| {
            BuildError::Kernel(format!(
                "apt knows no dependency of {KERNEL_METAPACKAGE}; run `apt-get update`"
            ))
        })?;
    let version = package.trim_start_matches("linux-image-").to_owned();
    let root = cache.join(&package);
    let modules_dir = root.join("lib/modules").join(&version);
    let vmlinuz = root.join("boot").join(format!("vmlinuz-{version}"));
    if !modules_dir.join("modules.dep").is_file() || !vmlinuz.is_file() {
        let deb = find_deb(cache, &package)?;
        let deb = match deb {
            Some(deb) => deb,
            None => {
                run(Command::new("apt-get")
                    .args(["download", "-q", &package])
                    .current_dir(cache))?;
                find_deb(cache, &package)?.ok_or_else(|| {
                    BuildError::Kernel(format!("apt-get download {package} left no .deb"))
                })?
            }
        };
        let _ = fs::remove_dir_all(&root);
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
        run(Command::new("depmod").arg("-b").arg(&root).arg(&version))?;
    }
    Ok(KernelTree {
        version,
        package,
        vmlinuz,
        modules_dir,
    })
}

fn find_deb(cache: &Path, package: &str) -> Result<Option<PathBuf>, BuildError> {
    let prefix = format!("{package}_");
    let mut found: Vec<PathBuf> = fs::read_dir(cache)
        .map_err(io(cache))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
        .collect();
    found.sort();
    Ok(found.pop())
}

/// Inputs of one image build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub out: PathBuf,
    /// The static `skiff` binary that becomes `/init`.
    pub binary: PathBuf,
    pub kernel: KernelTree,
    pub modules: Vec<String>,
    /// Every timestamp in the archive (SOURCE_DATE_EPOCH).
    pub source_date_epoch: u32,
    /// zstd level for the initramfs.
    pub zstd_level: i32,
    /// PEM bundle of trusted TLS roots placed at [`CA_BUNDLE_PATH`] (the agent pulls images
    /// over HTTPS); [`HOST_CA_BUNDLE`] is Debian's `ca-certificates` on the build host.
    pub ca_bundle: Option<PathBuf>,
}

/// Where the node's TLS roots live (the path rustls' native-certs loader reads on Debian).
pub const CA_BUNDLE_PATH: &str = "etc/ssl/certs/ca-certificates.crt";
/// The build host's bundle, from Debian's `ca-certificates` package.
pub const HOST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildReport {
    pub vmlinuz: PathBuf,
    pub initramfs: PathBuf,
    pub manifest: PathBuf,
    pub kernel_bytes: u64,
    pub initramfs_bytes: u64,
    pub initramfs_uncompressed: u64,
    pub modules: usize,
}

/// The base initramfs archive (uncompressed): `/init`, modules with their load list, build
/// date, `/dev/console`, and the empty trusted-keys directory.
pub fn base_archive(
    binary: &[u8],
    kernel: &KernelTree,
    modules: &[String],
    mtime: u32,
) -> Result<(Archive, usize), BuildError> {
    let tree = ModuleTree::open(&kernel.modules_dir)?;
    let plan = tree.resolve(modules)?;
    let mut archive = Archive::new(mtime);
    archive.add_file("init", binary.to_vec(), Meta::root(0o755))?;
    for dir in [
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "var",
        "etc/skiff/trusted-keys",
    ] {
        archive.add_dir(dir, Meta::root(0o755))?;
    }
    archive.add_char_device("dev/console", 5, 1, Meta::root(0o600))?;
    archive.add_char_device("dev/null", 1, 3, Meta::root(0o666))?;
    let mut load = String::new();
    for module in &plan.modules {
        let rel = module.path.to_string_lossy().into_owned();
        let full = kernel.modules_dir.join(&module.path);
        let bytes = fs::read(&full).map_err(io(&full))?;
        archive.add_file(&format!("lib/modules/{rel}"), bytes, Meta::root(0o644))?;
        load.push_str(&rel);
        load.push('\n');
    }
    archive.add_file("lib/modules/skiff.load", load, Meta::root(0o644))?;
    archive.add_file(
        "etc/skiff/build-epoch",
        format!("{mtime}\n"),
        Meta::root(0o644),
    )?;
    archive.add_file(
        "etc/os-release",
        format!(
            "NAME=skiff\nID=skiff\nPRETTY_NAME=\"skiff {}\"\nVERSION_ID={}\n",
            env!("CARGO_PKG_VERSION"),
            env!("CARGO_PKG_VERSION")
        ),
        Meta::root(0o644),
    )?;
    Ok((archive, plan.modules.len()))
}

/// A small uncompressed cpio trusting `keys` (files `etc/skiff/trusted-keys/<key-id>.pub`).
pub fn key_layer(keys: &[PublicKey], mtime: u32) -> Result<Vec<u8>, BuildError> {
    let mut archive = Archive::new(mtime);
    for key in keys {
        archive.add_file(
            &format!("etc/skiff/trusted-keys/{}.pub", key.key_id()),
            key.to_pem(),
            Meta::root(0o644),
        )?;
    }
    Ok(archive.to_bytes())
}

/// The initramfs a node boots: the key layer, then the base.
pub fn trusted_initramfs(
    base: &[u8],
    keys: &[PublicKey],
    mtime: u32,
) -> Result<Vec<u8>, BuildError> {
    let mut out = key_layer(keys, mtime)?;
    out.extend_from_slice(base);
    Ok(out)
}

/// Builds `vmlinuz`, `initramfs` and `manifest.json` (+ `.sig` when `signing_key`) into
/// `opts.out`. `step` is told what happens, for progress display.
pub fn build(
    opts: &BuildOptions,
    signing_key: Option<&SigningKey>,
    step: &mut dyn FnMut(&str),
) -> Result<BuildReport, BuildError> {
    fs::create_dir_all(&opts.out).map_err(io(&opts.out))?;
    step("reading the skiff binary");
    let binary = fs::read(&opts.binary).map_err(io(&opts.binary))?;
    step("resolving kernel modules");
    let (mut archive, modules) =
        base_archive(&binary, &opts.kernel, &opts.modules, opts.source_date_epoch)?;
    if let Some(bundle) = &opts.ca_bundle {
        step("adding the TLS root certificates");
        let pem = fs::read(bundle).map_err(io(bundle))?;
        archive.add_dir("etc/ssl/certs", Meta::root(0o755))?;
        archive.add_file(CA_BUNDLE_PATH, pem, Meta::root(0o644))?;
    }
    step("writing the cpio archive");
    let raw = archive.to_bytes();
    step("compressing the initramfs (zstd)");
    let compressed = compress(&raw, opts.zstd_level, &opts.out)?;
    let initramfs = opts.out.join("initramfs");
    fs::write(&initramfs, &compressed).map_err(io(&initramfs))?;
    step("copying the kernel");
    let vmlinuz = opts.out.join("vmlinuz");
    let kernel = fs::read(&opts.kernel.vmlinuz).map_err(io(&opts.kernel.vmlinuz))?;
    fs::write(&vmlinuz, &kernel).map_err(io(&vmlinuz))?;
    step("writing the manifest");
    let mut manifest = Manifest::new();
    manifest.add_bytes("initramfs", &compressed)?;
    manifest.add_bytes("vmlinuz", &kernel)?;
    let manifest_path = opts.out.join("manifest.json");
    let json = match signing_key {
        Some(key) => {
            let (json, sig) = manifest.sign(key);
            let sig_path = opts.out.join("manifest.json.sig");
            fs::write(&sig_path, sig).map_err(io(&sig_path))?;
            json
        }
        None => manifest.to_json(),
    };
    fs::write(&manifest_path, json).map_err(io(&manifest_path))?;
    let len = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    Ok(BuildReport {
        vmlinuz,
        initramfs,
        manifest: manifest_path,
        kernel_bytes: len(kernel.len()),
        initramfs_bytes: len(compressed.len()),
        initramfs_uncompressed: len(raw.len()),
        modules,
    })
}

/// zstd, single-threaded and without a content-dependent dictionary: deterministic.
fn compress(raw: &[u8], level: i32, out: &Path) -> Result<Vec<u8>, BuildError> {
    let mut encoder = zstd::stream::Encoder::new(Vec::new(), level).map_err(io(out))?;
    encoder.include_checksum(true).map_err(io(out))?;
    encoder
        .set_pledged_src_size(Some(u64::try_from(raw.len()).unwrap_or(u64::MAX)))
        .map_err(io(out))?;
    std::io::Write::write_all(&mut encoder, raw).map_err(io(out))?;
    encoder.finish().map_err(io(out))
}

/// Builds the static `skiff` binary from the workspace at `workspace` and returns its path.
pub fn build_static_binary(workspace: &Path) -> Result<PathBuf, BuildError> {
    let target = "x86_64-unknown-linux-gnu";
    let status = Command::new("cargo")
        .args([
            "build",
            "--release",
            "--locked",
            "--bin",
            "skiff",
            "--target",
            target,
        ])
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .current_dir(workspace)
        .status()
        .map_err(|source| BuildError::Spawn {
            command: "cargo build".into(),
            source,
        })?;
    if !status.success() {
        return Err(BuildError::Tool {
            command: "cargo build --release (static)".into(),
            detail: format!("exited with {status}"),
        });
    }
    Ok(workspace.join("target").join(target).join("release/skiff"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake kernel: a vmlinuz and three modules with a modules.dep.
    fn fake_kernel(dir: &Path) -> KernelTree {
        let modules_dir = dir.join("lib/modules/6.1.0-test");
        fs::create_dir_all(modules_dir.join("kernel/net")).unwrap();
        fs::write(modules_dir.join("kernel/net/a.ko"), b"module a").unwrap();
        fs::write(modules_dir.join("kernel/net/b.ko"), b"module b").unwrap();
        fs::write(modules_dir.join("kernel/net/c.ko"), b"module c").unwrap();
        fs::write(
            modules_dir.join("modules.dep"),
            "kernel/net/a.ko: kernel/net/b.ko\nkernel/net/b.ko:\nkernel/net/c.ko:\n",
        )
        .unwrap();
        let vmlinuz = dir.join("vmlinuz-6.1.0-test");
        fs::write(&vmlinuz, vec![0xabu8; 4096]).unwrap();
        KernelTree {
            version: "6.1.0-test".into(),
            package: "linux-image-6.1.0-test".into(),
            vmlinuz,
            modules_dir,
        }
    }

    fn options(dir: &Path, out: &str) -> BuildOptions {
        let binary = dir.join("skiff");
        fs::write(&binary, b"\x7fELF static skiff").unwrap();
        BuildOptions {
            out: dir.join(out),
            binary,
            kernel: fake_kernel(dir),
            modules: vec!["a".into()],
            source_date_epoch: 1_700_000_000,
            zstd_level: 3,
            ca_bundle: None,
        }
    }

    #[test]
    fn two_builds_give_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate().unwrap();
        let one = build(&options(dir.path(), "one"), Some(&key), &mut |_| {}).unwrap();
        let two = build(&options(dir.path(), "two"), Some(&key), &mut |_| {}).unwrap();
        for name in ["vmlinuz", "initramfs", "manifest.json", "manifest.json.sig"] {
            let a = fs::read(dir.path().join("one").join(name)).unwrap();
            let b = fs::read(dir.path().join("two").join(name)).unwrap();
            assert!(a == b, "{name} differs between builds");
        }
        assert_eq!(one.modules, 2);
        assert_eq!(two.initramfs_bytes, one.initramfs_bytes);
        let json = fs::read(&one.manifest).unwrap();
        let sig = fs::read(dir.path().join("one/manifest.json.sig")).unwrap();
        let manifest = Manifest::verify(&json, &sig, &[key.public_key()]).unwrap();
        manifest.check_files(&dir.path().join("one")).unwrap();
    }

    #[test]
    fn the_initramfs_holds_init_modules_in_load_order_and_fixed_times() {
        let dir = tempfile::tempdir().unwrap();
        let report = build(&options(dir.path(), "out"), None, &mut |_| {}).unwrap();
        let compressed = fs::read(&report.initramfs).unwrap();
        let raw = zstd::decode_all(&compressed[..]).unwrap();
        let entries = crate::cpio::read(&raw).unwrap();
        let find = |name: &str| entries.iter().find(|e| e.path == name).unwrap();
        let data = |name: &str| match &find(name).node {
            crate::cpio::Node::File(data) => data.clone(),
            other => panic!("{name} is {other:?}"),
        };
        assert_eq!(data("init"), b"\x7fELF static skiff");
        assert_eq!(find("init").mode & 0o777, 0o755);
        assert_eq!(
            data("lib/modules/skiff.load"),
            b"kernel/net/b.ko\nkernel/net/a.ko\n"
        );
        assert!(
            entries
                .iter()
                .all(|e| e.path != "lib/modules/kernel/net/c.ko")
        );
        assert!(entries.iter().all(|e| e.mtime == 1_700_000_000));
        assert_eq!(
            find("dev/console").node,
            crate::cpio::Node::CharDevice { major: 5, minor: 1 }
        );
    }

    #[test]
    fn a_ca_bundle_is_packed_where_tls_clients_look() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("roots.pem");
        fs::write(&bundle, b"-----BEGIN CERTIFICATE-----\nroot\n").unwrap();
        let mut opts = options(dir.path(), "out");
        opts.ca_bundle = Some(bundle);
        let report = build(&opts, None, &mut |_| {}).unwrap();
        let raw = zstd::decode_all(&fs::read(&report.initramfs).unwrap()[..]).unwrap();
        let entries = crate::cpio::read(&raw).unwrap();
        let entry = entries.iter().find(|e| e.path == CA_BUNDLE_PATH).unwrap();
        assert_eq!(
            entry.node,
            crate::cpio::Node::File(b"-----BEGIN CERTIFICATE-----\nroot\n".to_vec())
        );
        assert!(entries.iter().any(|e| e.path == "etc/ssl/certs"));
        // Without a bundle there is none.
        let plain = build(&options(dir.path(), "plain"), None, &mut |_| {}).unwrap();
        let raw = zstd::decode_all(&fs::read(&plain.initramfs).unwrap()[..]).unwrap();
        let entries = crate::cpio::read(&raw).unwrap();
        assert!(entries.iter().all(|e| e.path != CA_BUNDLE_PATH));
    }

    #[test]
    fn the_key_layer_is_small_and_prepended() {
        let key = SigningKey::generate().unwrap().public_key();
        let layer = key_layer(&[key], 0).unwrap();
        assert!(layer.len() < 1024);
        let entries = crate::cpio::read(&layer).unwrap();
        let name = format!("etc/skiff/trusted-keys/{}.pub", key.key_id());
        let entry = entries.iter().find(|e| e.path == name).unwrap();
        let crate::cpio::Node::File(data) = &entry.node else {
            panic!("not a file")
        };
        assert_eq!(
            PublicKey::parse(&String::from_utf8_lossy(data)).unwrap(),
            key
        );
        let full = trusted_initramfs(b"BASE", &[key], 0).unwrap();
        assert!(full.starts_with(&layer) && full.ends_with(b"BASE"));
    }

    #[test]
    fn a_missing_module_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = options(dir.path(), "out");
        opts.modules = vec!["nonexistent".into()];
        let err = build(&opts, None, &mut |_| {}).unwrap_err();
        let text = format!("{err}: {}", std::error::Error::source(&err).unwrap());
        assert!(text.contains("nonexistent"), "{text}");
    }
}
