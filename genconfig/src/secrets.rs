//! The cluster's secrets, their `secrets.yaml` form, and what is derived from them: machine
//! configs for nodes, the admin kubeconfig and the machine-API client config.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use skiff_machine::{
    BootstrapToken, Cidr, Cluster, ControlPlaneSecrets, DevicePath, DnsName, EndpointUrl,
    Generation, Hostname, KernelArg, Machine, MachineConfig, Mirror, Network, PublicKey,
    RegistryHost, Role, SchemaVersion, ServingCertificate, SigningKey, WorkerSecrets,
};
use skiff_pki::{CertificateAuthority, Kubeconfig, PkiError};

/// Why secrets or configs could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error("certificates")]
    Pki(#[from] PkiError),
    #[error("signing key")]
    Key(#[from] skiff_machine::KeyError),
    #[error("{what}: {message}")]
    Value { what: &'static str, message: String },
    #[error("machine config")]
    Config(#[from] skiff_machine::ConfigError),
    #[error("secrets file")]
    SecretsYaml(#[source] serde_yaml::Error),
    #[error("the system random source failed")]
    Random,
    #[error("{path} already exists; choose another --out directory or pass --force")]
    Exists { path: String },
    #[error("cannot write {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn value_error(what: &'static str) -> impl Fn(skiff_machine::InvalidValue) -> GenError {
    move |e| GenError::Value {
        what,
        message: e.to_string(),
    }
}

fn parse_value<T>(text: &str, what: &'static str) -> Result<T, GenError>
where
    T: std::str::FromStr<Err = skiff_machine::InvalidValue>,
{
    text.parse().map_err(value_error(what))
}

/// Everything secret about one cluster. `Debug` shows no key material.
pub struct ClusterSecrets {
    pub name: DnsName,
    pub endpoint: EndpointUrl,
    pub pod_cidr: Cidr,
    pub service_cidr: Cidr,
    pub kubernetes_ca: CertificateAuthority,
    pub machine_ca: CertificateAuthority,
    service_account_key: String,
    bootstrap_token: BootstrapToken,
    signing_key: SigningKey,
}

impl fmt::Debug for ClusterSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterSecrets")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .field("signing_key", &self.signing_key)
            .finish_non_exhaustive()
    }
}

/// The on-disk form of [`ClusterSecrets`] (`secrets.yaml`).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SecretsFile {
    version: String,
    name: String,
    endpoint: String,
    pod_cidr: String,
    service_cidr: String,
    kubernetes_ca: KeyPairPem,
    machine_ca: KeyPairPem,
    service_account_key: String,
    bootstrap_token: String,
    signing_key: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyPairPem {
    cert: String,
    key: String,
}

/// What one node should be: the parts of its machine config that are not cluster-wide.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub role: Role,
    pub hostname: Hostname,
    pub generation: u64,
    pub network: Network,
    pub registry_mirrors: BTreeMap<RegistryHost, Vec<Mirror>>,
    pub state_disk: Option<DevicePath>,
    pub kernel_args: Vec<KernelArg>,
}

impl NodeSpec {
    /// A node of `role` named `hostname`, DHCP on every interface, generation 1.
    pub fn new(role: Role, hostname: Hostname) -> Self {
        Self {
            role,
            hostname,
            generation: 1,
            network: Network::default(),
            registry_mirrors: BTreeMap::new(),
            state_disk: None,
            kernel_args: Vec::new(),
        }
    }
}

/// The machine-API client config (`skiffconfig`): where the nodes' machine API listens and
/// the mutual-TLS credentials `skiff ctl` presents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SkiffConfig {
    pub context: String,
    pub contexts: BTreeMap<String, SkiffContext>,
}

/// One cluster in a [`SkiffConfig`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SkiffContext {
    /// Node addresses (host or host:port) the machine API is reached at.
    pub endpoints: Vec<String>,
    /// The machine-API CA certificate (PEM).
    pub ca: String,
    /// Client certificate (PEM) issued by the machine-API CA.
    pub crt: String,
    /// Its private key (PEM).
    pub key: String,
}

/// Default pod and service networks (kubeadm's).
const POD_CIDR: &str = "10.244.0.0/16";
const SERVICE_CIDR: &str = "10.96.0.0/12";

impl ClusterSecrets {
    /// New secrets for a cluster called `name` whose API is at `endpoint`.
    pub fn generate(name: &str, endpoint: &str) -> Result<Self, GenError> {
        let name: DnsName = name.parse().map_err(value_error("cluster name"))?;
        let endpoint: EndpointUrl = endpoint.parse().map_err(value_error("endpoint"))?;
        let kubernetes_ca = CertificateAuthority::generate("kubernetes")?;
        let machine_ca = CertificateAuthority::generate("skiff-machine-ca")?;
        let rng = SystemRandom::new();
        let sa = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &rng,
        )
        .map_err(|_| GenError::Random)?;
        Ok(Self {
            name,
            endpoint,
            pod_cidr: POD_CIDR.parse().map_err(value_error("pod cidr"))?,
            service_cidr: SERVICE_CIDR.parse().map_err(value_error("service cidr"))?,
            kubernetes_ca,
            machine_ca,
            service_account_key: pem_encode("PRIVATE KEY", sa.as_ref()),
            bootstrap_token: random_token(&rng)?,
            signing_key: SigningKey::generate()?,
        })
    }

    /// The config-signing key's public half: what a boot image trusts.
    pub fn public_key(&self) -> PublicKey {
        self.signing_key.public_key()
    }

    /// The config-signing key itself.
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing_key
    }

    /// The token workers register with.
    pub fn bootstrap_token(&self) -> &BootstrapToken {
        &self.bootstrap_token
    }

    /// The service-account signing key (PEM, PKCS#8).
    pub fn service_account_key_pem(&self) -> &str {
        &self.service_account_key
    }

    /// `secrets.yaml`: every secret, to keep and to feed back into [`Self::from_yaml`].
    pub fn to_yaml(&self) -> Result<String, GenError> {
        let file = SecretsFile {
            version: "v1alpha1".into(),
            name: self.name.to_string(),
            endpoint: self.endpoint.to_string(),
            pod_cidr: self.pod_cidr.to_string(),
            service_cidr: self.service_cidr.to_string(),
            kubernetes_ca: KeyPairPem {
                cert: self.kubernetes_ca.cert_pem().to_owned(),
                key: self.kubernetes_ca.key_pem().to_owned(),
            },
            machine_ca: KeyPairPem {
                cert: self.machine_ca.cert_pem().to_owned(),
                key: self.machine_ca.key_pem().to_owned(),
            },
            service_account_key: self.service_account_key.clone(),
            bootstrap_token: self.bootstrap_token.as_str().to_owned(),
            signing_key: self.signing_key.to_pem(),
        };
        serde_yaml::to_string(&file).map_err(GenError::SecretsYaml)
    }

    /// Reads `secrets.yaml` back.
    pub fn from_yaml(text: &str) -> Result<Self, GenError> {
        let file: SecretsFile = serde_yaml::from_str(text).map_err(GenError::SecretsYaml)?;
        if file.version != "v1alpha1" {
            return Err(GenError::Value {
                what: "secrets version",
                message: format!("`{}` is not v1alpha1", file.version),
            });
        }
        Ok(Self {
            name: file.name.parse().map_err(value_error("cluster name"))?,
            endpoint: file.endpoint.parse().map_err(value_error("endpoint"))?,
            pod_cidr: file.pod_cidr.parse().map_err(value_error("pod cidr"))?,
            service_cidr: file
                .service_cidr
                .parse()
                .map_err(value_error("service cidr"))?,
            kubernetes_ca: CertificateAuthority::from_pem(
                &file.kubernetes_ca.cert,
                &file.kubernetes_ca.key,
            )?,
            machine_ca: CertificateAuthority::from_pem(
                &file.machine_ca.cert,
                &file.machine_ca.key,
            )?,
            service_account_key: file.service_account_key,
            bootstrap_token: file
                .bootstrap_token
                .parse()
                .map_err(value_error("bootstrap token"))?,
            signing_key: SigningKey::from_pem(&file.signing_key)?,
        })
    }

    /// The machine config for one node (validated, unsigned).
    pub fn machine_config(&self, node: &NodeSpec) -> Result<MachineConfig, GenError> {
        let (control_plane, worker) = match node.role {
            Role::ControlPlane => (
                Some(ControlPlaneSecrets {
                    ca_key: parse_value(self.kubernetes_ca.key_pem(), "ca key")?,
                    service_account_key: parse_value(
                        &self.service_account_key,
                        "service account key",
                    )?,
                    machine_ca_key: parse_value(self.machine_ca.key_pem(), "machine ca key")?,
                    bootstrap_token: self.bootstrap_token.clone(),
                }),
                None,
            ),
            Role::Worker => (
                None,
                Some(WorkerSecrets {
                    bootstrap_token: self.bootstrap_token.clone(),
                    machine_api: Some(self.machine_api_certificate(&node.hostname)?),
                }),
            ),
        };
        let config = MachineConfig {
            version: SchemaVersion::V1Alpha1,
            generation: Generation::try_from(node.generation).map_err(value_error("generation"))?,
            role: node.role,
            machine: Machine {
                hostname: node.hostname.clone(),
                network: node.network.clone(),
                registry_mirrors: node.registry_mirrors.clone(),
                state_disk: node.state_disk.clone(),
                kernel_args: node.kernel_args.clone(),
                time_servers: Vec::new(),
            },
            cluster: Cluster {
                name: self.name.clone(),
                endpoint: self.endpoint.clone(),
                pod_cidr: self.pod_cidr,
                service_cidr: self.service_cidr,
                dns_domain: DnsName::cluster_local(),
                ca: parse_value(self.kubernetes_ca.cert_pem(), "ca")?,
                machine_ca: parse_value(self.machine_ca.cert_pem(), "machine ca")?,
                control_plane,
                worker,
            },
        };
        config
            .validate()
            .map_err(|v| GenError::Config(skiff_machine::ConfigError::Invalid(v)))?;
        Ok(config)
    }

    /// The machine-API serving certificate of a worker (control planes issue their own).
    fn machine_api_certificate(&self, hostname: &Hostname) -> Result<ServingCertificate, GenError> {
        let names = [
            skiff_machine::MACHINE_API_SERVER_NAME.to_owned(),
            hostname.to_string(),
        ];
        let issued = self
            .machine_ca
            .issue_server(hostname.as_str(), &names, &[])?;
        Ok(ServingCertificate {
            cert: parse_value(&issued.cert_pem, "machine api certificate")?,
            key: parse_value(&issued.key_pem, "machine api key")?,
        })
    }

    /// Signs a config: the file a node accepts.
    pub fn sign_config(&self, config: &MachineConfig) -> Result<Vec<u8>, GenError> {
        let yaml = config.to_yaml()?;
        Ok(skiff_machine::sign(yaml.as_bytes(), &self.signing_key))
    }

    /// [`Self::machine_config`] then [`Self::sign_config`].
    pub fn signed_config(&self, node: &NodeSpec) -> Result<Vec<u8>, GenError> {
        self.sign_config(&self.machine_config(node)?)
    }

    /// An admin kubeconfig (user `skiff-admin`, group `system:masters`) for `server_url`.
    pub fn admin_kubeconfig(&self, server_url: &str) -> Result<Kubeconfig, GenError> {
        let admin = self
            .kubernetes_ca
            .issue_client("skiff-admin", &["system:masters".to_owned()])?;
        Ok(Kubeconfig::for_client_cert(
            self.name.as_str(),
            server_url,
            self.kubernetes_ca.cert_pem(),
            "skiff-admin",
            &admin,
        ))
    }

    /// The machine-API client config for `endpoints`.
    pub fn skiffconfig(&self, endpoints: &[String]) -> Result<SkiffConfig, GenError> {
        let client = self
            .machine_ca
            .issue_client("skiff-admin", &["os:admin".to_owned()])?;
        let context = SkiffContext {
            endpoints: endpoints.to_vec(),
            ca: self.machine_ca.cert_pem().to_owned(),
            crt: client.cert_pem,
            key: client.key_pem,
        };
        Ok(SkiffConfig {
            context: self.name.to_string(),
            contexts: BTreeMap::from([(self.name.to_string(), context)]),
        })
    }
}

/// A bootstrap token: 6 + 16 characters of `[a-z0-9]`, drawn without modulo bias.
fn random_token(rng: &SystemRandom) -> Result<BootstrapToken, GenError> {
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(23);
    while out.len() < 23 {
        if out.len() == 6 {
            out.push('.');
            continue;
        }
        let mut byte = [0u8; 1];
        rng.fill(&mut byte).map_err(|_| GenError::Random)?;
        // 252 = 7 * 36: bytes above it would favour the first letters.
        if byte[0] < 252 {
            out.push(char::from(ALPHABET[usize::from(byte[0] % 36)]));
        }
    }
    out.parse().map_err(value_error("bootstrap token"))
}

/// PEM with 64-column base64 lines.
fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> ClusterSecrets {
        ClusterSecrets::generate("demo", "https://10.5.0.10:6443").unwrap()
    }

    #[test]
    fn tokens_are_well_formed_and_differ() {
        let rng = SystemRandom::new();
        let a = random_token(&rng).unwrap();
        let b = random_token(&rng).unwrap();
        assert_eq!(a.as_str().len(), 23);
        assert_eq!(a.as_str().as_bytes()[6], b'.');
        assert_ne!(a.as_str(), b.as_str());
    }

    #[test]
    fn signed_configs_verify_with_the_cluster_key_only() {
        let s = secrets();
        let cp = s
            .signed_config(&NodeSpec::new(Role::ControlPlane, "cp-1".parse().unwrap()))
            .unwrap();
        let v = skiff_machine::verify(&cp, &[s.public_key()]).unwrap();
        assert_eq!(v.config.role, Role::ControlPlane);
        assert!(v.config.cluster.control_plane.is_some());
        assert!(v.config.cluster.worker.is_none());
        let other = secrets();
        let err = skiff_machine::verify(&cp, &[other.public_key()]).unwrap_err();
        assert!(err.to_string().contains("unknown key"), "{err}");

        let w = s
            .signed_config(&NodeSpec::new(Role::Worker, "w-1".parse().unwrap()))
            .unwrap();
        let v = skiff_machine::verify(&w, &[s.public_key()]).unwrap();
        let worker = v.config.cluster.worker.unwrap();
        assert_eq!(
            worker.bootstrap_token.as_str(),
            s.bootstrap_token().as_str()
        );
        // The worker's machine-API certificate names the machine API and the node, and its
        // key is its own.
        let api = worker.machine_api.unwrap();
        let der = skiff_pki::CertifiedKey {
            cert_pem: api.cert.as_str().to_owned(),
            key_pem: api.key.as_str().to_owned(),
        }
        .cert_der()
        .unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let sans = cert.subject_alternative_name().unwrap().unwrap().value;
        let names: Vec<String> = sans
            .general_names
            .iter()
            .map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => (*d).to_owned(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(names, ["skiff-machine-api", "w-1"]);
        assert!(v.config.cluster.control_plane.is_none());
    }

    #[test]
    fn secrets_round_trip_through_yaml() {
        let s = secrets();
        let yaml = s.to_yaml().unwrap();
        let back = ClusterSecrets::from_yaml(&yaml).unwrap();
        assert_eq!(back.public_key(), s.public_key());
        assert_eq!(back.kubernetes_ca.cert_pem(), s.kubernetes_ca.cert_pem());
        assert_eq!(
            back.bootstrap_token().as_str(),
            s.bootstrap_token().as_str()
        );
        assert_eq!(back.to_yaml().unwrap(), yaml);
        let err = ClusterSecrets::from_yaml("version: v1alpha1\nbogus: 1\n").unwrap_err();
        assert!(matches!(err, GenError::SecretsYaml(_)));
    }

    #[test]
    fn admin_kubeconfig_is_signed_by_the_cluster_ca() {
        let s = secrets();
        let kc = s.admin_kubeconfig("https://127.0.0.1:7443").unwrap();
        assert_eq!(kc.server_url(), Some("https://127.0.0.1:7443"));
        let yaml = kc.to_yaml();
        assert!(yaml.contains("skiff-admin@demo"), "{yaml}");
    }

    #[test]
    fn debug_hides_keys() {
        let s = secrets();
        let text = format!("{s:?}");
        assert!(!text.contains("PRIVATE KEY"));
        assert!(text.contains("demo"));
    }

    #[test]
    fn bad_names_are_refused() {
        let err = ClusterSecrets::generate("Demo", "https://x:6443").unwrap_err();
        assert!(err.to_string().contains("cluster name"), "{err}");
        let err = ClusterSecrets::generate("demo", "http://x:6443").unwrap_err();
        assert!(err.to_string().contains("https"), "{err}");
    }
}
