//! `skiff`: one binary for every role of a skiff node, and the tools around it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

mod tools;

/// mimalloc instead of glibc's malloc: the API server's create path spent about a quarter of its
/// CPU in glibc's allocator; with mimalloc (transparent huge pages off, which otherwise doubled
/// idle RSS) server CPU per create fell from 82 to 58 µs and RSS with 10,000 pods from 51 to
/// 45 MiB (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "skiff",
    version,
    about = "A minimal, API-managed OS for Kubernetes-style cluster nodes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane's Kubernetes-compatible API server on this host.
    Server {
        /// Where the store, certificates and the admin kubeconfig live.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// Address and port to serve HTTPS on.
        #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:6443")]
        listen: SocketAddr,
        /// Use this cluster CA certificate (PEM) instead of generating one; needs --ca-key.
        #[arg(long, value_name = "FILE", requires = "ca_key")]
        ca_cert: Option<PathBuf>,
        /// The cluster CA's private key (PEM).
        #[arg(long, value_name = "FILE", requires = "ca_cert")]
        ca_key: Option<PathBuf>,
        /// Service-account signing key (PEM PKCS#8 P-256, from `skiff gen config`); without it
        /// the server makes one in DATA/pki/sa.key on first start.
        #[arg(long, value_name = "FILE")]
        service_account_key_file: Option<PathBuf>,
        /// Another name or IP the serving certificate must cover (repeatable).
        #[arg(long, value_name = "NAME")]
        san: Vec<String>,
        /// Serve the API only: no controllers, no scheduler.
        #[arg(long)]
        no_controllers: bool,
        /// A node whose heartbeat Lease is older than this becomes NotReady (Unknown).
        #[arg(long, value_name = "DURATION", default_value = "40s", value_parser = parse_duration)]
        node_monitor_grace_period: Duration,
        /// How long pods without their own toleration stay on an unreachable or not-ready node.
        #[arg(long, value_name = "SECONDS", default_value_t = 300)]
        default_toleration_seconds: i64,
        /// First delay before a failed Job pod is replaced (doubles per failure).
        #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
        job_backoff: Duration,
    },
    /// Run the node agent: register this host as a node and run the pods bound to it.
    Agent {
        /// Kubeconfig with the API server's address and this node's credentials.
        #[arg(long, value_name = "FILE")]
        kubeconfig: PathBuf,
        /// The node's name (default: the host name).
        #[arg(long, value_name = "NAME")]
        node_name: Option<String>,
        /// Where containers, volumes, logs and local state live.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// Registry mirror, e.g. `docker.io=http://127.0.0.1:5000` (repeatable).
        #[arg(long = "registry-mirror", value_name = "REGISTRY=URL")]
        registry_mirrors: Vec<String>,
        /// The node's IP (default: the address used to reach the API server).
        #[arg(long, value_name = "IP")]
        node_ip: Option<std::net::IpAddr>,
        /// Port of the agent's HTTPS endpoint (logs).
        #[arg(long, value_name = "PORT", default_value_t = 10250)]
        port: u16,
        /// Run images from root filesystem directories `DIR/<name>` instead of pulling them.
        #[arg(long, value_name = "DIR")]
        local_images: Option<PathBuf>,
        /// Percent of the image filesystem in use above which unused images are removed.
        #[arg(long, value_name = "PERCENT", default_value_t = 85, value_parser = clap::value_parser!(u8).range(1..=100))]
        image_gc_high_threshold: u8,
        /// Percent of the image filesystem in use image garbage collection frees down to.
        #[arg(long, value_name = "PERCENT", default_value_t = 80, value_parser = clap::value_parser!(u8).range(0..=100))]
        image_gc_low_threshold: u8,
        /// Labels the Node registers with, `KEY=VALUE[,KEY=VALUE...]` (the kubelet's flag; a
        /// `node-role.kubernetes.io/ROLE` label replaces the default `worker` role).
        #[arg(long, value_name = "KEY=VALUE,...", value_parser = parse_node_labels)]
        node_labels: Vec<NodeLabels>,
        /// Taints the Node registers with, `KEY[=VALUE]:EFFECT[,...]`, EFFECT one of
        /// NoSchedule, PreferNoSchedule, NoExecute (the kubelet's flag). Merged into an
        /// existing Node's taints.
        #[arg(long, value_name = "KEY[=VALUE]:EFFECT,...", value_parser = parse_taints)]
        register_with_taints: Vec<Taints>,
    },
    /// Generate things: `skiff gen config`.
    Gen {
        #[command(subcommand)]
        what: GenCommand,
    },
    /// Build the boot artifact: `skiff image build`.
    Image {
        #[command(subcommand)]
        what: ImageCommand,
    },
    /// QEMU clusters of skiff nodes: create, status, destroy.
    Cluster {
        #[command(subcommand)]
        what: ClusterCommand,
    },
    /// Run simulated ("hollow") nodes against a cluster: they register, heartbeat, and report
    /// their pods Running without running anything.
    Sim {
        /// How many nodes.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Admin kubeconfig of the cluster.
        #[arg(long, value_name = "FILE")]
        kubeconfig: PathBuf,
        /// Node names are PREFIX + index.
        #[arg(long, default_value = "sim-")]
        prefix: String,
        /// Index of the first node.
        #[arg(long, default_value_t = 0)]
        first_index: usize,
        /// Allocatable CPU of each node.
        #[arg(long, default_value = "4")]
        cpu: String,
        /// Allocatable memory of each node.
        #[arg(long, default_value = "16Gi")]
        memory: String,
        /// Pods per node.
        #[arg(long, default_value_t = 110)]
        max_pods: u32,
        /// Extra node label KEY=VALUE (repeatable).
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// Lease renewal interval.
        #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
        heartbeat: Duration,
    },
    /// Talk to nodes through the machine API (mutual TLS, port 50000): version, services,
    /// logs, dmesg, reboot, shutdown, apply-config, upgrade, kubeconfig, reset.
    Ctl(skiff_machine_api::ctl::CtlArgs),
    /// Serve the machine API on this host (development and tests; never reboots the host).
    #[command(hide = true, name = "machine-api")]
    MachineApi {
        #[command(subcommand)]
        what: MachineApiCommand,
    },
    /// Run as PID 1 (what the kernel starts as /init).
    #[command(hide = true)]
    Init,
}

#[derive(Subcommand)]
enum MachineApiCommand {
    /// Serve the machine API of this host with a host-mode node.
    ServeHost(skiff_machine_api::ctl::ServeHostArgs),
}

#[derive(Subcommand)]
enum GenCommand {
    /// A cluster's secrets, signed controlplane.yaml and worker.yaml, kubeconfig and skiffconfig.
    Config {
        #[arg(long, value_name = "NAME")]
        cluster_name: String,
        /// The Kubernetes API endpoint every node uses.
        #[arg(long, value_name = "https://HOST:6443")]
        endpoint: String,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Overwrite existing files in DIR.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum ImageCommand {
    /// vmlinuz + initramfs (+ manifest.json and its signature) from Debian's cloud kernel and
    /// a static skiff binary.
    Build {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The static skiff binary to use as /init (default: build it with cargo).
        #[arg(long, value_name = "FILE")]
        binary: Option<PathBuf>,
        /// Where the kernel package is downloaded and unpacked.
        #[arg(long, value_name = "DIR", default_value = "target/skiff-cache")]
        cache: PathBuf,
        /// Ed25519 key (PEM) that signs manifest.json (default: one kept in the cache).
        #[arg(long, value_name = "FILE")]
        signing_key: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Boot a cluster under QEMU and write STATE/kubeconfig.
    Create {
        #[arg(long, default_value_t = 0)]
        workers: u32,
        #[arg(long, default_value_t = 1)]
        control_planes: u32,
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
        /// A built image directory (default: build one into STATE/image).
        #[arg(long, value_name = "DIR")]
        image: Option<PathBuf>,
        /// Memory per VM, MiB.
        #[arg(long, default_value_t = 512)]
        memory: u32,
        /// Host port for the API on 127.0.0.1 (default: a free one).
        #[arg(long)]
        api_port: Option<u16>,
        /// Memory per worker VM, MiB (default: --memory).
        #[arg(long)]
        worker_memory: Option<u32>,
        /// Registry mirror for the nodes, e.g. `docker.io=http://10.0.2.2:5000` (10.0.2.2 is
        /// the host's 127.0.0.1 as the VMs see it). Repeatable.
        #[arg(long = "registry-mirror", value_name = "REGISTRY=URL")]
        registry_mirrors: Vec<String>,
    },
    /// List the VMs, their console logs and boot timelines.
    Status {
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
    },
    /// Power-cycle one node (as a power cut would) and wait until it is up again.
    Reboot {
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
        #[arg(long, value_name = "NAME")]
        node: String,
    },
    /// Stop every VM and remove everything the cluster made.
    Destroy {
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
    },
}

/// One `--node-labels` value.
#[derive(Debug, Clone)]
struct NodeLabels(Vec<(String, String)>);

fn parse_node_labels(text: &str) -> Result<NodeLabels, skiff_agent::node::FlagError> {
    skiff_agent::node::parse_node_labels(text).map(NodeLabels)
}

/// One `--register-with-taints` value.
#[derive(Debug, Clone)]
struct Taints(Vec<skiff_agent::node::Taint>);

fn parse_taints(text: &str) -> Result<Taints, skiff_agent::node::FlagError> {
    skiff_agent::node::parse_taints(text).map(Taints)
}

/// "40s", "500ms", "5m", "1h" or plain seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "invalid duration unit in {s:?} (use ms, s, m or h)"
            ));
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// Exit codes: 0 success, 1 a runtime failure, 2 bad usage (clap's own), 3 bad configuration
/// or local state (data directory, certificates, store), 4 could not listen.
fn exit_code(e: &skiff_apiserver::ServerError) -> u8 {
    use skiff_apiserver::ServerError as E;
    match e {
        E::Listen { .. } => 4,
        E::DataDir { .. }
        | E::Store { .. }
        | E::Pki { .. }
        | E::Tokens(_)
        | E::ServiceAccountKey(_) => 3,
        E::Bootstrap(_) => 1,
    }
}

fn main() -> ExitCode {
    // The kernel starts /init with no subcommand: PID 1 is always init.
    if std::process::id() == 1 {
        skiff_init::run();
    }
    // The container helper runs before anything else starts a thread: it forks.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("container-init") {
        let code = skiff_agent::helper_main(&args[2..]);
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,netlink_packet_route=error")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Server {
            data_dir,
            listen,
            ca_cert,
            ca_key,
            service_account_key_file,
            san,
            no_controllers,
            node_monitor_grace_period,
            default_toleration_seconds,
            job_backoff,
        } => {
            let Some(runtime) = runtime() else {
                return ExitCode::from(1);
            };
            let mut opts = skiff_apiserver::ServerOptions::new(data_dir, listen);
            opts.extra_sans = san;
            if let (Some(cert), Some(key)) = (ca_cert, ca_key) {
                match (
                    std::fs::read_to_string(&cert),
                    std::fs::read_to_string(&key),
                ) {
                    (Ok(cert_pem), Ok(key_pem)) => {
                        opts.ca = Some(skiff_apiserver::SeedCa { cert_pem, key_pem });
                    }
                    (Err(e), _) | (_, Err(e)) => {
                        eprintln!("skiff server: cannot read the CA files: {e}");
                        return ExitCode::from(3);
                    }
                }
            }
            if let Some(path) = service_account_key_file {
                match std::fs::read_to_string(&path) {
                    Ok(pem) => opts.service_account_key = Some(pem),
                    Err(e) => {
                        eprintln!(
                            "skiff server: cannot read the service-account key {}: {e}",
                            path.display()
                        );
                        return ExitCode::from(3);
                    }
                }
            }
            let controllers = (!no_controllers).then(|| skiff_controllers::Options {
                node_monitor_grace_period,
                default_toleration_seconds,
                job_backoff,
                ..skiff_controllers::Options::default()
            });
            runtime.block_on(server(opts, controllers))
        }
        Command::Gen {
            what:
                GenCommand::Config {
                    cluster_name,
                    endpoint,
                    out,
                    force,
                },
        } => cli_result(
            "skiff gen config",
            tools::gen_config(cluster_name, endpoint, &out, force),
        ),
        Command::Image {
            what:
                ImageCommand::Build {
                    out,
                    binary,
                    cache,
                    signing_key,
                },
        } => cli_result(
            "skiff image build",
            tools::image_build(&out, binary, &cache, signing_key.as_deref()),
        ),
        Command::Cluster { what } => match what {
            ClusterCommand::Create {
                workers,
                control_planes,
                state,
                image,
                memory,
                api_port,
                worker_memory,
                registry_mirrors,
            } => cli_result(
                "skiff cluster create",
                tools::cluster_create(
                    workers,
                    control_planes,
                    &state,
                    image,
                    (memory, worker_memory),
                    api_port,
                    &registry_mirrors,
                ),
            ),
            ClusterCommand::Status { state } => {
                cli_result("skiff cluster status", tools::cluster_status(&state))
            }
            ClusterCommand::Reboot { state, node } => {
                cli_result("skiff cluster reboot", tools::cluster_reboot(&state, &node))
            }
            ClusterCommand::Destroy { state } => {
                cli_result("skiff cluster destroy", tools::cluster_destroy(&state))
            }
        },
        Command::Sim {
            nodes,
            kubeconfig,
            prefix,
            first_index,
            cpu,
            memory,
            max_pods,
            labels,
            heartbeat,
        } => {
            let mut label_map = std::collections::BTreeMap::new();
            for l in &labels {
                let Some((k, v)) = l.split_once('=') else {
                    eprintln!("skiff sim: --label wants KEY=VALUE, got {l:?}");
                    return ExitCode::from(2);
                };
                label_map.insert(k.to_string(), v.to_string());
            }
            let opts = skiff_controllers::sim::SimOptions {
                nodes,
                prefix,
                first_index,
                cpu,
                memory,
                max_pods,
                labels: label_map,
                heartbeat,
            };
            let Some(runtime) = runtime() else {
                return ExitCode::from(1);
            };
            runtime.block_on(sim(kubeconfig, opts))
        }
        Command::Agent {
            kubeconfig,
            node_name,
            data_dir,
            registry_mirrors,
            node_ip,
            port,
            local_images,
            image_gc_high_threshold,
            image_gc_low_threshold,
            node_labels,
            register_with_taints,
        } => {
            let node_name = node_name.unwrap_or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_owned())
                    .unwrap_or_else(|_| "localhost".into())
            });
            let opts = skiff_agent::AgentOptions {
                kubeconfig,
                node_name,
                data_dir,
                registry_mirrors,
                node_ip,
                port,
                local_images,
                image_gc: skiff_agent::image::GcPolicy {
                    high_percent: image_gc_high_threshold,
                    low_percent: image_gc_low_threshold.min(image_gc_high_threshold),
                    ..skiff_agent::image::GcPolicy::default()
                },
                // Repeated flags add up; a later value for the same key or taint wins.
                node_labels: node_labels.into_iter().flat_map(|l| l.0).collect(),
                register_with_taints: register_with_taints
                    .into_iter()
                    .fold(Vec::new(), |all, t| {
                        skiff_agent::node::merge_taints(&all, &t.0)
                    }),
            };
            let Some(runtime) = runtime() else {
                return ExitCode::from(1);
            };
            runtime.block_on(agent(opts))
        }
        Command::Ctl(args) => {
            let Some(runtime) = runtime() else {
                return ExitCode::from(1);
            };
            match runtime.block_on(skiff_machine_api::ctl::run(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("skiff ctl: {e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
        Command::MachineApi {
            what: MachineApiCommand::ServeHost(args),
        } => {
            let Some(runtime) = runtime() else {
                return ExitCode::from(1);
            };
            match runtime.block_on(skiff_machine_api::ctl::serve_host(args, shutdown_signal())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("skiff machine-api: {e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
        Command::Init => {
            eprintln!("skiff init: only the kernel starts init (as PID 1)");
            ExitCode::from(2)
        }
    }
}

/// A multi-threaded tokio runtime, or None after saying why it could not start.
fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("skiff: cannot start the async runtime: {e}");
            None
        }
    }
}

async fn sim(kubeconfig: PathBuf, opts: skiff_controllers::sim::SimOptions) -> ExitCode {
    let client = match skiff_controllers::client_from_kubeconfig(&kubeconfig).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("skiff sim: {}", error_chain(&e));
            return ExitCode::from(3);
        }
    };
    tokio::select! {
        r = skiff_controllers::sim::run_sim(client, opts) => match r {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("skiff sim: {}", error_chain(&e));
                ExitCode::from(1)
            }
        },
        () = shutdown_signal() => ExitCode::SUCCESS,
    }
}

/// Start the controller manager and the scheduler inside this process.
///
/// They reach the API through its own request handler rather than loopback HTTPS: no TCP,
/// TLS or port, but every request still carries a user and passes authentication, validation
/// and admission exactly as a remote client's would (the same `Api::handle` entry point).
/// Saving the TLS and socket work matters at scale: binding 5,000 pods/s is 5,000 requests/s.
fn start_control_loops(
    api: std::sync::Arc<skiff_apiserver::Api>,
    opts: skiff_controllers::Options,
) {
    let client_as = |user: &str| {
        let api = api.clone();
        let user = skiff_apiserver::User::new(user, vec!["system:masters".into()]);
        skiff_controllers::in_process_client(move |req| {
            let api = api.clone();
            let user = user.clone();
            async move { api.handle(req, Some(user)).await }
        })
    };
    let controllers = client_as("system:kube-controller-manager");
    let scheduler = client_as("system:kube-scheduler");
    tokio::spawn(skiff_controllers::run_controllers(controllers, opts));
    tokio::spawn(skiff_controllers::scheduler::run_scheduler(
        scheduler,
        skiff_controllers::scheduler::SchedulerOptions::default(),
    ));
}

/// One line on stderr for an error, exit code 1.
fn cli_result(what: &str, result: Result<(), Box<dyn std::error::Error>>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{what}: {}", error_chain(e.as_ref()));
            ExitCode::from(1)
        }
    }
}

async fn server(
    opts: skiff_apiserver::ServerOptions,
    controllers: Option<skiff_controllers::Options>,
) -> ExitCode {
    let data_dir = opts.data_dir.clone();
    let server = match skiff_apiserver::Server::start(opts).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("skiff server: {}", error_chain(&e));
            return ExitCode::from(exit_code(&e));
        }
    };
    tracing::info!(
        addr = %server.addr,
        kubeconfig = %data_dir.join("kubeconfig").display(),
        "serving the Kubernetes API; try: kubectl --kubeconfig {} get namespaces",
        data_dir.join("kubeconfig").display()
    );
    if let Some(mut opts) = controllers {
        opts.root_ca = std::fs::read_to_string(data_dir.join("pki/ca.crt")).ok();
        server.api.expect_default_service_accounts();
        start_control_loops(server.api.clone(), opts);
    }
    server.serve(shutdown_signal()).await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

async fn agent(opts: skiff_agent::AgentOptions) -> ExitCode {
    match skiff_agent::run(opts, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("skiff agent: {}", error_chain(&e));
            ExitCode::from(1)
        }
    }
}

/// "outer: inner: innermost" from an error and its sources.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(extra: &[&str]) -> Result<Cli, clap::Error> {
        let base = ["skiff", "agent", "--kubeconfig", "k", "--data-dir", "d"];
        Cli::try_parse_from(base.iter().chain(extra))
    }

    /// The first line of a refused command line (what the user sees before clap's hint).
    fn refusal(extra: &[&str]) -> String {
        match agent(extra) {
            Ok(_) => panic!("{extra:?} was accepted"),
            Err(e) => e.to_string().lines().next().unwrap_or_default().to_owned(),
        }
    }

    #[test]
    fn agent_takes_kubelet_style_labels_and_taints() {
        let cli = agent(&[
            "--node-labels",
            "node-role.kubernetes.io/control-plane=,zone=a",
            "--node-labels",
            "zone=b",
            "--register-with-taints",
            "node-role.kubernetes.io/control-plane:NoSchedule",
            "--register-with-taints",
            "dedicated=gpu:NoExecute",
        ])
        .unwrap();
        let Command::Agent {
            node_labels,
            register_with_taints,
            ..
        } = cli.command
        else {
            panic!("not the agent command");
        };
        let labels: Vec<(String, String)> = node_labels.into_iter().flat_map(|l| l.0).collect();
        assert_eq!(labels.len(), 3, "{labels:?}");
        let taints: Vec<String> = register_with_taints
            .into_iter()
            .flat_map(|t| t.0)
            .map(|t| format!("{}={}:{}", t.key, t.value.unwrap_or_default(), t.effect))
            .collect();
        assert_eq!(
            taints,
            [
                "node-role.kubernetes.io/control-plane=:NoSchedule",
                "dedicated=gpu:NoExecute"
            ]
        );
    }

    #[test]
    fn bad_labels_and_taints_are_refused_naming_the_flag() {
        let line = refusal(&["--node-labels", "zone"]);
        assert!(line.contains("--node-labels"), "{line}");
        assert!(line.contains("\"zone\" is not KEY=VALUE"), "{line}");
        let line = refusal(&["--node-labels", "zone=a b"]);
        assert!(
            line.contains("--node-labels") && line.contains("value"),
            "{line}"
        );
        let line = refusal(&["--register-with-taints", "dedicated=gpu"]);
        assert!(line.contains("--register-with-taints"), "{line}");
        assert!(line.contains("KEY[=VALUE]:EFFECT"), "{line}");
        let line = refusal(&["--register-with-taints", "k:Never"]);
        assert!(
            line.contains("--register-with-taints") && line.contains("\"Never\""),
            "{line}"
        );
    }
}
