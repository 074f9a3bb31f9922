//! Pull secrets: docker config JSON from `kubernetes.io/dockerconfigjson` (and legacy
//! `kubernetes.io/dockercfg`) secrets, matched to an image the way the kubelet's keyring does
//! (registry host with `*` label globs, optional port, repository path prefix; most specific
//! key wins).

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

use super::reference::ImageRef;

/// A pull secret that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("secret {secret:?} has no {key:?} key")]
    MissingKey { secret: String, key: &'static str },
    #[error("secret {secret:?} is not valid docker config JSON")]
    Json {
        secret: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("credentials for {key:?}: auth field is not base64 of user:password")]
    BadAuthField { key: String },
}

/// Credentials from the pod's `imagePullSecrets`, ready to be matched to images.
#[derive(Debug, Clone, Default)]
pub struct PullSecrets {
    entries: Vec<KeyEntry>,
}

#[derive(Clone)]
struct KeyEntry {
    host: String,
    path: String,
    auth: RegistryAuth,
}

impl std::fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} {:?}", self.host, self.path, self.auth)
    }
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(Deserialize, Default)]
struct DockerAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
}

impl PullSecrets {
    /// No credentials: anonymous pulls.
    pub fn none() -> Self {
        Self::default()
    }

    /// Credentials from secrets. Secrets of other types are ignored, as the kubelet does.
    pub fn from_secrets(secrets: &[Secret]) -> Result<Self, AuthError> {
        let mut out = Self::default();
        for s in secrets {
            let name = s.metadata.name.clone().unwrap_or_default();
            let data = s.data.as_ref();
            match s.type_.as_deref() {
                Some("kubernetes.io/dockerconfigjson") => {
                    let raw = data.and_then(|d| d.get(".dockerconfigjson")).ok_or(
                        AuthError::MissingKey {
                            secret: name.clone(),
                            key: ".dockerconfigjson",
                        },
                    )?;
                    out.add_config_json(&name, &raw.0)?;
                }
                Some("kubernetes.io/dockercfg") => {
                    let raw =
                        data.and_then(|d| d.get(".dockercfg"))
                            .ok_or(AuthError::MissingKey {
                                secret: name.clone(),
                                key: ".dockercfg",
                            })?;
                    let auths: BTreeMap<String, DockerAuth> = serde_json::from_slice(&raw.0)
                        .map_err(|source| AuthError::Json {
                            secret: name.clone(),
                            source,
                        })?;
                    out.add_auths(auths)?;
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// Credentials from one docker config JSON document (`{"auths": {...}}`).
    pub fn from_docker_config(json: &[u8]) -> Result<Self, AuthError> {
        let mut out = Self::default();
        out.add_config_json("", json)?;
        Ok(out)
    }

    fn add_config_json(&mut self, secret: &str, json: &[u8]) -> Result<(), AuthError> {
        let cfg: DockerConfig = serde_json::from_slice(json).map_err(|source| AuthError::Json {
            secret: secret.to_string(),
            source,
        })?;
        self.add_auths(cfg.auths)
    }

    fn add_auths(&mut self, auths: BTreeMap<String, DockerAuth>) -> Result<(), AuthError> {
        for (key, a) in auths {
            let auth = if let Some(token) = a.registrytoken.filter(|t| !t.is_empty()) {
                RegistryAuth::Bearer(token)
            } else if let Some(encoded) = a.auth.filter(|t| !t.is_empty()) {
                let bad = || AuthError::BadAuthField { key: key.clone() };
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .map_err(|_| bad())?;
                let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
                let (user, pass) = decoded.split_once(':').ok_or_else(bad)?;
                RegistryAuth::Basic(user.to_string(), pass.to_string())
            } else if let (Some(u), Some(p)) = (a.username, a.password) {
                RegistryAuth::Basic(u, p)
            } else {
                continue;
            };
            let (host, path) = split_key(&key);
            self.entries.push(KeyEntry { host, path, auth });
        }
        Ok(())
    }

    /// The credentials to pull `image` with (anonymous when nothing matches).
    pub fn for_image(&self, image: &ImageRef) -> RegistryAuth {
        let repo = image.repository();
        self.entries
            .iter()
            .filter(|e| host_matches(&e.host, image.registry()))
            .filter(|e| {
                e.path.is_empty() || repo == e.path || repo.starts_with(&format!("{}/", e.path))
            })
            .max_by_key(|e| (!e.host.contains('*'), e.path.len()))
            .map(|e| e.auth.clone())
            .unwrap_or(RegistryAuth::Anonymous)
    }
}

/// `https://index.docker.io/v1/` → (`docker.io`, ``); `reg.io:5000/team` → (`reg.io:5000`, `team`).
fn split_key(key: &str) -> (String, String) {
    let k = key
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let (host, path) = k.split_once('/').unwrap_or((k, ""));
    let path = path.trim_matches('/');
    let path = if path == "v1" || path == "v2" {
        ""
    } else {
        path
    };
    let host = match host.to_ascii_lowercase().as_str() {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        other => other.to_string(),
    };
    (host, path.to_string())
}

/// `*.example.com` matches `a.example.com` (one label per `*`); ports must match exactly.
fn host_matches(pattern: &str, host: &str) -> bool {
    let (p_name, p_port) = pattern.split_once(':').unwrap_or((pattern, ""));
    let (h_name, h_port) = host.split_once(':').unwrap_or((host, ""));
    if p_port != h_port {
        return false;
    }
    let p: Vec<&str> = p_name.split('.').collect();
    let h: Vec<&str> = h_name.split('.').collect();
    p.len() == h.len()
        && p.iter()
            .zip(&h)
            .all(|(p, h)| *p == "*" || p.eq_ignore_ascii_case(h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(type_: &str, key: &str, json: &str) -> Secret {
        Secret {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("regcred".into()),
                ..Default::default()
            },
            type_: Some(type_.into()),
            data: Some([(key.to_string(), ByteString(json.as_bytes().to_vec()))].into()),
            ..Default::default()
        }
    }

    fn img(s: &str) -> ImageRef {
        ImageRef::parse(s).unwrap()
    }

    #[test]
    fn docker_hub_key_matches_short_names() {
        // "alice:s3cret"
        let json = r#"{"auths":{"https://index.docker.io/v1/":{"auth":"YWxpY2U6czNjcmV0"}}}"#;
        let s = PullSecrets::from_secrets(&[secret(
            "kubernetes.io/dockerconfigjson",
            ".dockerconfigjson",
            json,
        )])
        .unwrap();
        assert_eq!(
            s.for_image(&img("nginx")),
            RegistryAuth::Basic("alice".into(), "s3cret".into())
        );
        assert_eq!(s.for_image(&img("quay.io/x/y")), RegistryAuth::Anonymous);
    }

    #[test]
    fn most_specific_key_wins_and_ports_and_globs_match() {
        let json = r#"{"auths":{
            "reg.example.com:5000":{"username":"a","password":"1"},
            "reg.example.com:5000/team":{"username":"b","password":"2"},
            "*.corp.io":{"registrytoken":"tok"}
        }}"#;
        let s = PullSecrets::from_docker_config(json.as_bytes()).unwrap();
        assert_eq!(
            s.for_image(&img("reg.example.com:5000/team/app")),
            RegistryAuth::Basic("b".into(), "2".into())
        );
        assert_eq!(
            s.for_image(&img("reg.example.com:5000/other/app")),
            RegistryAuth::Basic("a".into(), "1".into())
        );
        assert_eq!(
            s.for_image(&img("reg.example.com/team/app")),
            RegistryAuth::Anonymous,
            "port must match"
        );
        assert_eq!(
            s.for_image(&img("eu.corp.io/app")),
            RegistryAuth::Bearer("tok".into())
        );
        assert_eq!(
            s.for_image(&img("a.eu.corp.io/app")),
            RegistryAuth::Anonymous
        );
    }

    #[test]
    fn legacy_dockercfg_and_other_types() {
        let legacy = secret(
            "kubernetes.io/dockercfg",
            ".dockercfg",
            r#"{"quay.io":{"username":"q","password":"p"}}"#,
        );
        let opaque = secret("Opaque", "x", "not json");
        let s = PullSecrets::from_secrets(&[legacy, opaque]).unwrap();
        assert_eq!(
            s.for_image(&img("quay.io/org/app:1")),
            RegistryAuth::Basic("q".into(), "p".into())
        );
    }

    #[test]
    fn malformed_secrets_are_errors() {
        let bad_json = secret("kubernetes.io/dockerconfigjson", ".dockerconfigjson", "{");
        assert!(matches!(
            PullSecrets::from_secrets(&[bad_json]),
            Err(AuthError::Json { .. })
        ));
        let missing = secret("kubernetes.io/dockerconfigjson", "wrong", "{}");
        assert!(matches!(
            PullSecrets::from_secrets(&[missing]),
            Err(AuthError::MissingKey { .. })
        ));
        let bad_auth = r#"{"auths":{"r.io":{"auth":"bm9jb2xvbg=="}}}"#; // "nocolon"
        assert!(matches!(
            PullSecrets::from_docker_config(bad_auth.as_bytes()),
            Err(AuthError::BadAuthField { .. })
        ));
    }
}
