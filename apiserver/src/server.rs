//! `skiff server`: the HTTPS listener, start-up (certificates, store, kubeconfig, bootstrap
//! objects) and shutdown.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use skiff_pki::{Kubeconfig, ServerPki};
use skiff_store::{RedbStore, Store};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::auth::{self, Credential, Tokens, User};
use crate::handlers::Api;

/// Settings of one API server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Cluster IPs for Services come from here.
    pub service_cidr: (Ipv4Addr, u8),
    /// A cluster CA to use instead of generating one (`skiff gen config` makes it). It is
    /// written into `DATA/pki/ca.{crt,key}` before start; leaf certificates signed by another
    /// CA are then reissued.
    pub ca: Option<SeedCa>,
    /// More names the serving certificate must cover (the cluster endpoint's host).
    pub extra_sans: Vec<String>,
    /// The service-account signing key (PEM PKCS#8 P-256, as `skiff gen config` makes it),
    /// written to `DATA/pki/sa.key` before start; without it the server makes one there once.
    pub service_account_key: Option<String>,
}

/// A pre-made cluster CA, PEM.
#[derive(Clone)]
pub struct SeedCa {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for SeedCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedCa").finish_non_exhaustive()
    }
}

impl ServerOptions {
    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> Self {
        Self {
            data_dir,
            listen,
            service_cidr: (Ipv4Addr::new(10, 96, 0, 0), 12),
            ca: None,
            extra_sans: Vec::new(),
            service_account_key: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot create data directory {path}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the store in {path}")]
    Store {
        path: String,
        #[source]
        source: skiff_store::StoreError,
    },
    #[error("certificates in {path}")]
    Pki {
        path: String,
        #[source]
        source: skiff_pki::PkiError,
    },
    #[error("token file")]
    Tokens(#[from] auth::TokenFileError),
    #[error("service-account key")]
    ServiceAccountKey(#[from] crate::tokens::KeyError),
    #[error("cannot listen on {addr} (is another server running there?)")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("creating the initial objects failed: {0}")]
    Bootstrap(String),
}

/// A started server: its address and the API it serves.
pub struct Server {
    pub addr: SocketAddr,
    pub api: Arc<Api>,
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tokens: Arc<Tokens>,
}

/// The URL clients should use for `listen` (loopback when it listens on every address).
fn client_url(listen: SocketAddr) -> String {
    let host = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_string(),
        IpAddr::V6(ip) if ip.is_unspecified() => "127.0.0.1".to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
        IpAddr::V4(ip) => ip.to_string(),
    };
    format!("https://{host}:{}", listen.port())
}

impl Server {
    /// Prepare everything and bind the listener. Writes `DATA/kubeconfig` once bound.
    pub async fn start(opts: ServerOptions) -> Result<Self, ServerError> {
        let dir = &opts.data_dir;
        create_dir_private(dir)?;
        let store_path = dir.join("store.redb");
        let store: Arc<dyn Store> =
            Arc::new(
                RedbStore::open(&store_path).map_err(|source| ServerError::Store {
                    path: store_path.display().to_string(),
                    source,
                })?,
            );
        let first_service_ip = {
            let base = u32::from(opts.service_cidr.0);
            Ipv4Addr::from(base + 1)
        };
        let mut ips = vec![
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V4(first_service_ip),
        ];
        if !opts.listen.ip().is_unspecified() && !ips.contains(&opts.listen.ip()) {
            ips.push(opts.listen.ip());
        }
        let mut dns: Vec<String> = [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for san in &opts.extra_sans {
            match san.parse::<IpAddr>() {
                Ok(ip) if !ips.contains(&ip) => ips.push(ip),
                Ok(_) => {}
                Err(_) if !dns.contains(san) => dns.push(san.clone()),
                Err(_) => {}
            }
        }
        let pki_dir = dir.join("pki");
        if let Some(seed) = &opts.ca {
            seed_ca(&pki_dir, seed).map_err(|source| ServerError::Pki {
                path: pki_dir.display().to_string(),
                source,
            })?;
        }
        let pki =
            ServerPki::load_or_create(&pki_dir, &dns, &ips).map_err(|source| ServerError::Pki {
                path: pki_dir.display().to_string(),
                source,
            })?;
        let tls = skiff_pki::server_tls_config(&pki.serving, Some(pki.ca.cert_pem())).map_err(
            |source| ServerError::Pki {
                path: pki_dir.display().to_string(),
                source,
            },
        )?;
        let tokens = Arc::new(Tokens::load(&dir.join("tokens.csv"))?);
        let url = client_url(opts.listen);
        let kubelet = kubelet_access(&pki).map_err(|source| ServerError::Pki {
            path: pki_dir.display().to_string(),
            source,
        })?;
        let sa_key = crate::tokens::ServiceAccountKey::load_or_create(
            &pki_dir.join("sa.key"),
            opts.service_account_key.as_deref(),
        )?;
        let api = Arc::new(
            Api::new(store, url.clone(), opts.service_cidr)
                .with_kubelet_access(kubelet)
                .with_service_account_key(sa_key),
        );
        bootstrap(&api)
            .await
            .map_err(|e| ServerError::Bootstrap(e.to_string()))?;
        let listener =
            TcpListener::bind(opts.listen)
                .await
                .map_err(|source| ServerError::Listen {
                    addr: opts.listen,
                    source,
                })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ServerError::Listen {
                addr: opts.listen,
                source,
            })?;
        let kubeconfig = Kubeconfig::for_client_cert(
            "skiff",
            &client_url(addr),
            pki.ca.cert_pem(),
            "skiff-admin",
            &pki.admin,
        );
        let kc_path = dir.join("kubeconfig");
        kubeconfig
            .write(&kc_path)
            .map_err(|source| ServerError::Pki {
                path: kc_path.display().to_string(),
                source,
            })?;
        Ok(Self {
            addr,
            api,
            listener,
            acceptor: TlsAcceptor::from(Arc::new(tls)),
            tokens,
        })
    }

    /// Serve until `shutdown` resolves.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => {
                    let (tcp, peer) = match accepted {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = tcp.set_nodelay(true);
                    let acceptor = self.acceptor.clone();
                    let api = self.api.clone();
                    let tokens = self.tokens.clone();
                    tokio::spawn(async move {
                        let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                            Ok(Ok(tls)) => tls,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                        let cert_user = tls
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|certs| certs.first())
                            .and_then(|c| skiff_pki::identity_from_der(c.as_ref()).ok())
                            .map(|id| User::new(id.user, id.groups));
                        let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                            let api = api.clone();
                            let tokens = tokens.clone();
                            let cert_user = cert_user.clone();
                            async move {
                                let user = match auth::authenticate(req.headers(), cert_user.as_ref(), &tokens) {
                                    Ok(Credential::User(u)) => Ok(Some(u)),
                                    Ok(Credential::Anonymous) => Ok(None),
                                    Ok(Credential::ServiceAccountToken(t)) => {
                                        api.authenticate_service_account(&t).await.map(Some)
                                    }
                                    Err(e) => Err(e),
                                };
                                let resp = match user {
                                    Ok(user) => api.handle(req, user).await,
                                    Err(e) => crate::response::error(&e),
                                };
                                Ok::<_, std::convert::Infallible>(resp)
                            }
                        });
                        let builder = auto::Builder::new(TokioExecutor::new());
                        if let Err(e) = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc).await {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    });
                }
            }
        }
    }
}

/// Puts the given CA into `pki_dir` unless the same one is already there.
fn seed_ca(pki_dir: &Path, seed: &SeedCa) -> Result<(), skiff_pki::PkiError> {
    // Refuse a broken pair before it replaces anything on disk.
    skiff_pki::CertificateAuthority::from_pem(&seed.cert_pem, &seed.key_pem)?;
    let cert_path = pki_dir.join("ca.crt");
    let key_path = pki_dir.join("ca.key");
    let same = std::fs::read_to_string(&cert_path).is_ok_and(|c| c == seed.cert_pem)
        && std::fs::read_to_string(&key_path).is_ok_and(|k| k == seed.key_pem);
    if same {
        return Ok(());
    }
    std::fs::create_dir_all(pki_dir).map_err(|source| skiff_pki::PkiError::Write {
        path: pki_dir.to_owned(),
        source,
    })?;
    skiff_pki::write_private(&key_path, seed.key_pem.as_bytes())?;
    skiff_pki::write_private(&cert_path, seed.cert_pem.as_bytes())
}

fn create_dir_private(dir: &Path) -> Result<(), ServerError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let err = |source| ServerError::DataDir {
        path: dir.display().to_string(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(err)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)
}

/// The namespaces and the `kubernetes` Service every cluster starts with.
async fn bootstrap(api: &Api) -> Result<(), crate::status::ApiError> {
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        api.create_internal(
            "",
            "v1",
            "namespaces",
            None,
            json!({"metadata": {"name": ns}}),
        )
        .await?;
    }
    let ip = Ipv4Addr::from(u32::from(api.service_cidr.0) + 1).to_string();
    api.create_internal(
        "",
        "v1",
        "services",
        Some("default"),
        json!({
            "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"clusterIP": ip, "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}], "sessionAffinity": "None", "type": "ClusterIP"},
        }),
    )
    .await?;
    Ok(())
}

/// The CA (to sign agents' serving certificates) and a TLS client identity for reaching agents:
/// CN `kube-apiserver-kubelet-client`, O `system:masters`, as kube-apiserver uses.
fn kubelet_access(pki: &ServerPki) -> Result<crate::kubelet::KubeletAccess, skiff_pki::PkiError> {
    let ca = skiff_pki::CertificateAuthority::from_pem(pki.ca.cert_pem(), pki.ca.key_pem())?;
    let client = ca.issue_client(
        "kube-apiserver-kubelet-client",
        &["system:masters".to_owned()],
    )?;
    let mut tls = skiff_pki::client_tls_config(ca.cert_pem(), Some(&client))?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(crate::kubelet::KubeletAccess {
        ca,
        tls: Arc::new(tls),
    })
}
