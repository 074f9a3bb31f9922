//! The API server's certificate set in its data directory: created on first start, reused
//! afterwards, and the leaf certificates reissued whenever they no longer fit.

use std::fs::DirBuilder;
use std::net::IpAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::KeyPair;
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::pki_types::UnixTime;
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::ca::{first_cert_der, key_matches};
use crate::files::{read_optional, write_public};
use crate::tls::{provider, roots};
use crate::{
    CertificateAuthority, CertifiedKey, Identity, PkiError, identity_from_der, write_private,
};

/// Common name of a CA this module creates.
const CA_NAME: &str = "skiff-ca";
/// Common name of the serving certificate (what kube-apiserver uses).
const SERVING_NAME: &str = "kube-apiserver";
/// The admin client certificate's user and group.
const ADMIN_USER: &str = "skiff-admin";
const ADMIN_GROUP: &str = "system:masters";
/// Leaf certificates expiring sooner than this are replaced.
pub(crate) const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// The API server's certificates in a data directory, created on first start and reused after.
#[derive(Debug)]
pub struct ServerPki {
    pub ca: CertificateAuthority,
    pub serving: CertifiedKey,
    pub admin: CertifiedKey,
}

/// What a certificate is for.
pub(crate) enum Purpose<'a> {
    Serving {
        dns_names: &'a [String],
        ips: &'a [IpAddr],
    },
    /// A client certificate naming exactly this user and these groups.
    Client { user: &'a str, groups: &'a [String] },
}

impl ServerPki {
    /// In `dir`: ca.crt/ca.key, apiserver.crt/.key, admin.crt/.key. Creates what is missing.
    /// Reissues the serving cert when it does not cover `dns_names`/`ips` (e.g. the listen
    /// address changed) or expires within 30 days. The admin cert: CN "skiff-admin",
    /// O "system:masters".
    ///
    /// A CA half present on disk (certificate without key or the reverse) is an error rather
    /// than a reason to make a new one: every issued credential depends on it. Leaf
    /// certificates that are unreadable, mismatched, not signed by the CA or near expiry are
    /// simply reissued. Keys are written 0600, certificates 0644, the directory (when created)
    /// 0700.
    pub fn load_or_create(
        dir: &Path,
        dns_names: &[String],
        ips: &[IpAddr],
    ) -> Result<Self, PkiError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| PkiError::Write {
                path: dir.to_owned(),
                source,
            })?;

        let ca = load_or_create_ca(dir)?;

        let serving = load_leaf(dir, "apiserver", &ca, &Purpose::Serving { dns_names, ips })?;
        let serving = match serving {
            Some(serving) => serving,
            None => {
                let serving = ca.issue_server(SERVING_NAME, dns_names, ips)?;
                store_pair(dir, "apiserver", &serving)?;
                serving
            }
        };

        let admin_groups = [ADMIN_GROUP.to_owned()];
        let admin_purpose = Purpose::Client {
            user: ADMIN_USER,
            groups: &admin_groups,
        };
        let admin = match load_leaf(dir, "admin", &ca, &admin_purpose)? {
            Some(admin) => admin,
            None => {
                let admin = ca.issue_client(ADMIN_USER, &[ADMIN_GROUP.to_owned()])?;
                store_pair(dir, "admin", &admin)?;
                admin
            }
        };

        Ok(Self { ca, serving, admin })
    }
}

fn load_or_create_ca(dir: &Path) -> Result<CertificateAuthority, PkiError> {
    let cert_path = dir.join("ca.crt");
    let key_path = dir.join("ca.key");
    match (read_optional(&cert_path)?, read_optional(&key_path)?) {
        (Some(cert), Some(key)) => {
            CertificateAuthority::from_pem(&cert, &key).map_err(|source| PkiError::Load {
                path: cert_path,
                source: Box::new(source),
            })
        }
        (None, None) => {
            let ca = CertificateAuthority::generate(CA_NAME)?;
            write_private(&key_path, ca.key_pem().as_bytes())?;
            write_public(&cert_path, ca.cert_pem().as_bytes())?;
            Ok(ca)
        }
        (Some(_), None) => Err(PkiError::Incomplete {
            present: cert_path,
            missing: key_path,
        }),
        (None, Some(_)) => Err(PkiError::Incomplete {
            present: key_path,
            missing: cert_path,
        }),
    }
}

/// `<name>.crt`/`<name>.key` when both exist and still serve `purpose`.
fn load_leaf(
    dir: &Path,
    name: &str,
    ca: &CertificateAuthority,
    purpose: &Purpose<'_>,
) -> Result<Option<CertifiedKey>, PkiError> {
    let cert = read_optional(&dir.join(format!("{name}.crt")))?;
    let key = read_optional(&dir.join(format!("{name}.key")))?;
    let (Some(cert_pem), Some(key_pem)) = (cert, key) else {
        return Ok(None);
    };
    let pair = CertifiedKey { cert_pem, key_pem };
    Ok(still_fits(ca, &pair, purpose)?.then_some(pair))
}

fn store_pair(dir: &Path, name: &str, pair: &CertifiedKey) -> Result<(), PkiError> {
    write_private(&dir.join(format!("{name}.key")), pair.key_pem.as_bytes())?;
    write_public(&dir.join(format!("{name}.crt")), pair.cert_pem.as_bytes())
}

/// Whether a certificate on disk can keep being used: it parses, its key matches, it chains
/// to `ca` for its purpose, it has more than [`RENEW_BEFORE`] left, and it names what is asked.
/// Anything unusable simply does not fit; errors are only for a CA that cannot act as a root.
pub(crate) fn still_fits(
    ca: &CertificateAuthority,
    pair: &CertifiedKey,
    purpose: &Purpose<'_>,
) -> Result<bool, PkiError> {
    let Ok(der) = first_cert_der(&pair.cert_pem) else {
        return Ok(false);
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
        return Ok(false);
    };
    let Ok(key) = KeyPair::from_pem(&pair.key_pem) else {
        return Ok(false);
    };
    if !key_matches(&key, &cert) {
        return Ok(false);
    }
    let now = SystemTime::now();
    let renew_at = now + RENEW_BEFORE;
    let renew_at_secs = renew_at
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .unwrap_or(i64::MAX);
    if cert.validity().not_after.timestamp() < renew_at_secs {
        return Ok(false);
    }

    let roots = roots(ca.cert_pem())?;
    let now = UnixTime::since_unix_epoch(now.duration_since(UNIX_EPOCH).unwrap_or_default());
    let provider = provider();
    match purpose {
        Purpose::Serving { dns_names, ips } => {
            let Ok(parsed) = ParsedCertificate::try_from(&der) else {
                return Ok(false);
            };
            let algorithms = provider.signature_verification_algorithms.all;
            if verify_server_cert_signed_by_trust_anchor(&parsed, &roots, &[], now, algorithms)
                .is_err()
            {
                return Ok(false);
            }
            Ok(san_covers(&cert, dns_names, ips))
        }
        Purpose::Client { user, groups } => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                .build()
                .map_err(PkiError::Verifier)?;
            if verifier.verify_client_cert(&der, &[], now).is_err() {
                return Ok(false);
            }
            let expected = Identity {
                user: (*user).to_owned(),
                groups: groups.to_vec(),
            };
            Ok(identity_from_der(&der).is_ok_and(|id| id == expected))
        }
    }
}

/// Whether the certificate lists every requested DNS name (ASCII case-insensitive, compared
/// literally, so a wildcard entry covers only itself) and IP address.
fn san_covers(cert: &X509Certificate<'_>, dns_names: &[String], ips: &[IpAddr]) -> bool {
    let Ok(Some(sans)) = cert.subject_alternative_name() else {
        return dns_names.is_empty() && ips.is_empty();
    };
    let names = &sans.value.general_names;
    let has_dns = |wanted: &String| {
        names
            .iter()
            .any(|n| matches!(n, GeneralName::DNSName(d) if d.eq_ignore_ascii_case(wanted)))
    };
    let has_ip = |wanted: &IpAddr| {
        let octets = match wanted {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        names
            .iter()
            .any(|n| matches!(n, GeneralName::IPAddress(b) if *b == octets.as_slice()))
    };
    dns_names.iter().all(has_dns) && ips.iter().all(has_ip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn names() -> Vec<String> {
        vec!["localhost".to_owned(), "kubernetes.default.svc".to_owned()]
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn same(a: &ServerPki, b: &ServerPki) -> bool {
        a.ca.cert_pem() == b.ca.cert_pem()
            && a.ca.key_pem() == b.ca.key_pem()
            && a.serving == b.serving
            && a.admin == b.admin
    }

    #[test]
    fn second_start_reuses_everything() {
        let dir = tempfile::tempdir().unwrap();
        let first = ServerPki::load_or_create(dir.path(), &names(), &ips(&["127.0.0.1"])).unwrap();
        let second = ServerPki::load_or_create(dir.path(), &names(), &ips(&["127.0.0.1"])).unwrap();
        assert!(same(&first, &second));
        // Files on disk are what was returned.
        let on_disk = fs::read_to_string(dir.path().join("apiserver.crt")).unwrap();
        assert_eq!(on_disk, second.serving.cert_pem);
        // Asking for fewer names is still covered.
        let third = ServerPki::load_or_create(dir.path(), &names()[..1], &[]).unwrap();
        assert!(same(&first, &third));
    }

    #[test]
    fn new_address_reissues_only_the_serving_cert() {
        let dir = tempfile::tempdir().unwrap();
        let first = ServerPki::load_or_create(dir.path(), &names(), &ips(&["127.0.0.1"])).unwrap();
        let wanted = ips(&["127.0.0.1", "10.1.2.3"]);
        let second = ServerPki::load_or_create(dir.path(), &names(), &wanted).unwrap();
        assert_eq!(first.ca.cert_pem(), second.ca.cert_pem());
        assert_eq!(first.admin, second.admin);
        assert_ne!(first.serving, second.serving);
        // The new certificate covers the new address and chains to the same CA.
        assert!(
            still_fits(
                &second.ca,
                &second.serving,
                &Purpose::Serving {
                    dns_names: &names(),
                    ips: &wanted
                }
            )
            .unwrap()
        );
        let third = ServerPki::load_or_create(dir.path(), &names(), &wanted).unwrap();
        assert!(same(&second, &third));
        // A new DNS name also triggers reissue.
        let more = [names(), vec!["node-1.example".to_owned()]].concat();
        let fourth = ServerPki::load_or_create(dir.path(), &more, &wanted).unwrap();
        assert_ne!(third.serving, fourth.serving);
    }

    #[test]
    fn names_rustls_cannot_parse_are_still_reused() {
        let dir = tempfile::tempdir().unwrap();
        let odd = vec!["*.nodes.example".to_owned(), "Node-1.Example".to_owned()];
        let first = ServerPki::load_or_create(dir.path(), &odd, &ips(&["::1"])).unwrap();
        let lower = vec!["*.nodes.example".to_owned(), "node-1.example".to_owned()];
        let second = ServerPki::load_or_create(dir.path(), &lower, &ips(&["::1"])).unwrap();
        assert!(same(&first, &second));
        // A name merely matched by the wildcard is not "covered": it gets its own entry.
        let third =
            ServerPki::load_or_create(dir.path(), &["a.nodes.example".to_owned()], &[]).unwrap();
        assert_ne!(third.serving, second.serving);
    }

    #[test]
    fn admin_is_skiff_admin_in_system_masters() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ServerPki::load_or_create(dir.path(), &names(), &[]).unwrap();
        let id = identity_from_der(&pki.admin.cert_der().unwrap()).unwrap();
        assert_eq!(id.user, "skiff-admin");
        assert_eq!(id.groups, ["system:masters"]);
    }

    #[test]
    fn keys_are_private_and_certs_public() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("pki");
        ServerPki::load_or_create(&dir, &names(), &[]).unwrap();
        let mode = |name: &str| fs::metadata(dir.join(name)).unwrap().permissions().mode() & 0o777;
        for key in ["ca.key", "apiserver.key", "admin.key"] {
            assert_eq!(mode(key), 0o600, "{key}");
        }
        for cert in ["ca.crt", "apiserver.crt", "admin.crt"] {
            assert_eq!(mode(cert), 0o644, "{cert}");
        }
        let dir_mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
    }

    #[test]
    fn serving_cert_near_expiry_is_reissued() {
        let dir = tempfile::tempdir().unwrap();
        let first = ServerPki::load_or_create(dir.path(), &names(), &[]).unwrap();
        let short = first
            .ca
            .issue_server_valid_for(
                SERVING_NAME,
                &names(),
                &[],
                Duration::from_secs(10 * 86_400),
            )
            .unwrap();
        store_pair(dir.path(), "apiserver", &short).unwrap();
        let second = ServerPki::load_or_create(dir.path(), &names(), &[]).unwrap();
        assert_ne!(second.serving, short);
        assert_eq!(second.admin, first.admin);
    }

    #[test]
    fn leaf_certs_from_another_ca_or_corrupt_are_reissued() {
        let dir = tempfile::tempdir().unwrap();
        let first = ServerPki::load_or_create(dir.path(), &names(), &[]).unwrap();
        let rogue = CertificateAuthority::generate(CA_NAME).unwrap();
        let foreign = rogue.issue_server(SERVING_NAME, &names(), &[]).unwrap();
        store_pair(dir.path(), "apiserver", &foreign).unwrap();
        fs::write(dir.path().join("admin.crt"), "not pem").unwrap();

        let second = ServerPki::load_or_create(dir.path(), &names(), &[]).unwrap();
        assert_eq!(second.ca.cert_pem(), first.ca.cert_pem());
        assert_ne!(second.serving, foreign);
        assert!(
            still_fits(
                &second.ca,
                &second.serving,
                &Purpose::Serving {
                    dns_names: &names(),
                    ips: &[]
                }
            )
            .unwrap()
        );
        assert_ne!(second.admin, first.admin);
        let admin = Purpose::Client {
            user: ADMIN_USER,
            groups: &[ADMIN_GROUP.to_owned()],
        };
        assert!(still_fits(&second.ca, &second.admin, &admin).unwrap());
    }

    #[test]
    fn half_a_ca_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        ServerPki::load_or_create(dir.path(), &names(), &[]).unwrap();
        fs::remove_file(dir.path().join("ca.key")).unwrap();
        let err = ServerPki::load_or_create(dir.path(), &names(), &[]).unwrap_err();
        assert!(matches!(err, PkiError::Incomplete { .. }), "{err}");
        assert!(err.to_string().contains("ca.key"), "{err}");
    }

    #[test]
    fn corrupt_ca_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        ServerPki::load_or_create(dir.path(), &names(), &[]).unwrap();
        fs::write(dir.path().join("ca.crt"), "junk").unwrap();
        let err = ServerPki::load_or_create(dir.path(), &names(), &[]).unwrap_err();
        assert!(err.to_string().contains("ca.crt"), "{err}");
    }

    #[test]
    fn serving_cert_from_the_directory_serves_tls() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ServerPki::load_or_create(dir.path(), &names(), &ips(&["127.0.0.1"])).unwrap();
        crate::server_tls_config(&pki.serving, Some(pki.ca.cert_pem())).unwrap();
        crate::client_tls_config(pki.ca.cert_pem(), Some(&pki.admin)).unwrap();
    }
}
