//! `skiff`: one binary for every role of a skiff node, and the tools around it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod tools;

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
        /// Another name or IP the serving certificate must cover (repeatable).
        #[arg(long, value_name = "NAME")]
        san: Vec<String>,
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
    /// Run as PID 1 (what the kernel starts as /init).
    #[command(hide = true)]
    Init,
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

/// Exit codes: 0 success, 1 a runtime failure, 2 bad usage (clap's own), 3 bad configuration
/// or local state (data directory, certificates, store), 4 could not listen.
fn exit_code(e: &skiff_apiserver::ServerError) -> u8 {
    use skiff_apiserver::ServerError as E;
    match e {
        E::Listen { .. } => 4,
        E::DataDir { .. } | E::Store { .. } | E::Pki { .. } | E::Tokens(_) => 3,
        E::Bootstrap(_) => 1,
    }
}

fn main() -> ExitCode {
    // The kernel starts /init with no subcommand: PID 1 is always init.
    if std::process::id() == 1 {
        skiff_init::run();
    }
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Server {
            data_dir,
            listen,
            ca_cert,
            ca_key,
            san,
        } => {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("skiff: cannot start the async runtime: {e}");
                    return ExitCode::from(1);
                }
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
            runtime.block_on(server(opts))
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
            } => cli_result(
                "skiff cluster create",
                tools::cluster_create(workers, control_planes, &state, image, memory, api_port),
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
        Command::Init => {
            eprintln!("skiff init: only the kernel starts init (as PID 1)");
            ExitCode::from(2)
        }
    }
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

async fn server(opts: skiff_apiserver::ServerOptions) -> ExitCode {
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
    server.serve(shutdown_signal()).await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
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
