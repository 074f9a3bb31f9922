//! Kubelet serving certificates through certificate signing requests: a node agent makes a key
//! and a PKCS#10 request naming itself and its addresses; the API server signs it with the
//! cluster CA (signer `kubernetes.io/kubelet-serving`), keeping only the node's own identity.

use std::net::IpAddr;

use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType, KeyPair,
    PKCS_ECDSA_P256_SHA256, SanType,
};

use crate::{CertificateAuthority, CertifiedKey, PkiError};

/// A new key and a request for a serving certificate for node `node` (subject CN
/// `system:node:<node>`, O `system:nodes`), valid for its name and `ips`. Returns the key PEM
/// and the request PEM.
pub fn kubelet_serving_request(node: &str, ips: &[IpAddr]) -> Result<(String, String), PkiError> {
    let key =
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|source| PkiError::Generate {
            what: "private key",
            source,
        })?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "system:nodes");
    dn.push(DnType::CommonName, format!("system:node:{node}"));
    params.distinguished_name = dn;
    if let Ok(name) = node.try_into() {
        params.subject_alt_names.push(SanType::DnsName(name));
    }
    params
        .subject_alt_names
        .extend(ips.iter().copied().map(SanType::IpAddress));
    let csr = params
        .serialize_request(&key)
        .and_then(|c| c.pem())
        .map_err(|source| PkiError::Generate {
            what: "certificate request",
            source,
        })?;
    Ok((key.serialize_pem(), csr))
}

/// What a kubelet-serving request asks for, once verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServingRequest {
    /// The node named by the subject CN `system:node:<node>`.
    pub node: String,
}

/// Parse and verify (signature) a kubelet-serving request; it must name a node.
pub fn read_serving_request(csr_pem: &str) -> Result<ServingRequest, PkiError> {
    let req = CertificateSigningRequestParams::from_pem(csr_pem).map_err(PkiError::Key)?;
    let cn = req
        .params
        .distinguished_name
        .get(&DnType::CommonName)
        .and_then(|v| match v {
            rcgen::DnValue::Utf8String(s) => Some(s.clone()),
            rcgen::DnValue::PrintableString(s) => Some(s.as_str().to_owned()),
            rcgen::DnValue::Ia5String(s) => Some(s.as_str().to_owned()),
            _ => None,
        })
        .ok_or(PkiError::Der("request has no common name"))?;
    let node = cn
        .strip_prefix("system:node:")
        .filter(|n| !n.is_empty())
        .ok_or(PkiError::Der("request subject is not system:node:<name>"))?;
    Ok(ServingRequest {
        node: node.to_owned(),
    })
}

impl CertificateAuthority {
    /// Sign a kubelet-serving request: the certificate carries the request's subject and
    /// DNS/IP names, EKU serverAuth, and the CA's usual leaf lifetime.
    pub fn sign_serving_request(&self, csr_pem: &str) -> Result<CertifiedKey, PkiError> {
        let req = read_serving_request(csr_pem)?;
        let parsed = CertificateSigningRequestParams::from_pem(csr_pem).map_err(PkiError::Key)?;
        let names: Vec<String> = parsed
            .params
            .subject_alt_names
            .iter()
            .filter_map(|s| match s {
                SanType::DnsName(n) => Some(n.as_str().to_owned()),
                _ => None,
            })
            .collect();
        let ips: Vec<IpAddr> = parsed
            .params
            .subject_alt_names
            .iter()
            .filter_map(|s| match s {
                SanType::IpAddress(ip) => Some(*ip),
                _ => None,
            })
            .collect();
        let cert_pem = self.sign_request_as_server(
            parsed,
            &format!("system:node:{}", req.node),
            &names,
            &ips,
        )?;
        Ok(CertifiedKey {
            cert_pem,
            key_pem: String::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_sign_verify() {
        let ca = CertificateAuthority::generate("test-ca").unwrap();
        let ip: IpAddr = "192.168.7.2".parse().unwrap();
        let (key, csr) = kubelet_serving_request("node-a", &[ip]).unwrap();
        assert!(key.contains("PRIVATE KEY"));
        assert_eq!(read_serving_request(&csr).unwrap().node, "node-a");
        let signed = ca.sign_serving_request(&csr).unwrap();
        let pair = CertifiedKey {
            cert_pem: signed.cert_pem,
            key_pem: key,
        };
        // A server config from it loads (key matches certificate).
        crate::server_tls_config(&pair, Some(ca.cert_pem())).unwrap();
        let der = pair.cert_der().unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(cert.subject().to_string().contains("system:node:node-a"));
        let bad = CertificateParams::default();
        let k = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let other = bad.serialize_request(&k).unwrap().pem().unwrap();
        assert!(read_serving_request(&other).is_err());
    }
}
