//! The host-side subcommands (`gen config`, `image build`, `cluster ...`): argument glue and
//! output around the library calls.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

pub fn gen_config(cluster_name: String, endpoint: String, out: &Path, force: bool) -> Result<()> {
    let opts = skiff_genconfig::GenOptions {
        cluster_name,
        endpoint,
        force,
    };
    let (secrets, written) = skiff_genconfig::gen_config(&opts, out)?;
    for path in written.all() {
        println!("wrote {}", path.display());
    }
    println!(
        "config-signing key {} (keep secrets.yaml safe: it holds every cluster secret)",
        secrets.public_key().key_id()
    );
    Ok(())
}

/// The build date: SOURCE_DATE_EPOCH, else the last commit's time, else 0.
fn source_date_epoch(workspace: &Path) -> u32 {
    if let Some(epoch) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return epoch;
    }
    std::process::Command::new("git")
        .args(["log", "-1", "--format=%ct"])
        .current_dir(workspace)
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(0)
}

/// The image's manifest-signing key: the given file, or one kept in the cache.
fn manifest_key(cache: &Path, path: Option<&Path>) -> Result<skiff_machine::SigningKey> {
    let path = path.map_or_else(|| cache.join("image-signing.key"), Path::to_owned);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(skiff_machine::SigningKey::from_pem(&text)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = skiff_machine::SigningKey::generate()?;
            std::fs::create_dir_all(cache)?;
            skiff_pki::write_private(&path, key.to_pem().as_bytes())?;
            Ok(key)
        }
        Err(e) => Err(format!("{}: {e}", path.display()).into()),
    }
}

pub fn image_build(
    out: &Path,
    binary: Option<PathBuf>,
    cache: &Path,
    signing_key: Option<&Path>,
) -> Result<()> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bar = indicatif::ProgressBar::new(9);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let binary = match binary {
        Some(b) => b,
        None => {
            bar.set_message("building the static skiff binary (cargo --release)");
            bar.suspend(|| skiff_image_build::build_static_binary(workspace))?
        }
    };
    bar.inc(1);
    bar.set_message("fetching the kernel package (apt-get download)");
    let kernel = skiff_image_build::fetch_kernel(cache)?;
    bar.inc(1);
    let key = manifest_key(cache, signing_key)?;
    let opts = skiff_image_build::BuildOptions {
        out: out.to_owned(),
        binary,
        kernel,
        modules: skiff_image_build::NODE_MODULES
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        source_date_epoch: source_date_epoch(workspace),
        zstd_level: 19,
        ca_bundle: Path::new(skiff_image_build::HOST_CA_BUNDLE)
            .is_file()
            .then(|| PathBuf::from(skiff_image_build::HOST_CA_BUNDLE)),
    };
    let report = skiff_image_build::build(&opts, Some(&key), &mut |step| {
        bar.inc(1);
        bar.set_message(step.to_owned());
    })?;
    bar.finish_and_clear();
    let mib = |b: u64| {
        format!(
            "{:.1}",
            u32::try_from(b / 1024).unwrap_or(u32::MAX) as f32 / 1024.0
        )
    };
    println!(
        "kernel {} ({} MiB), initramfs {} MiB ({} MiB unpacked, {} modules), total {} MiB",
        opts.kernel.package,
        mib(report.kernel_bytes),
        mib(report.initramfs_bytes),
        mib(report.initramfs_uncompressed),
        report.modules,
        mib(report.kernel_bytes + report.initramfs_bytes)
    );
    println!(
        "wrote {}, {} and {}",
        report.vmlinuz.display(),
        report.initramfs.display(),
        report.manifest.display()
    );
    Ok(())
}

pub fn cluster_create(
    workers: u32,
    control_planes: u32,
    state: &Path,
    image: Option<PathBuf>,
    (memory, worker_memory): (u32, Option<u32>),
    api_port: Option<u16>,
    registry_mirrors: &[String],
) -> Result<()> {
    if control_planes != 1 {
        return Err(
            "only --control-planes 1 is supported so far (HA needs the etcd backend)".into(),
        );
    }
    let image = match image {
        Some(dir) => dir,
        None => {
            let dir = state.join("image");
            if !dir.join("initramfs").is_file() {
                image_build(&dir, None, Path::new("target/skiff-cache"), None)?;
            }
            dir
        }
    };
    let started = SystemTime::now();
    let mut builder = skiff_qemu::ClusterBuilder::new(state, &image)
        .workers(workers)
        .control_planes(control_planes)
        .memory_mib(memory)
        .worker_memory_mib(worker_memory)
        .api_port(api_port)
        .progress(true);
    for mirror in registry_mirrors {
        let (registry, url) = mirror
            .split_once('=')
            .ok_or_else(|| format!("--registry-mirror {mirror:?}: want REGISTRY=URL"))?;
        builder = builder.registry_mirror(registry, url);
    }
    let cluster = match builder.create() {
        Ok(cluster) => cluster,
        Err(e) => {
            eprintln!(
                "skiff: cluster create failed; the VMs it started are stopped. Console logs stay in {}/nodes/*/console.log; `skiff cluster destroy --state {}` removes them.",
                state.display(),
                state.display()
            );
            return Err(e.into());
        }
    };
    let took = SystemTime::now()
        .duration_since(started)
        .unwrap_or_default()
        .as_secs_f64();
    let record = cluster.keep_running();
    println!(
        "cluster {} is up in {took:.1}s ({}, API on 127.0.0.1:{})",
        record.name, record.accel, record.api_port
    );
    println!(
        "kubectl --kubeconfig {} get nodes   # every VM Ready; control planes tainted NoSchedule",
        record.kubeconfig.display()
    );
    println!(
        "skiff ctl --config {} --nodes {} version   # the machine API",
        record.skiffconfig.display(),
        record
            .nodes
            .first()
            .map_or("NODE", |n| n.machine_api.as_str())
    );
    println!(
        "skiff cluster status --state {0}    # VMs, console logs, boot timelines\nskiff cluster destroy --state {0}   # stop every VM, remove everything",
        state.display()
    );
    Ok(())
}

pub fn cluster_status(state: &Path) -> Result<()> {
    let (record, nodes) = skiff_qemu::status(state)?;
    println!(
        "cluster {} ({}), API 127.0.0.1:{}",
        record.name, record.accel, record.api_port
    );
    for node in nodes {
        println!(
            "{:<10} {:<12} {:<10} {:<12} {}",
            node.record.name,
            node.record.role,
            if node.running { "running" } else { "stopped" },
            node.record.address,
            node.record.console.display()
        );
        if !node.record.machine_api.is_empty() {
            println!("           machine API: {}", node.record.machine_api);
        }
        let last = skiff_qemu::last_boot(&node.phases);
        if !last.is_empty() {
            println!("           boot: {}", skiff_qemu::render_timeline(last));
        }
        for line in &node.state_disk {
            println!("           state: {line}");
        }
    }
    Ok(())
}

pub fn cluster_reboot(state: &Path, node: &str) -> Result<()> {
    let phases = skiff_qemu::reboot_node(state, node, Duration::from_secs(240))?;
    println!(
        "{node} is up again: {}",
        skiff_qemu::render_timeline(skiff_qemu::last_boot(&phases))
    );
    Ok(())
}

pub fn cluster_destroy(state: &Path) -> Result<()> {
    skiff_qemu::destroy(state)?;
    println!("destroyed {}", state.display());
    Ok(())
}
