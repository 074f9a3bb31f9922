//! Certificate authorities and the certificates they issue.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::{PkiError, der};

/// Lifetime of a CA certificate.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);
/// Lifetime of serving and client certificates.
const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// Certificates start being valid a little in the past, to tolerate clock skew between nodes.
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// A PEM certificate with its PEM (PKCS#8) private key.
#[derive(Clone, PartialEq, Eq)]
pub struct CertifiedKey {
    pub cert_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for CertifiedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertifiedKey")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl CertifiedKey {
    /// The certificate in DER form (the first one, if the PEM holds a chain).
    pub fn cert_der(&self) -> Result<CertificateDer<'static>, PkiError> {
        first_cert_der(&self.cert_pem)
    }
}

/// A certificate authority: its certificate and the key that signs what it issues.
pub struct CertificateAuthority {
    cert_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// A new self-signed CA with an ECDSA P-256 key, valid for ten years.
    pub fn generate(common_name: &str) -> Result<Self, PkiError> {
        let key = new_key()?;
        let mut params = base_params(common_name, CA_VALIDITY)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        let cert = params
            .self_signed(&key)
            .map_err(|source| PkiError::Generate {
                what: "ca certificate",
                source,
            })?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA from its PEM certificate and PEM (PKCS#8) private key, checking that the
    /// certificate is a CA and that the key is its own.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let cert_der = first_cert_der(cert_pem)?;
        let (_, cert) =
            x509_parser::parse_x509_certificate(&cert_der).map_err(PkiError::Certificate)?;
        let is_ca = cert
            .basic_constraints()
            .map_err(PkiError::Extension)?
            .is_some_and(|bc| bc.value.ca);
        if !is_ca {
            return Err(PkiError::NotCa);
        }
        let key = KeyPair::from_pem(key_pem).map_err(PkiError::Key)?;
        if !key_matches(&key, &cert) {
            return Err(PkiError::KeyMismatch);
        }
        let issuer =
            Issuer::from_ca_cert_der(&cert_der, key).map_err(|source| PkiError::Generate {
                what: "ca issuer",
                source,
            })?;
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            issuer,
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key, PEM (PKCS#8).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Serving cert (EKU serverAuth) with DNS and IP SANs, 1-year validity.
    pub fn issue_server(
        &self,
        common_name: &str,
        dns_names: &[String],
        ips: &[IpAddr],
    ) -> Result<CertifiedKey, PkiError> {
        self.issue_server_valid_for(common_name, dns_names, ips, LEAF_VALIDITY)
    }

    /// [`Self::issue_server`] with a chosen lifetime.
    pub(crate) fn issue_server_valid_for(
        &self,
        common_name: &str,
        dns_names: &[String],
        ips: &[IpAddr],
        validity: Duration,
    ) -> Result<CertifiedKey, PkiError> {
        let mut params = base_params(common_name, validity)?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        for name in dns_names {
            let ia5 = name
                .as_str()
                .try_into()
                .map_err(|_| PkiError::ServerName(name.clone()))?;
            params.subject_alt_names.push(SanType::DnsName(ia5));
        }
        params
            .subject_alt_names
            .extend(ips.iter().copied().map(SanType::IpAddress));
        self.sign_leaf(&params, None)
    }

    /// Sign a parsed request as a serving certificate with the given subject CN and names
    /// (the request's own extensions are not trusted; only its public key is used).
    pub(crate) fn sign_request_as_server(
        &self,
        mut req: rcgen::CertificateSigningRequestParams,
        common_name: &str,
        dns_names: &[String],
        ips: &[IpAddr],
    ) -> Result<String, PkiError> {
        let mut params = base_params(common_name, LEAF_VALIDITY)?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        for name in dns_names {
            let ia5 = name
                .as_str()
                .try_into()
                .map_err(|_| PkiError::ServerName(name.clone()))?;
            params.subject_alt_names.push(SanType::DnsName(ia5));
        }
        params
            .subject_alt_names
            .extend(ips.iter().copied().map(SanType::IpAddress));
        req.params = params;
        let cert = req
            .signed_by(&self.issuer)
            .map_err(|source| PkiError::Generate {
                what: "certificate",
                source,
            })?;
        Ok(cert.pem())
    }

    /// Client cert (EKU clientAuth): subject CN = user, one O per group (Kubernetes convention).
    pub fn issue_client(&self, user: &str, groups: &[String]) -> Result<CertifiedKey, PkiError> {
        self.issue_client_valid_for(user, groups, LEAF_VALIDITY)
    }

    /// [`Self::issue_client`] with a chosen lifetime.
    pub(crate) fn issue_client_valid_for(
        &self,
        user: &str,
        groups: &[String],
        validity: Duration,
    ) -> Result<CertifiedKey, PkiError> {
        let mut params = base_params(user, validity)?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign_leaf(&params, Some(der::client_subject(user, groups)))
    }

    /// Signs a fresh key's certificate; `subject_der` replaces the subject rcgen wrote.
    fn sign_leaf(
        &self,
        params: &CertificateParams,
        subject_der: Option<Vec<u8>>,
    ) -> Result<CertifiedKey, PkiError> {
        let key = new_key()?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|source| PkiError::Generate {
                what: "certificate",
                source,
            })?;
        let cert_pem = match subject_der {
            None => cert.pem(),
            Some(subject) => {
                let der = der::replace_subject(cert.der(), &subject, self.issuer.key())?;
                to_pem(&CertificateDer::from(der))
            }
        };
        Ok(CertifiedKey {
            cert_pem,
            key_pem: key.serialize_pem(),
        })
    }
}

fn new_key() -> Result<KeyPair, PkiError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|source| PkiError::Generate {
        what: "private key",
        source,
    })
}

/// Parameters shared by every certificate: subject CN, validity window starting now, a random
/// serial, key identifiers.
fn base_params(common_name: &str, validity: Duration) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + now.saturating_sub(BACKDATE);
    params.not_after = epoch + now + validity;
    params.serial_number = Some(random_serial()?);
    params.use_authority_key_identifier_extension = true;
    // Leaf usage; a CA replaces it with its own.
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    Ok(params)
}

/// A positive 16-byte serial from the system's secure random source.
fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| PkiError::Random)?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01; // keep the full length so the encoding never shrinks
    Ok(SerialNumber::from_slice(&bytes))
}

/// The first certificate in a PEM document, as DER.
pub(crate) fn first_cert_der(pem: &str) -> Result<CertificateDer<'static>, PkiError> {
    match CertificateDer::pem_slice_iter(pem.as_bytes()).next() {
        Some(Ok(der)) => Ok(der),
        Some(Err(source)) => Err(PkiError::PemInvalid {
            what: "certificate",
            source,
        }),
        None => Err(PkiError::PemMissing {
            what: "certificate",
        }),
    }
}

/// Whether `key` is the private half of the key `cert` certifies.
pub(crate) fn key_matches(
    key: &KeyPair,
    cert: &x509_parser::certificate::X509Certificate<'_>,
) -> bool {
    key.public_key_raw() == cert.public_key().subject_public_key.data.as_ref()
}

/// PEM-encodes a DER certificate with 64-column lines.
fn to_pem(der: &CertificateDer<'_>) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::extensions::GeneralName;

    fn parse(pem: &str) -> (Vec<u8>, SystemTime) {
        (first_cert_der(pem).unwrap().to_vec(), SystemTime::now())
    }

    #[test]
    fn generated_ca_is_a_ten_year_ca() {
        let ca = CertificateAuthority::generate("skiff-ca").unwrap();
        let (der, now) = parse(ca.cert_pem());
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(cert.basic_constraints().unwrap().unwrap().value.ca);
        assert_eq!(
            cert.subject()
                .iter_common_name()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            "skiff-ca"
        );
        let now_secs = i64::try_from(now.duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap();
        let lifetime_days = (cert.validity().not_after.timestamp() - now_secs) / 86_400;
        assert!((3649..=3651).contains(&lifetime_days), "{lifetime_days}");
        assert!(cert.validity().not_before.timestamp() < now_secs);
        assert!(ca.key_pem().contains("BEGIN PRIVATE KEY"));
    }

    #[test]
    fn from_pem_round_trips_and_rejects_wrong_inputs() {
        let ca = CertificateAuthority::generate("a").unwrap();
        let loaded = CertificateAuthority::from_pem(ca.cert_pem(), ca.key_pem()).unwrap();
        assert_eq!(loaded.cert_pem(), ca.cert_pem());
        assert_eq!(loaded.key_pem(), ca.key_pem());

        let other = CertificateAuthority::generate("b").unwrap();
        assert!(matches!(
            CertificateAuthority::from_pem(ca.cert_pem(), other.key_pem()),
            Err(PkiError::KeyMismatch)
        ));
        let leaf = ca.issue_client("u", &[]).unwrap();
        assert!(matches!(
            CertificateAuthority::from_pem(&leaf.cert_pem, &leaf.key_pem),
            Err(PkiError::NotCa)
        ));
        assert!(matches!(
            CertificateAuthority::from_pem("garbage", ca.key_pem()),
            Err(PkiError::PemMissing { .. })
        ));
        assert!(matches!(
            CertificateAuthority::from_pem(ca.cert_pem(), "garbage"),
            Err(PkiError::Key(_))
        ));
    }

    #[test]
    fn loaded_ca_issues_certificates_naming_it_as_issuer() {
        let ca = CertificateAuthority::generate("issuer-name").unwrap();
        let loaded = CertificateAuthority::from_pem(ca.cert_pem(), ca.key_pem()).unwrap();
        let leaf = loaded.issue_server("s", &["x".to_owned()], &[]).unwrap();
        let der = leaf.cert_der().unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(
            cert.issuer()
                .iter_common_name()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            "issuer-name"
        );
    }

    #[test]
    fn server_cert_has_sans_and_server_auth() {
        let ca = CertificateAuthority::generate("ca").unwrap();
        let ips: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        let leaf = ca
            .issue_server(
                "kube-apiserver",
                &["localhost".to_owned(), "kubernetes".to_owned()],
                &ips,
            )
            .unwrap();
        let der = leaf.cert_der().unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let sans = cert.subject_alternative_name().unwrap().unwrap();
        let mut dns = Vec::new();
        let mut ip_bytes = Vec::new();
        for name in &sans.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns.push(d.to_string()),
                GeneralName::IPAddress(b) => ip_bytes.push(b.to_vec()),
                other => panic!("unexpected san {other:?}"),
            }
        }
        assert_eq!(dns, ["localhost", "kubernetes"]);
        assert_eq!(
            ip_bytes,
            [
                vec![10, 0, 0, 1],
                [0u8; 15].iter().copied().chain([1]).collect()
            ]
        );
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth);
        assert!(!cert.is_ca());
    }

    #[test]
    fn server_cert_rejects_non_ascii_dns_name() {
        let ca = CertificateAuthority::generate("ca").unwrap();
        let err = ca
            .issue_server("s", &["bücher.example".to_owned()], &[])
            .unwrap_err();
        assert!(matches!(err, PkiError::ServerName(n) if n == "bücher.example"));
    }

    #[test]
    fn serials_differ_between_certificates() {
        let ca = CertificateAuthority::generate("ca").unwrap();
        let a = ca.issue_client("u", &[]).unwrap().cert_der().unwrap();
        let b = ca.issue_client("u", &[]).unwrap().cert_der().unwrap();
        let (_, a) = x509_parser::parse_x509_certificate(&a).unwrap();
        let (_, b) = x509_parser::parse_x509_certificate(&b).unwrap();
        assert_ne!(a.raw_serial(), b.raw_serial());
        assert_eq!(a.raw_serial().len(), 16);
    }

    #[test]
    fn debug_output_hides_private_keys() {
        let ca = CertificateAuthority::generate("ca").unwrap();
        let leaf = ca.issue_client("u", &[]).unwrap();
        assert!(!format!("{ca:?}").contains("PRIVATE KEY"));
        assert!(!format!("{leaf:?}").contains("PRIVATE KEY"));
    }
}
