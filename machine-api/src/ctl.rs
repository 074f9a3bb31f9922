//! `skiff ctl`: the command line of the machine API (arguments, output, exit codes), and the
//! host-mode server `skiff machine-api serve-host` that the integration tests talk to.
//!
//! Exit codes: 0 done, 1 local failure writing output, 2 bad local input (skiffconfig, files,
//! arguments), 3 a node could not be reached, 4 TLS or authorization refused, 5 the node
//! refused the request (bad config, wrong node for the call, unimplemented).

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use skiff_genconfig::SkiffConfig;
use skiff_pki::CertifiedKey;
use tokio_stream::StreamExt;

use crate::client::{Client, ClientError};
use crate::host::{HostNode, HostOptions};
use crate::node::Power;
use crate::proto;
use crate::tls::Credentials;

/// `skiff ctl` arguments.
#[derive(Debug, clap::Args)]
pub struct CtlArgs {
    /// The machine-API client config (`skiffconfig` from `skiff gen config`).
    #[arg(long, env = "SKIFFCONFIG", value_name = "FILE")]
    pub config: PathBuf,
    /// Nodes to act on (IP, HOST or HOST:PORT; comma-separated). Default: the context's
    /// endpoints.
    #[arg(long, short = 'n', value_name = "IP,...", value_delimiter = ',')]
    pub nodes: Vec<String>,
    /// Context of the skiffconfig to use (default: its current context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// What `skiff ctl` does.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum CtlCommand {
    /// skiff and kernel versions, the config generation, the role and the boot timeline.
    Version,
    /// The node's supervised services.
    Services,
    /// A service's recent output.
    Logs {
        /// `server` on a control plane, `agent` on a worker.
        service: String,
        /// Keep printing new lines.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long, value_name = "N")]
        tail: Option<u32>,
    },
    /// The kernel's messages.
    Dmesg {
        #[arg(short = 'f', long)]
        follow: bool,
        #[arg(long, value_name = "N")]
        tail: Option<u32>,
    },
    /// Stop the services in order and reboot.
    Reboot,
    /// Stop the services in order and power off.
    Shutdown,
    /// Send a signed machine config; the node verifies and stores it, and a reboot applies it.
    ApplyConfig {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Replace the node's boot artifact (not available yet).
    Upgrade {
        #[arg(value_name = "IMAGE")]
        image: String,
    },
    /// An admin kubeconfig from a control-plane node, to OUT (default: standard output).
    Kubeconfig {
        #[arg(value_name = "OUT")]
        out: Option<PathBuf>,
    },
    /// Wipe the node's state at its next boot, and reboot.
    Reset,
}

/// Why `skiff ctl` failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not a skiffconfig ({message}); pass the `skiffconfig` file `skiff gen config` wrote"
    )]
    BadConfig { path: String, message: String },
    #[error("{path} has no context `{context}`; contexts: {known}")]
    NoContext {
        path: String,
        context: String,
        known: String,
    },
    #[error("no nodes to talk to: pass --nodes IP or list endpoints in the skiffconfig context")]
    NoNodes,
    #[error("{0}")]
    Usage(String),
    #[error("cannot write {what}: {source}")]
    Write {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Host(String),
}

impl CtlError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Client(e) => u8::try_from(e.exit_code()).unwrap_or(1),
            Self::Write { .. } | Self::Host(_) => 1,
            Self::Read { .. }
            | Self::BadConfig { .. }
            | Self::NoContext { .. }
            | Self::NoNodes
            | Self::Usage(_) => 2,
        }
    }
}

/// Reads a skiffconfig and picks the context: its credentials and endpoints.
pub fn load_config(
    path: &Path,
    context: Option<&str>,
) -> Result<(Credentials, Vec<String>), CtlError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| CtlError::Read {
        path: shown.clone(),
        source,
    })?;
    let config: SkiffConfig = serde_yaml::from_str(&text).map_err(|e| CtlError::BadConfig {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    let name = context.unwrap_or(&config.context);
    let Some(ctx) = config.contexts.get(name) else {
        return Err(CtlError::NoContext {
            path: shown,
            context: name.to_owned(),
            known: config
                .contexts
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    let creds = Credentials {
        ca_pem: ctx.ca.clone(),
        identity: CertifiedKey {
            cert_pem: ctx.crt.clone(),
            key_pem: ctx.key.clone(),
        },
    };
    Ok((creds, ctx.endpoints.clone()))
}

/// Runs one `skiff ctl` command, printing to standard output.
pub async fn run(args: CtlArgs) -> Result<(), CtlError> {
    let (creds, endpoints) = load_config(&args.config, args.context.as_deref())?;
    let nodes = if args.nodes.is_empty() {
        endpoints
    } else {
        args.nodes.clone()
    };
    let nodes: Vec<String> = nodes
        .into_iter()
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .collect();
    if nodes.is_empty() {
        return Err(CtlError::NoNodes);
    }
    let follows = matches!(
        args.command,
        CtlCommand::Logs { follow: true, .. } | CtlCommand::Dmesg { follow: true, .. }
    );
    if nodes.len() > 1 && follows {
        return Err(CtlError::Usage(
            "follow one node at a time: pass --nodes IP".to_owned(),
        ));
    }
    if nodes.len() > 1 && matches!(args.command, CtlCommand::Kubeconfig { .. }) {
        return Err(CtlError::Usage(
            "a kubeconfig comes from one control plane: pass --nodes IP".to_owned(),
        ));
    }
    let apply = match &args.command {
        CtlCommand::ApplyConfig { file } => {
            Some(std::fs::read(file).map_err(|source| CtlError::Read {
                path: file.display().to_string(),
                source,
            })?)
        }
        _ => None,
    };
    let many = nodes.len() > 1;
    let mut first_error = None;
    for node in &nodes {
        let result = run_on(node, &creds, &args.command, apply.as_deref(), many).await;
        if let Err(e) = result {
            if !many {
                return Err(e);
            }
            eprintln!("skiff ctl: {e}");
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn out(what: &str) -> impl FnOnce(std::io::Error) -> CtlError + '_ {
    move |source| CtlError::Write {
        what: what.to_owned(),
        source,
    }
}

async fn run_on(
    node: &str,
    creds: &Credentials,
    command: &CtlCommand,
    apply: Option<&[u8]>,
    many: bool,
) -> Result<(), CtlError> {
    let client = Client::connect(node, creds).await?;
    let mut grpc = client.grpc.clone();
    let fail = |s: tonic::Status| CtlError::Client(client.status_error(&s));
    let prefix = if many {
        format!("{node}: ")
    } else {
        String::new()
    };
    let stdout = std::io::stdout();
    match command {
        CtlCommand::Version => {
            let v = grpc
                .version(proto::VersionRequest {})
                .await
                .map_err(fail)?
                .into_inner();
            print!("{}", format_version(&prefix, &v));
        }
        CtlCommand::Services => {
            let reply = grpc
                .services(proto::ServicesRequest {})
                .await
                .map_err(fail)?
                .into_inner();
            print!("{}", format_services(&prefix, &reply.services));
        }
        CtlCommand::Logs {
            service,
            follow,
            tail,
        } => {
            let mut stream = grpc
                .logs(proto::LogsRequest {
                    service: service.clone(),
                    tail: tail.unwrap_or(0),
                    follow: *follow,
                })
                .await
                .map_err(fail)?
                .into_inner();
            while let Some(line) = stream.next().await {
                let line = line.map_err(fail)?;
                let mut lock = stdout.lock();
                writeln!(lock, "{prefix}{}", line.line).map_err(out("standard output"))?;
                if *follow {
                    lock.flush().map_err(out("standard output"))?;
                }
            }
        }
        CtlCommand::Dmesg { follow, tail } => {
            let mut stream = grpc
                .dmesg(proto::DmesgRequest {
                    follow: *follow,
                    tail: tail.unwrap_or(0),
                })
                .await
                .map_err(fail)?
                .into_inner();
            while let Some(message) = stream.next().await {
                let m = message.map_err(fail)?;
                let mut lock = stdout.lock();
                writeln!(lock, "{prefix}{}", format_kernel_message(&m))
                    .map_err(out("standard output"))?;
                if *follow {
                    lock.flush().map_err(out("standard output"))?;
                }
            }
        }
        CtlCommand::Reboot => {
            let reply = grpc.reboot(proto::PowerRequest {}).await.map_err(fail)?;
            println!("{prefix}{}", reply.into_inner().message);
        }
        CtlCommand::Shutdown => {
            let reply = grpc.shutdown(proto::PowerRequest {}).await.map_err(fail)?;
            println!("{prefix}{}", reply.into_inner().message);
        }
        CtlCommand::ApplyConfig { .. } => {
            let reply = grpc
                .apply_config(proto::ApplyConfigRequest {
                    config: apply.unwrap_or_default().to_vec(),
                })
                .await
                .map_err(fail)?
                .into_inner();
            println!("{prefix}{} (sha256 {})", reply.message, reply.sha256);
        }
        CtlCommand::Upgrade { image } => {
            let reply = grpc
                .upgrade(proto::UpgradeRequest {
                    image: image.clone(),
                })
                .await
                .map_err(fail)?;
            println!("{prefix}{}", reply.into_inner().message);
        }
        CtlCommand::Kubeconfig { out: path } => {
            let reply = grpc
                .kubeconfig(proto::KubeconfigRequest {})
                .await
                .map_err(fail)?
                .into_inner();
            match path {
                Some(path) => {
                    skiff_pki::write_private(path, &reply.kubeconfig).map_err(|e| {
                        CtlError::Write {
                            what: path.display().to_string(),
                            source: std::io::Error::other(e),
                        }
                    })?;
                    println!(
                        "admin kubeconfig written to {0}; try: kubectl --kubeconfig {0} get nodes",
                        path.display()
                    );
                }
                None => {
                    let mut lock = stdout.lock();
                    lock.write_all(&reply.kubeconfig)
                        .map_err(out("standard output"))?;
                }
            }
        }
        CtlCommand::Reset => {
            let reply = grpc.reset(proto::ResetRequest {}).await.map_err(fail)?;
            println!("{prefix}{}", reply.into_inner().message);
        }
    }
    Ok(())
}

/// `skiff ctl version` output.
pub fn format_version(prefix: &str, v: &proto::VersionReply) -> String {
    let mut text = String::new();
    let mut row = |key: &str, value: String| {
        text.push_str(&format!("{prefix}{key:<10} {value}\n"));
    };
    row("skiff", v.skiff_version.clone());
    row("kernel", v.kernel.clone());
    row("hostname", v.hostname.clone());
    row("role", v.role.clone());
    let sha: String = v.config_sha256.chars().take(12).collect();
    row(
        "config",
        format!("generation {} (sha256 {sha})", v.config_generation),
    );
    if v.pending_generation > 0 {
        row(
            "pending",
            format!(
                "generation {} (applied at the next reboot)",
                v.pending_generation
            ),
        );
    }
    let boot: Vec<String> = v
        .boot
        .iter()
        .map(|p| format!("{} {:.3}s", p.name, micros_to_secs(p.at_micros)))
        .collect();
    row("boot", boot.join(", "));
    text
}

#[allow(clippy::cast_precision_loss)]
fn micros_to_secs(micros: u64) -> f64 {
    micros as f64 / 1e6
}

/// `skiff ctl services` output.
pub fn format_services(prefix: &str, services: &[proto::ServiceStatus]) -> String {
    let mut text = format!(
        "{prefix}{:<16} {:<8} {:>8} {:>8}\n",
        "SERVICE", "STATE", "RESTARTS", "PID"
    );
    for s in services {
        let pid = if s.pid > 0 {
            s.pid.to_string()
        } else {
            "-".to_owned()
        };
        text.push_str(&format!(
            "{prefix}{:<16} {:<8} {:>8} {:>8}\n",
            s.name, s.state, s.restarts, pid
        ));
    }
    text
}

/// One `skiff ctl dmesg` line, as `dmesg` prints it.
pub fn format_kernel_message(m: &proto::KernelMessage) -> String {
    format!(
        "[{:>5}.{:06}] {}",
        m.timestamp_micros / 1_000_000,
        m.timestamp_micros % 1_000_000,
        m.message
    )
}

/// `skiff machine-api serve-host` arguments: the machine API over this host (tests, development).
#[derive(Debug, clap::Args)]
pub struct ServeHostArgs {
    /// The signed machine config this "node" runs.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// A public key (PEM) configs must be signed with (repeatable).
    #[arg(long = "trusted-key", value_name = "FILE", required = true)]
    pub trusted_keys: Vec<PathBuf>,
    /// Where config files live (`machine/generation`, `machine/pending.yaml`, ...).
    #[arg(long, value_name = "DIR")]
    pub state_dir: PathBuf,
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:50000")]
    pub listen: std::net::SocketAddr,
    /// A service to run: NAME=PROGRAM ARG... (split on spaces; repeatable).
    #[arg(long = "service", value_name = "NAME=COMMAND")]
    pub services: Vec<String>,
    /// Serve this file as the kernel log instead of /dev/kmsg.
    #[arg(long, value_name = "FILE")]
    pub kmsg: Option<PathBuf>,
}

fn read(path: &Path) -> Result<Vec<u8>, CtlError> {
    std::fs::read(path).map_err(|source| CtlError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Serves the machine API of this host until a client asks it to reboot, power off or
/// reset (or `shutdown` completes). Prints `serving on ADDR` once it listens.
pub async fn serve_host(
    args: ServeHostArgs,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CtlError> {
    let config = read(&args.config)?;
    let mut trusted = Vec::new();
    for path in &args.trusted_keys {
        let text = String::from_utf8_lossy(&read(path)?).into_owned();
        trusted.push(
            skiff_machine::PublicKey::parse(&text)
                .map_err(|e| CtlError::Usage(format!("{}: {e}", path.display())))?,
        );
    }
    let mut services = Vec::new();
    for spec in &args.services {
        let Some((name, command)) = spec.split_once('=') else {
            return Err(CtlError::Usage(format!(
                "--service `{spec}`: expected NAME=COMMAND"
            )));
        };
        let argv: Vec<String> = command.split_whitespace().map(str::to_owned).collect();
        services.push((name.to_owned(), argv));
    }
    let node = HostNode::start(HostOptions {
        config,
        trusted,
        state_dir: args.state_dir.clone(),
        services,
        kmsg: args.kmsg.clone(),
    })
    .map_err(|e| CtlError::Host(e.to_string()))?;
    let identity = crate::tls::node_identity(&node.verified().config, &[args.listen.ip()])
        .map_err(|e| CtlError::Host(format!("serving certificate: {e}")))?;
    let creds = Credentials {
        ca_pem: node
            .verified()
            .config
            .cluster
            .machine_ca
            .as_str()
            .to_owned(),
        identity,
    };
    let tls = crate::tls::server_config(&creds).map_err(|e| CtlError::Host(e.to_string()))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| CtlError::Host(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CtlError::Host(e.to_string()))?;
    println!("serving the machine API on {addr}");
    let _ = std::io::stdout().flush();
    let node = Arc::new(node);
    let stopped = node.stopped();
    let (power_tx, power_rx) = tokio::sync::oneshot::channel();
    let (fired_tx, mut fired_rx) = tokio::sync::watch::channel(false);
    let signal = async move {
        tokio::select! {
            power = stopped => { let _ = power_tx.send(power); }
            () = shutdown => {}
        }
        let _ = fired_tx.send(true);
    };
    // A client that keeps a stream open (`logs -f`) would hold a graceful stop forever.
    let grace = async move {
        while !*fired_rx.borrow_and_update() {
            if fired_rx.changed().await.is_err() {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    };
    tokio::select! {
        result = crate::server::serve(listener, tls, node.clone(), signal) => {
            result.map_err(|e| CtlError::Host(e.to_string()))?;
        }
        () = grace => {}
    }
    node.stop_services();
    let state = crate::state::ConfigStore::new(args.state_dir.join("machine"), true);
    if let Ok(power) = power_rx.await {
        if state.reset_requested() {
            std::fs::remove_dir_all(state.dir()).map_err(|source| CtlError::Write {
                what: state.dir().display().to_string(),
                source,
            })?;
            println!("reset: state wiped");
        }
        println!(
            "{} requested; host mode stops here",
            match power {
                Power::Reboot => "reboot",
                Power::PowerOff => "power off",
            }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_output() {
        let v = proto::VersionReply {
            skiff_version: "0.1.0".into(),
            kernel: "6.1.0".into(),
            hostname: "cp-1".into(),
            role: "controlplane".into(),
            config_generation: 2,
            config_sha256: "0123456789abcdef0123".into(),
            boot: vec![
                proto::BootPhase {
                    name: "kernel".into(),
                    at_micros: 0,
                },
                proto::BootPhase {
                    name: "ready".into(),
                    at_micros: 1_250_000,
                },
            ],
            pending_generation: 3,
        };
        let text = format_version("", &v);
        assert!(text.contains("config     generation 2 (sha256 0123456789ab)\n"));
        assert!(text.contains("pending    generation 3"));
        assert!(text.contains("boot       kernel 0.000s, ready 1.250s\n"));
    }

    #[test]
    fn services_and_dmesg_output() {
        let text = format_services(
            "n1: ",
            &[proto::ServiceStatus {
                name: "agent".into(),
                state: "running".into(),
                restarts: 1,
                pid: 42,
            }],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("n1: SERVICE"));
        assert!(lines[1].starts_with("n1: agent") && lines[1].ends_with(" 42"));
        let m = proto::KernelMessage {
            priority: 6,
            facility: 0,
            sequence: 1,
            timestamp_micros: 12_000_345,
            message: "hello".into(),
        };
        assert_eq!(format_kernel_message(&m), "[   12.000345] hello");
    }

    #[test]
    fn config_errors_exit_2() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("skiffconfig");
        let err = load_config(&path, None).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        std::fs::write(&path, "context: a\ncontexts: {}\n").unwrap();
        let err = load_config(&path, None).unwrap_err();
        assert!(matches!(err, CtlError::NoContext { .. }), "{err}");
        std::fs::write(&path, "nonsense: [").unwrap();
        let err = load_config(&path, None).unwrap_err();
        assert!(err.to_string().contains("is not a skiffconfig"), "{err}");
    }
}
