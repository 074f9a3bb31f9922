//! `skiff`: one binary for every role of a skiff node, and the tools around it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    match cli.command {
        Command::Server { data_dir, listen } => runtime.block_on(server(data_dir, listen)),
        Command::Agent {
            kubeconfig,
            node_name,
            data_dir,
            registry_mirrors,
            node_ip,
            port,
            local_images,
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
            };
            runtime.block_on(agent(opts))
        }
    }
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

async fn server(data_dir: PathBuf, listen: SocketAddr) -> ExitCode {
    let opts = skiff_apiserver::ServerOptions::new(data_dir.clone(), listen);
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
