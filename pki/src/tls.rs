//! rustls configurations for the API server and its clients, built from PEM material.
//!
//! Both sides use the `ring` provider explicitly, so the result does not depend on which
//! provider (if any) the process installed as its default.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::{CertifiedKey, PkiError};

/// ALPN protocols the API server offers, in preference order.
const SERVER_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// rustls server config: serves `cert`; ALPN ["h2", "http/1.1"]. With `client_ca_pem`,
/// client certificates signed by that CA are verified when presented, but a client without a
/// certificate may still connect (bearer tokens and anonymous health checks need that).
pub fn server_tls_config(
    cert: &CertifiedKey,
    client_ca_pem: Option<&str>,
) -> Result<ServerConfig, PkiError> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(PkiError::Tls)?;
    let builder = match client_ca_pem {
        Some(ca_pem) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca_pem)?), provider)
                    .allow_unauthenticated()
                    .build()
                    .map_err(PkiError::Verifier)?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(cert_chain(&cert.cert_pem)?, private_key(&cert.key_pem)?)
        .map_err(PkiError::Tls)?;
    config.alpn_protocols = SERVER_ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// rustls client config trusting `ca_pem`, optionally presenting a client cert. No ALPN
/// protocols are set; the caller adds what its HTTP stack speaks.
pub fn client_tls_config(
    ca_pem: &str,
    client: Option<&CertifiedKey>,
) -> Result<ClientConfig, PkiError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(PkiError::Tls)?
        .with_root_certificates(roots(ca_pem)?);
    match client {
        Some(client) => builder
            .with_client_auth_cert(cert_chain(&client.cert_pem)?, private_key(&client.key_pem)?)
            .map_err(PkiError::Tls),
        None => Ok(builder.with_no_client_auth()),
    }
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in `ca_pem` as a trust anchor.
pub(crate) fn roots(ca_pem: &str) -> Result<RootCertStore, PkiError> {
    let mut roots = RootCertStore::empty();
    for der in cert_chain(ca_pem)? {
        roots.add(der).map_err(PkiError::Tls)?;
    }
    Ok(roots)
}

/// All certificates in a PEM document, at least one.
fn cert_chain(pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| PkiError::PemInvalid {
            what: "certificate",
            source,
        })?;
    if chain.is_empty() {
        return Err(PkiError::PemMissing {
            what: "certificate",
        });
    }
    Ok(chain)
}

fn private_key(pem: &str) -> Result<PrivateKeyDer<'static>, PkiError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|source| match source {
        rustls::pki_types::pem::Error::NoItemsFound => PkiError::PemMissing {
            what: "private key",
        },
        source => PkiError::PemInvalid {
            what: "private key",
            source,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CertificateAuthority, identity_from_der};
    use rustls::pki_types::ServerName;
    use rustls::{ClientConnection, Connection, ServerConnection};

    /// Which side of a handshake gave up.
    #[derive(Debug)]
    enum Failed {
        Client(rustls::Error),
        Server(rustls::Error),
    }

    /// Moves every pending TLS record from `from` to `to` and lets `to` process them.
    fn transfer(from: &mut Connection, to: &mut Connection) -> Result<(), rustls::Error> {
        let mut buf = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut buf).unwrap();
        }
        let mut pending = &buf[..];
        while !pending.is_empty() {
            to.read_tls(&mut pending).unwrap();
            to.process_new_packets()?;
        }
        Ok(())
    }

    /// Runs a full handshake in memory, the client connecting by `name`.
    fn handshake(
        client: ClientConfig,
        server: ServerConfig,
        name: &str,
    ) -> Result<ServerConnection, Failed> {
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let mut client: Connection = ClientConnection::new(Arc::new(client), name)
            .unwrap()
            .into();
        let mut server: Connection = ServerConnection::new(Arc::new(server)).unwrap().into();
        for _ in 0..10 {
            transfer(&mut client, &mut server).map_err(Failed::Server)?;
            transfer(&mut server, &mut client).map_err(Failed::Client)?;
            let idle = !client.wants_write() && !server.wants_write();
            if idle && !client.is_handshaking() && !server.is_handshaking() {
                match server {
                    Connection::Server(s) => return Ok(s),
                    Connection::Client(_) => unreachable!(),
                }
            }
        }
        panic!("handshake did not finish");
    }

    struct Setup {
        ca: CertificateAuthority,
        server: ServerConfig,
    }

    fn setup() -> Setup {
        let ca = CertificateAuthority::generate("test-ca").unwrap();
        let serving = ca
            .issue_server(
                "kube-apiserver",
                &["localhost".to_owned()],
                &["127.0.0.1".parse().unwrap()],
            )
            .unwrap();
        let server = server_tls_config(&serving, Some(ca.cert_pem())).unwrap();
        Setup { ca, server }
    }

    #[test]
    fn client_certificate_identity_reaches_the_server() {
        let Setup { ca, server } = setup();
        let client_cert = ca
            .issue_client("alice", &["system:masters".to_owned(), "devs".to_owned()])
            .unwrap();
        let mut client = client_tls_config(ca.cert_pem(), Some(&client_cert)).unwrap();
        client.alpn_protocols = vec![b"h2".to_vec()];

        let conn = handshake(client, server, "localhost").unwrap();
        let peer = conn
            .peer_certificates()
            .expect("client presented a certificate");
        let id = identity_from_der(&peer[0]).unwrap();
        assert_eq!(id.user, "alice");
        assert_eq!(id.groups, ["system:masters", "devs"]);
        assert_eq!(conn.alpn_protocol(), Some(&b"h2"[..]));
    }

    #[test]
    fn client_certificate_from_another_ca_is_rejected() {
        let Setup { ca, server } = setup();
        let rogue = CertificateAuthority::generate("test-ca").unwrap();
        let client_cert = rogue
            .issue_client("mallory", &["system:masters".to_owned()])
            .unwrap();
        let client = client_tls_config(ca.cert_pem(), Some(&client_cert)).unwrap();

        match handshake(client, server, "localhost") {
            Err(Failed::Server(rustls::Error::InvalidCertificate(_))) => {}
            other => panic!("expected the server to reject the certificate, got {other:?}"),
        }
    }

    #[test]
    fn client_without_certificate_is_accepted() {
        let Setup { ca, server } = setup();
        let client = client_tls_config(ca.cert_pem(), None).unwrap();
        let conn = handshake(client, server, "localhost").unwrap();
        assert!(conn.peer_certificates().is_none());
    }

    #[test]
    fn ip_san_is_accepted() {
        let Setup { ca, server } = setup();
        let client = client_tls_config(ca.cert_pem(), None).unwrap();
        assert!(handshake(client, server, "127.0.0.1").is_ok());
    }

    #[test]
    fn name_not_in_certificate_fails() {
        let Setup { ca, server } = setup();
        let client = client_tls_config(ca.cert_pem(), None).unwrap();
        match handshake(client, server, "apiserver.example") {
            Err(Failed::Client(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            ))) => {}
            other => panic!("expected a name mismatch, got {other:?}"),
        }
    }

    #[test]
    fn server_signed_by_another_ca_is_not_trusted() {
        let Setup { server, .. } = setup();
        let other = CertificateAuthority::generate("other").unwrap();
        let client = client_tls_config(other.cert_pem(), None).unwrap();
        assert!(matches!(
            handshake(client, server, "localhost"),
            Err(Failed::Client(rustls::Error::InvalidCertificate(_)))
        ));
    }

    #[test]
    fn server_offers_h2_and_http11() {
        let Setup { server, .. } = setup();
        assert_eq!(
            server.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    #[test]
    fn mismatched_key_is_refused() {
        let ca = CertificateAuthority::generate("ca").unwrap();
        let a = ca.issue_server("a", &["a".to_owned()], &[]).unwrap();
        let b = ca.issue_server("b", &["b".to_owned()], &[]).unwrap();
        let crossed = CertifiedKey {
            cert_pem: a.cert_pem,
            key_pem: b.key_pem,
        };
        assert!(matches!(
            server_tls_config(&crossed, None),
            Err(PkiError::Tls(_))
        ));
    }

    #[test]
    fn missing_pem_data_is_named() {
        let err = client_tls_config("", None).unwrap_err();
        assert!(matches!(
            err,
            PkiError::PemMissing {
                what: "certificate"
            }
        ));
        let ca = CertificateAuthority::generate("ca").unwrap();
        let no_key = CertifiedKey {
            cert_pem: ca.cert_pem().to_owned(),
            key_pem: String::new(),
        };
        let err = server_tls_config(&no_key, None).unwrap_err();
        assert!(matches!(
            err,
            PkiError::PemMissing {
                what: "private key"
            }
        ));
    }
}
