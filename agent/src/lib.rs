//! The skiff node agent: registers a node with the API server, runs the pods bound to it as
//! containers (through a re-executed single-threaded helper, see [`runtime`]), networks them,
//! probes them, keeps their logs and serves those logs to the API server.

pub mod image;
pub mod images;
pub mod logs;
pub mod net;
pub mod node;
pub mod pod;
pub mod runtime;
pub mod server;
pub mod spdy;
pub mod stream;
pub mod sys;
pub mod ws;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use kube::Api;

pub use runtime::helper_main;

/// The cluster network pod CIDRs are carved from (when the node's own does not say).
pub const CLUSTER_CIDR: &str = "10.244.0.0/16";

/// `skiff agent` options.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub kubeconfig: PathBuf,
    pub node_name: String,
    pub data_dir: PathBuf,
    pub registry_mirrors: Vec<String>,
    pub node_ip: Option<IpAddr>,
    pub port: u16,
    pub local_images: Option<PathBuf>,
    /// When image garbage collection runs and when the node reports DiskPressure.
    pub image_gc: image::GcPolicy,
    /// `--node-labels`: labels the Node gets at registration (and on every restart).
    pub node_labels: std::collections::BTreeMap<String, String>,
    /// `--register-with-taints`: taints merged into the Node at registration.
    pub register_with_taints: Vec<k8s_openapi::api::core::v1::Taint>,
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("kubeconfig {path}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("data directory {path}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Node(#[from] node::NodeError),
    #[error("pod network")]
    Net(#[from] net::NetError),
    #[error("invalid --registry-mirror {0:?}: want REGISTRY=http(s)://HOST[:PORT]")]
    Mirror(String),
    #[error("image store")]
    Images(#[source] image::ImageError),
    #[error("cannot find this node's IP: pass --node-ip")]
    NodeIp,
}

async fn client(opts: &AgentOptions) -> Result<kube::Client, AgentError> {
    let kerr = |e: Box<dyn std::error::Error + Send + Sync>| AgentError::Kubeconfig {
        path: opts.kubeconfig.clone(),
        source: e,
    };
    let kc =
        kube::config::Kubeconfig::read_from(&opts.kubeconfig).map_err(|e| kerr(Box::new(e)))?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| kerr(Box::new(e)))?;
    kube::Client::try_from(config).map_err(|e| kerr(Box::new(e)))
}

/// The address this host uses to reach `url`'s host: the node's IP by default.
fn source_ip_towards(url: &str) -> Option<IpAddr> {
    let host = url.split("://").nth(1)?.split('/').next()?;
    let addr = std::net::ToSocketAddrs::to_socket_addrs(host)
        .ok()?
        .next()?;
    let sock = std::net::UdpSocket::bind(("0.0.0.0", 0)).ok()?;
    sock.connect(addr).ok()?;
    Some(sock.local_addr().ok()?.ip())
}

/// Run the agent until `shutdown` resolves. Containers keep running after it returns.
pub async fn run(opts: AgentOptions, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
    std::fs::create_dir_all(&opts.data_dir).map_err(|source| AgentError::DataDir {
        path: opts.data_dir.clone(),
        source,
    })?;
    let client = client(&opts).await?;
    let ip = match opts.node_ip {
        Some(ip) => ip,
        None => {
            let kc = kube::config::Kubeconfig::read_from(&opts.kubeconfig).ok();
            let url = kc
                .and_then(|k| {
                    k.clusters
                        .first()
                        .and_then(|c| c.cluster.as_ref()?.server.clone())
                })
                .unwrap_or_default();
            source_ip_towards(&url).ok_or(AgentError::NodeIp)?
        }
    };
    let cfg = node::NodeConfig {
        name: opts.node_name.clone(),
        ip,
        port: opts.port,
        data_dir: opts.data_dir.clone(),
        image_fs_pressure: Arc::default(),
        labels: opts.node_labels.clone(),
        taints: opts.register_with_taints.clone(),
    };
    let registered = node::register_when_up(&client, &cfg).await?;
    tracing::info!(node = %cfg.name, %ip, "registered");
    let node_uid = registered.metadata.uid.clone().unwrap_or_default();
    tokio::spawn(node::lease_loop(client.clone(), cfg.name.clone(), node_uid));
    tokio::spawn(node::status_loop(client.clone(), cfg.clone()));

    start_server(&opts, &client, &cfg).await;
    let pod_cidr = node::wait_pod_cidr(&client, &cfg.name).await?;
    let sys: Arc<dyn sys::Syscall> = Arc::new(sys::Linux);
    let net = match net::Cidr::parse(&pod_cidr) {
        Some(cidr) => {
            let cluster = net::Cidr::parse(CLUSTER_CIDR).unwrap_or(cidr);
            let n = net::Network::new(sys.clone(), cidr, cluster, opts.data_dir.join("ipam"))?;
            let own = match ip {
                IpAddr::V4(v4) => vec![v4],
                IpAddr::V6(_) => vec![],
            };
            // A NAT failure is only a warning inside: pods still reach pods and nodes.
            n.setup_host(&own).await?;
            Some(n)
        }
        None => None,
    };
    let images: Arc<dyn images::Images> = match &opts.local_images {
        Some(dir) => Arc::new(images::LocalImages { dir: dir.clone() }),
        None => {
            let mut mirrors = Vec::new();
            for m in &opts.registry_mirrors {
                mirrors.push(m.parse().map_err(|_| AgentError::Mirror(m.clone()))?);
            }
            let service = Arc::new(
                image::ImageService::open(&opts.data_dir, mirrors).map_err(AgentError::Images)?,
            );
            tokio::spawn(image::gc_loop(
                service.clone(),
                client.clone(),
                cfg.name.clone(),
                opts.image_gc,
                cfg.image_fs_pressure.clone(),
            ));
            service
        }
    };
    let exe = std::env::current_exe().map_err(|source| AgentError::DataDir {
        path: PathBuf::from("/proc/self/exe"),
        source,
    })?;
    let runtime = runtime::Runtime {
        sys: sys.clone(),
        exe,
        cgroups: runtime::Cgroups::detect(&cfg.name),
    };
    let ctx = Arc::new(pod::Ctx {
        client: client.clone(),
        node: cfg.clone(),
        runtime,
        net,
        images,
        data: opts.data_dir.clone(),
        cluster_dns: None,
        events: pod::Recorder::new(client.clone(), cfg.name.clone()),
    });
    tokio::spawn(routes_loop(ctx.clone()));
    tokio::select! {
        () = pod::run(ctx) => {}
        () = shutdown => {}
    }
    Ok(())
}

/// Start the HTTPS endpoint for logs; the agent runs on without it if it cannot start.
async fn start_server(opts: &AgentOptions, client: &kube::Client, cfg: &node::NodeConfig) {
    let ca = match server::cluster_ca(&opts.kubeconfig) {
        Ok(ca) => ca,
        Err(e) => {
            tracing::warn!(error = %e, "no log endpoint");
            return;
        }
    };
    let (cert, key) = match server::serving_certificate(client, &cfg.name, cfg.ip).await {
        Ok(pair) => pair,
        Err(e) => {
            tracing::warn!(error = %e, "no log endpoint");
            return;
        }
    };
    let addr = std::net::SocketAddr::new(cfg.ip, cfg.port);
    let data = opts.data_dir.clone();
    tokio::spawn(async move {
        if let Err(e) = server::serve(addr, cert, key, ca, data).await {
            tracing::warn!(error = %e, "log endpoint stopped");
        }
    });
}

/// Keep routes to other nodes' pod CIDRs (and the NAT exemptions for node IPs) current.
async fn routes_loop(ctx: Arc<pod::Ctx>) {
    let Some(net) = ctx.net.as_ref() else { return };
    let api: Api<Node> = Api::all(ctx.client.clone());
    let mut last: Vec<(net::Cidr, Ipv4Addr)> = Vec::new();
    loop {
        if let Ok(nodes) = api.list(&Default::default()).await {
            let mut peers = Vec::new();
            let mut ips = Vec::new();
            for n in nodes.items {
                let ip = n
                    .status
                    .as_ref()
                    .and_then(|s| s.addresses.as_ref())
                    .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
                    .and_then(|a| a.address.parse::<Ipv4Addr>().ok());
                let cidr = n
                    .spec
                    .as_ref()
                    .and_then(|s| s.pod_cidr.as_deref())
                    .and_then(net::Cidr::parse);
                if let Some(ip) = ip {
                    ips.push(ip);
                    if let Some(c) = cidr
                        && n.metadata.name.as_deref() != Some(ctx.node.name.as_str())
                    {
                        peers.push((c, ip));
                    }
                }
            }
            if peers != last {
                match net.routes(&peers).await {
                    Ok(()) => {
                        if let Err(e) = net.nat(&ips).await {
                            tracing::warn!(error = %e, "update nat");
                        }
                        last = peers;
                    }
                    Err(e) => tracing::warn!(error = %e, "update routes"),
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    }
}

/// An error and its sources on one line: "outer: inner: innermost".
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
