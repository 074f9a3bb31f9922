//! A node's own client credentials, issued directly by the cluster CA: what a control plane's
//! agent uses to register the control plane as a node (it holds the CA key, so it needs no
//! bootstrap token).

use crate::server::{Purpose, still_fits};
use crate::{CertificateAuthority, Kubeconfig, PkiError};

/// The group every node's user is in.
pub const NODES_GROUP: &str = "system:nodes";

/// The user a node's agent acts as: `system:node:<node>` (the kubelet convention).
pub fn node_user(node: &str) -> String {
    format!("system:node:{node}")
}

/// The kubeconfig of node `node`'s agent: `existing` (a kubeconfig file's text) when it still
/// fits, otherwise a new one with a fresh certificate. It fits when it points at `server_url`,
/// trusts `ca`, and holds a client certificate signed by `ca` for `system:node:<node>` in group
/// `system:nodes` that is valid for more than 30 more days. The flag says whether a
/// certificate was issued now.
pub fn node_kubeconfig(
    ca: &CertificateAuthority,
    cluster_name: &str,
    server_url: &str,
    node: &str,
    existing: Option<&str>,
) -> Result<(Kubeconfig, bool), PkiError> {
    let user = node_user(node);
    let groups = [NODES_GROUP.to_owned()];
    if let Some(kubeconfig) = existing.and_then(|text| Kubeconfig::from_yaml(text).ok())
        && kubeconfig.server_url() == Some(server_url)
        && kubeconfig.ca_pem().as_deref() == Some(ca.cert_pem())
        && let Some(pair) = kubeconfig.client_cert()
        && still_fits(
            ca,
            &pair,
            &Purpose::Client {
                user: &user,
                groups: &groups,
            },
        )?
    {
        return Ok((kubeconfig, false));
    }
    let pair = ca.issue_client(&user, &groups)?;
    let kubeconfig =
        Kubeconfig::for_client_cert(cluster_name, server_url, ca.cert_pem(), &user, &pair);
    Ok((kubeconfig, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity_from_der;

    const URL: &str = "https://127.0.0.1:6443";

    #[test]
    fn issues_a_node_certificate_then_reuses_it() {
        let ca = CertificateAuthority::generate("ca").unwrap();
        let (first, issued) = node_kubeconfig(&ca, "demo", URL, "cp-1", None).unwrap();
        assert!(issued);
        assert_eq!(first.server_url(), Some(URL));
        assert_eq!(first.ca_pem().as_deref(), Some(ca.cert_pem()));
        let pair = first.client_cert().unwrap();
        let id = identity_from_der(&pair.cert_der().unwrap()).unwrap();
        assert_eq!(id.user, "system:node:cp-1");
        assert_eq!(id.groups, ["system:nodes"]);

        let text = first.to_yaml();
        let (second, issued) = node_kubeconfig(&ca, "demo", URL, "cp-1", Some(&text)).unwrap();
        assert!(!issued, "a fitting kubeconfig is kept");
        assert_eq!(second, first);
    }

    #[test]
    fn reissues_when_anything_no_longer_fits() {
        let ca = CertificateAuthority::generate("ca").unwrap();
        let (kc, _) = node_kubeconfig(&ca, "demo", URL, "cp-1", None).unwrap();
        let text = kc.to_yaml();
        // Another node name, another server, another CA, garbage: all get a new certificate.
        let (other, issued) = node_kubeconfig(&ca, "demo", URL, "cp-2", Some(&text)).unwrap();
        assert!(issued);
        let id = identity_from_der(&other.client_cert().unwrap().cert_der().unwrap()).unwrap();
        assert_eq!(id.user, "system:node:cp-2");
        let (moved, issued) =
            node_kubeconfig(&ca, "demo", "https://127.0.0.1:7443", "cp-1", Some(&text)).unwrap();
        assert!(issued);
        assert_eq!(moved.server_url(), Some("https://127.0.0.1:7443"));
        let new_ca = CertificateAuthority::generate("ca").unwrap();
        let (_, issued) = node_kubeconfig(&new_ca, "demo", URL, "cp-1", Some(&text)).unwrap();
        assert!(issued);
        let (_, issued) = node_kubeconfig(&ca, "demo", URL, "cp-1", Some("::not yaml")).unwrap();
        assert!(issued);
        // A certificate for the right user but another group (an admin's) is not reused.
        let admin = ca
            .issue_client("system:node:cp-1", &["system:masters".into()])
            .unwrap();
        let wrong = Kubeconfig::for_client_cert("demo", URL, ca.cert_pem(), "x", &admin);
        let (_, issued) =
            node_kubeconfig(&ca, "demo", URL, "cp-1", Some(&wrong.to_yaml())).unwrap();
        assert!(issued);
    }

    #[test]
    fn a_certificate_close_to_expiry_is_replaced() {
        let ca = CertificateAuthority::generate("ca").unwrap();
        let short = ca
            .issue_client_valid_for(
                "system:node:cp-1",
                &[NODES_GROUP.to_owned()],
                std::time::Duration::from_secs(24 * 60 * 60),
            )
            .unwrap();
        let kc = Kubeconfig::for_client_cert("demo", URL, ca.cert_pem(), "n", &short);
        let (renewed, issued) =
            node_kubeconfig(&ca, "demo", URL, "cp-1", Some(&kc.to_yaml())).unwrap();
        assert!(issued);
        assert_ne!(renewed.client_cert().unwrap(), short);
    }
}
