//! Mutual TLS for the machine API (rustls with the `ring` provider, TLS 1.2+, ALPN `h2`).
//!
//! - The server presents a certificate issued by the machine-API CA for
//!   [`MACHINE_API_SERVER_NAME`] and **requires** a client certificate from the same CA.
//! - The client trusts only that CA and checks the server's certificate for that name.
//! - Who the client is comes from its certificate (CN = user, O = groups, as Kubernetes does);
//!   the group `os:admin` may do everything, `os:reader` only read.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use skiff_machine::{MACHINE_API_SERVER_NAME, MachineConfig, Role};
use skiff_pki::{CertificateAuthority, CertifiedKey, PkiError};

/// The port the machine API listens on (Talos uses the same one).
pub const PORT: u16 = 50000;

/// Group that may call every method.
pub const ADMIN_GROUP: &str = "os:admin";
/// Group that may call the read-only methods.
pub const READER_GROUP: &str = "os:reader";

/// Why TLS material could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("invalid {what} PEM")]
    Pem {
        what: &'static str,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("no {0} in the PEM data")]
    Missing(&'static str),
    #[error("tls setup")]
    Rustls(#[from] rustls::Error),
    #[error("client certificate verifier")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("machine-api certificate")]
    Pki(#[from] PkiError),
    #[error("{0}")]
    Config(String),
}

/// The credentials one side of a connection uses: the machine-API CA and its own certificate.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub ca_pem: String,
    pub identity: CertifiedKey,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem { what, source })?;
    if certs.is_empty() {
        return Err(TlsError::Missing(what));
    }
    Ok(certs)
}

fn key(pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|source| match source {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Missing("private key"),
        source => TlsError::Pem {
            what: "private key",
            source,
        },
    })
}

fn roots(ca_pem: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs(ca_pem, "ca certificate")? {
        roots.add(cert)?;
    }
    Ok(roots)
}

/// The server side: serves `creds.identity`, requires client certificates from `creds.ca_pem`.
pub fn server_config(creds: &Credentials) -> Result<ServerConfig, TlsError> {
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(&creds.ca_pem)?), provider())
            .build()?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certs(&creds.identity.cert_pem, "certificate")?,
            key(&creds.identity.key_pem)?,
        )?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The client side: trusts only `creds.ca_pem`, presents `creds.identity`.
pub fn client_config(creds: &Credentials) -> Result<ClientConfig, TlsError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(&creds.ca_pem)?)
        .with_client_auth_cert(
            certs(&creds.identity.cert_pem, "client certificate")?,
            key(&creds.identity.key_pem)?,
        )?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The name the client checks the server's certificate for.
pub fn server_name() -> ServerName<'static> {
    ServerName::try_from(MACHINE_API_SERVER_NAME).unwrap_or_else(|_| {
        // The constant is a valid DNS name; this arm only satisfies the type checker.
        ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())
    })
}

/// The serving certificate a node uses: a control plane issues one from the machine-API CA
/// key in its config (naming the machine API, its hostname and `ips`); a worker uses the one
/// its config carries.
pub fn node_identity(config: &MachineConfig, ips: &[IpAddr]) -> Result<CertifiedKey, TlsError> {
    let cluster = &config.cluster;
    match (config.role, &cluster.control_plane, &cluster.worker) {
        (Role::ControlPlane, Some(secrets), _) => {
            let ca = CertificateAuthority::from_pem(
                cluster.machine_ca.as_str(),
                secrets.machine_ca_key.as_str(),
            )?;
            let names = [
                MACHINE_API_SERVER_NAME.to_owned(),
                config.machine.hostname.to_string(),
            ];
            Ok(ca.issue_server(config.machine.hostname.as_str(), &names, ips)?)
        }
        (Role::Worker, _, Some(worker)) => match &worker.machine_api {
            Some(cert) => Ok(CertifiedKey {
                cert_pem: cert.cert.as_str().to_owned(),
                key_pem: cert.key.as_str().to_owned(),
            }),
            None => Err(TlsError::Config(
                "the worker config carries no machine-API certificate (cluster.worker.machineApi); \
                 sign a config made by a newer `skiff gen config`"
                    .to_owned(),
            )),
        },
        _ => Err(TlsError::Config(
            "the config carries no credentials for its role".to_owned(),
        )),
    }
}

/// Who a client is, from its verified certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peer {
    pub user: String,
    pub groups: Vec<String>,
    pub addr: Option<std::net::SocketAddr>,
}

impl Peer {
    /// From the client's leaf certificate (already verified by rustls).
    pub fn from_certificate(der: &[u8], addr: Option<std::net::SocketAddr>) -> Self {
        match skiff_pki::identity_from_der(der) {
            Ok(id) => Self {
                user: id.user,
                groups: id.groups,
                addr,
            },
            Err(_) => Self {
                addr,
                ..Self::default()
            },
        }
    }

    pub fn is_admin(&self) -> bool {
        self.groups.iter().any(|g| g == ADMIN_GROUP)
    }

    pub fn can_read(&self) -> bool {
        self.is_admin() || self.groups.iter().any(|g| g == READER_GROUP)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_name_is_the_machine_api_name() {
        assert_eq!(
            server_name(),
            ServerName::try_from("skiff-machine-api").unwrap()
        );
    }

    #[test]
    fn peers_by_group() {
        let ca = CertificateAuthority::generate("ca").unwrap();
        let admin = ca.issue_client("a", &[ADMIN_GROUP.to_owned()]).unwrap();
        let reader = ca.issue_client("r", &[READER_GROUP.to_owned()]).unwrap();
        let nobody = ca.issue_client("n", &["devs".to_owned()]).unwrap();
        let peer = |c: &CertifiedKey| Peer::from_certificate(&c.cert_der().unwrap(), None);
        assert!(peer(&admin).is_admin() && peer(&admin).can_read());
        assert_eq!(peer(&admin).user, "a");
        assert!(!peer(&reader).is_admin() && peer(&reader).can_read());
        assert!(!peer(&nobody).is_admin() && !peer(&nobody).can_read());
    }

    #[test]
    fn missing_key_is_named() {
        let ca = CertificateAuthority::generate("ca").unwrap();
        let creds = Credentials {
            ca_pem: ca.cert_pem().to_owned(),
            identity: CertifiedKey {
                cert_pem: ca.cert_pem().to_owned(),
                key_pem: String::new(),
            },
        };
        assert!(matches!(
            client_config(&creds),
            Err(TlsError::Missing("private key"))
        ));
        let creds = Credentials {
            ca_pem: "nothing".to_owned(),
            ..creds
        };
        assert!(matches!(
            server_config(&creds),
            Err(TlsError::Missing("ca certificate"))
        ));
    }
}
