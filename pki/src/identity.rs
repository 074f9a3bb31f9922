//! Who a client certificate names, read the way Kubernetes' x509 authenticator reads it.

use x509_parser::x509::X509Name;

use crate::PkiError;

/// Who a verified client certificate names: CN → user, O → groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

/// Reads the identity from a client certificate's subject. The caller must already have
/// verified the certificate (the TLS handshake does); this only parses.
///
/// As in Go's `pkix.Name`, when several common names are present the last one wins; groups keep
/// the order of the Organization attributes.
pub fn identity_from_der(cert_der: &[u8]) -> Result<Identity, PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).map_err(PkiError::Certificate)?;
    identity_from_name(cert.subject())
}

fn identity_from_name(name: &X509Name<'_>) -> Result<Identity, PkiError> {
    let text = |attr: &x509_parser::x509::AttributeTypeAndValue<'_>| {
        attr.as_str()
            .map(str::to_owned)
            .map_err(|_| PkiError::BadSubject)
    };
    let user = match name.iter_common_name().last() {
        Some(attr) => text(attr)?,
        None => return Err(PkiError::NoCommonName),
    };
    if user.is_empty() {
        return Err(PkiError::NoCommonName);
    }
    let groups = name
        .iter_organization()
        .map(text)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Identity { user, groups })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CertificateAuthority;

    fn identity_of(user: &str, groups: &[&str]) -> Result<Identity, PkiError> {
        let ca = CertificateAuthority::generate("ca").unwrap();
        let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
        let leaf = ca.issue_client(user, &groups).unwrap();
        identity_from_der(&leaf.cert_der().unwrap())
    }

    #[test]
    fn reads_user_and_groups_in_order() {
        let id = identity_of("alice", &["system:masters", "team-a", "team-b"]).unwrap();
        assert_eq!(id.user, "alice");
        assert_eq!(id.groups, ["system:masters", "team-a", "team-b"]);
    }

    #[test]
    fn no_groups_is_fine() {
        let id = identity_of("system:kube-scheduler", &[]).unwrap();
        assert_eq!(id.user, "system:kube-scheduler");
        assert!(id.groups.is_empty());
    }

    #[test]
    fn unicode_names_survive() {
        let id = identity_of("jürgen", &["équipe"]).unwrap();
        assert_eq!(id.user, "jürgen");
        assert_eq!(id.groups, ["équipe"]);
    }

    #[test]
    fn empty_common_name_is_rejected() {
        assert!(matches!(
            identity_of("", &["g"]),
            Err(PkiError::NoCommonName)
        ));
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(matches!(
            identity_from_der(b"not a certificate"),
            Err(PkiError::Certificate(_))
        ));
    }
}
