//! kubeconfig files in the clientcmd `v1` format, with certificate data embedded (base64), so
//! one file is all `kubectl` needs.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::{CertifiedKey, PkiError, write_private};

/// A kubeconfig file (clientcmd v1 format, certificate data embedded base64).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Kubeconfig {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
    clusters: Vec<Named<Cluster>>,
    users: Vec<Named<AuthInfo>>,
    contexts: Vec<Named<Context>>,
    current_context: String,
}

/// clientcmd's `{name, <payload>}` list entries; the payload key differs per list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Named<T> {
    name: String,
    #[serde(flatten)]
    item: T,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Cluster {
    cluster: ClusterInfo,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ClusterInfo {
    server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    certificate_authority_data: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct AuthInfo {
    user: UserInfo,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct UserInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_certificate_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_key_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Context {
    context: ContextInfo,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ContextInfo {
    cluster: String,
    user: String,
}

/// Credentials stay out of logs: only where the file points is shown.
impl fmt::Debug for Kubeconfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kubeconfig")
            .field("current_context", &self.current_context)
            .field("server_url", &self.server_url())
            .finish_non_exhaustive()
    }
}

impl Kubeconfig {
    /// A kubeconfig authenticating with a client certificate.
    pub fn for_client_cert(
        cluster_name: &str,
        server_url: &str,
        ca_pem: &str,
        user: &str,
        client: &CertifiedKey,
    ) -> Self {
        Self::new(
            cluster_name,
            server_url,
            ca_pem,
            user,
            UserInfo {
                client_certificate_data: Some(STANDARD.encode(&client.cert_pem)),
                client_key_data: Some(STANDARD.encode(&client.key_pem)),
                token: None,
            },
        )
    }

    /// A kubeconfig authenticating with a bearer token.
    pub fn for_token(
        cluster_name: &str,
        server_url: &str,
        ca_pem: &str,
        user: &str,
        token: &str,
    ) -> Self {
        Self::new(
            cluster_name,
            server_url,
            ca_pem,
            user,
            UserInfo {
                token: Some(token.to_owned()),
                ..UserInfo::default()
            },
        )
    }

    fn new(cluster_name: &str, server_url: &str, ca_pem: &str, user: &str, auth: UserInfo) -> Self {
        // kubeadm's naming: the context is "<user>@<cluster>".
        let context_name = format!("{user}@{cluster_name}");
        Self {
            api_version: "v1".to_owned(),
            kind: "Config".to_owned(),
            clusters: vec![Named {
                name: cluster_name.to_owned(),
                item: Cluster {
                    cluster: ClusterInfo {
                        server: server_url.to_owned(),
                        certificate_authority_data: Some(STANDARD.encode(ca_pem)),
                    },
                },
            }],
            users: vec![Named {
                name: user.to_owned(),
                item: AuthInfo { user: auth },
            }],
            contexts: vec![Named {
                name: context_name.clone(),
                item: Context {
                    context: ContextInfo {
                        cluster: cluster_name.to_owned(),
                        user: user.to_owned(),
                    },
                },
            }],
            current_context: context_name,
        }
    }

    /// Parses a kubeconfig document (only the fields this type models are kept).
    pub fn from_yaml(yaml: &str) -> Result<Self, PkiError> {
        serde_yaml::from_str(yaml).map_err(PkiError::Kubeconfig)
    }

    /// The document as YAML.
    pub fn to_yaml(&self) -> String {
        // Plain strings and lists only: serialization cannot fail.
        serde_yaml::to_string(self).unwrap_or_default()
    }

    /// Writes the document with mode 0600, atomically (temporary file + rename).
    pub fn write(&self, path: &Path) -> Result<(), PkiError> {
        write_private(path, self.to_yaml().as_bytes())
    }

    /// The API server URL of the current context's cluster.
    pub fn server_url(&self) -> Option<&str> {
        Some(&self.current_cluster()?.server)
    }

    /// The CA certificate (PEM) the current context's cluster is trusted with.
    pub fn ca_pem(&self) -> Option<String> {
        let data = self
            .current_cluster()?
            .certificate_authority_data
            .as_ref()?;
        decode_text(data)
    }

    /// The current context user's client certificate and key, when it has them.
    pub fn client_cert(&self) -> Option<CertifiedKey> {
        let context = self.current_context()?;
        let user = &self
            .users
            .iter()
            .find(|u| u.name == context.user)?
            .item
            .user;
        Some(CertifiedKey {
            cert_pem: decode_text(user.client_certificate_data.as_ref()?)?,
            key_pem: decode_text(user.client_key_data.as_ref()?)?,
        })
    }

    fn current_context(&self) -> Option<&ContextInfo> {
        self.contexts
            .iter()
            .find(|c| c.name == self.current_context)
            .map(|c| &c.item.context)
    }

    fn current_cluster(&self) -> Option<&ClusterInfo> {
        let context = self.current_context()?;
        self.clusters
            .iter()
            .find(|c| c.name == context.cluster)
            .map(|c| &c.item.cluster)
    }
}

fn decode_text(data: &str) -> Option<String> {
    String::from_utf8(STANDARD.decode(data).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CertificateAuthority;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    fn sample_cert() -> (CertificateAuthority, CertifiedKey) {
        let ca = CertificateAuthority::generate("ca").unwrap();
        let admin = ca
            .issue_client("skiff-admin", &["system:masters".to_owned()])
            .unwrap();
        (ca, admin)
    }

    #[test]
    fn client_cert_yaml_has_the_clientcmd_shape() {
        let (ca, admin) = sample_cert();
        let kc = Kubeconfig::for_client_cert(
            "skiff",
            "https://10.0.0.1:6443",
            ca.cert_pem(),
            "skiff-admin",
            &admin,
        );
        let yaml: serde_yaml::Value = serde_yaml::from_str(&kc.to_yaml()).unwrap();
        assert_eq!(yaml["apiVersion"], "v1");
        assert_eq!(yaml["kind"], "Config");
        assert_eq!(yaml["current-context"], "skiff-admin@skiff");
        assert_eq!(yaml["clusters"][0]["name"], "skiff");
        assert_eq!(
            yaml["clusters"][0]["cluster"]["server"],
            "https://10.0.0.1:6443"
        );
        assert_eq!(
            yaml["clusters"][0]["cluster"]["certificate-authority-data"],
            b64(ca.cert_pem()).as_str()
        );
        assert_eq!(yaml["contexts"][0]["name"], "skiff-admin@skiff");
        assert_eq!(yaml["contexts"][0]["context"]["cluster"], "skiff");
        assert_eq!(yaml["contexts"][0]["context"]["user"], "skiff-admin");
        assert_eq!(yaml["users"][0]["name"], "skiff-admin");
        let user = &yaml["users"][0]["user"];
        assert_eq!(
            user["client-certificate-data"],
            b64(&admin.cert_pem).as_str()
        );
        assert_eq!(user["client-key-data"], b64(&admin.key_pem).as_str());
        assert!(user.get("token").is_none());
    }

    #[test]
    fn token_yaml_has_only_the_token() {
        let kc = Kubeconfig::for_token("c", "https://h:6443", "pem", "bot", "abc.def");
        let yaml: serde_yaml::Value = serde_yaml::from_str(&kc.to_yaml()).unwrap();
        let user = &yaml["users"][0]["user"];
        assert_eq!(user["token"], "abc.def");
        assert!(user.get("client-key-data").is_none());
        assert_eq!(kc.server_url(), Some("https://h:6443"));
    }

    #[test]
    fn debug_output_hides_credentials() {
        let kc = Kubeconfig::for_token("c", "https://h", "pem", "u", "sekrit-token");
        let shown = format!("{kc:?}");
        assert!(!shown.contains("sekrit-token"), "{shown}");
        assert!(shown.contains("https://h"), "{shown}");
    }

    #[test]
    fn yaml_round_trips() {
        let (ca, admin) = sample_cert();
        let kc = Kubeconfig::for_client_cert("c", "https://h", ca.cert_pem(), "u", &admin);
        assert_eq!(Kubeconfig::from_yaml(&kc.to_yaml()).unwrap(), kc);
        assert!(matches!(
            Kubeconfig::from_yaml("clusters: 3"),
            Err(PkiError::Kubeconfig(_))
        ));
    }

    #[test]
    fn written_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.conf");
        Kubeconfig::for_token("c", "https://h", "pem", "u", "t")
            .write(&path)
            .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    /// kubectl itself accepts the file and sees the same values.
    #[test]
    fn kubectl_config_view_accepts_it() {
        let kubectl = Path::new("/usr/bin/kubectl");
        if !kubectl.exists() {
            eprintln!("skipping: {} not installed", kubectl.display());
            return;
        }
        let (ca, admin) = sample_cert();
        let dir = tempfile::tempdir().unwrap();
        let cert_path = dir.path().join("admin.conf");
        let token_path = dir.path().join("bot.conf");
        Kubeconfig::for_client_cert(
            "skiff",
            "https://127.0.0.1:6443",
            ca.cert_pem(),
            "skiff-admin",
            &admin,
        )
        .write(&cert_path)
        .unwrap();
        Kubeconfig::for_token(
            "skiff",
            "https://127.0.0.1:6443",
            ca.cert_pem(),
            "bot",
            "s3cret",
        )
        .write(&token_path)
        .unwrap();

        let view = |path: &Path, raw: bool| -> serde_json::Value {
            let mut cmd = Command::new(kubectl);
            cmd.args(["config", "view", "-o", "json", "--kubeconfig"])
                .arg(path);
            if raw {
                cmd.arg("--raw");
            }
            let out = cmd.env_remove("KUBECONFIG").output().unwrap();
            assert!(
                out.status.success(),
                "kubectl failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice(&out.stdout).unwrap()
        };

        // The default view redacts secrets but must still understand the file.
        let json = view(&cert_path, false);
        assert_eq!(json["current-context"], "skiff-admin@skiff");
        assert_eq!(json["users"][0]["user"]["client-key-data"], "DATA+OMITTED");

        let json = view(&cert_path, true);
        assert_eq!(json["current-context"], "skiff-admin@skiff");
        assert_eq!(
            json["clusters"][0]["cluster"]["server"],
            "https://127.0.0.1:6443"
        );
        assert_eq!(
            json["clusters"][0]["cluster"]["certificate-authority-data"],
            b64(ca.cert_pem()).as_str()
        );
        assert_eq!(json["users"][0]["name"], "skiff-admin");
        assert_eq!(
            json["users"][0]["user"]["client-certificate-data"],
            b64(&admin.cert_pem).as_str()
        );
        assert_eq!(
            json["users"][0]["user"]["client-key-data"],
            b64(&admin.key_pem).as_str()
        );

        let json = view(&token_path, true);
        assert_eq!(json["users"][0]["user"]["token"], "s3cret");
        assert_eq!(json["contexts"][0]["context"]["user"], "bot");
    }
}
