//! The machine config schema, version `v1alpha1`: what one node is (its role), how it reaches
//! the network, and which cluster it belongs to with the credentials its role needs. The field
//! documentation here is the user-facing reference; `docs/machine-config.md` shows an example.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::types::{
    BootstrapToken, CertificatePem, Cidr, DevicePath, DnsName, EndpointUrl, Generation, Hostname,
    InterfaceName, KernelArg, MacAddress, MirrorUrl, PrivateKeyPem, RegistryHost, ServerAddress,
};

/// A complete machine config: one YAML document, signed as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MachineConfig {
    /// Schema version of this document. Only `v1alpha1` exists.
    pub version: SchemaVersion,
    /// Increases by at least one every time the config for this node changes. A node refuses a
    /// config whose generation is lower than the one it last applied, so an old signed config
    /// cannot be replayed; re-applying the same generation is allowed. Starts at 1.
    pub generation: Generation,
    /// What the node becomes: `controlplane` (API server, store, scheduler, controllers) or
    /// `worker` (node agent, container runtime, pod network, service proxy, cluster DNS).
    pub role: Role,
    /// Settings of this machine: hostname, network, registries, disk, kernel, time.
    pub machine: Machine,
    /// The cluster this node joins and the credentials its role needs.
    pub cluster: Cluster,
}

/// The schema version tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SchemaVersion {
    /// The first (current) schema.
    #[serde(rename = "v1alpha1")]
    V1Alpha1,
}

/// The role a node plays in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs the API server, the store, the scheduler and the controllers.
    #[serde(rename = "controlplane")]
    ControlPlane,
    /// Runs the node agent and the pods scheduled onto it.
    Worker,
}

/// Settings that belong to this machine rather than to the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Machine {
    /// The node's hostname, also its Kubernetes node name: a lowercase DNS name.
    pub hostname: Hostname,
    /// Network interfaces, routes and DNS servers. Omitted: DHCP on every interface.
    #[serde(default, skip_serializing_if = "Network::is_default")]
    pub network: Network,
    /// Registry mirrors by registry host, tried in order before the registry itself, like
    /// containerd's mirrors: `docker.io: [{url: "http://10.0.2.2:5000", insecure: true}]`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub registry_mirrors: BTreeMap<RegistryHost, Vec<Mirror>>,
    /// The disk that holds the node's persistent state (`/dev/vda`). Omitted: state lives in
    /// memory and is lost at reboot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_disk: Option<DevicePath>,
    /// Extra kernel command-line arguments applied at the next boot (one word each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kernel_args: Vec<KernelArg>,
    /// NTP servers (IP addresses or DNS names) used to set the clock.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub time_servers: Vec<ServerAddress>,
}

/// The node's network configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Network {
    /// The interfaces to configure. Empty: DHCP on every physical interface.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    /// DNS servers for the node itself (not for pods, which use cluster DNS). Servers learned
    /// by DHCP are added after these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<IpAddr>,
}

impl Network {
    fn is_default(&self) -> bool {
        self == &Self::default()
    }
}

/// One network interface, selected by exactly one of `name` or `mac`, configured either by
/// DHCP or with static addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Interface {
    /// Select the interface by kernel name (`eth0`, `enp0s3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<InterfaceName>,
    /// Select the interface by MAC address (`52:54:00:12:34:56`): stable across kernels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddress>,
    /// Configure the interface by DHCP. When false, `addresses` must list its addresses.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dhcp: bool,
    /// Static addresses with their prefix length (`10.0.2.15/24`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<Cidr>,
    /// Static routes through this interface.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
}

/// A static route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Route {
    /// Destination network (`0.0.0.0/0` for the default route); host bits must be zero.
    pub to: Cidr,
    /// Gateway address, in the same address family as `to`.
    pub via: IpAddr,
}

/// One mirror of a registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Mirror {
    /// Base URL of the mirror (`https://mirror.example.com`, `http://10.0.2.2:5000`).
    pub url: MirrorUrl,
    /// Allow this mirror without verified TLS: required for an `http://` URL, and for an
    /// `https://` one it skips certificate verification. Use only on networks you control.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
}

/// The cluster this node belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Cluster {
    /// The cluster's name, as used in kubeconfig files (a lowercase DNS name).
    pub name: DnsName,
    /// The Kubernetes API endpoint every node uses: `https://host[:port]`, no path.
    pub endpoint: EndpointUrl,
    /// The network pods get their addresses from; each node is given a slice of it.
    /// IPv4 prefixes must be /24 or larger.
    pub pod_cidr: Cidr,
    /// The network Service cluster IPs come from; must not overlap `podCidr`. IPv4 prefixes
    /// must be between /12 and /28 (inclusive); IPv6 /108 to /124.
    pub service_cidr: Cidr,
    /// The cluster DNS domain that service names end in.
    #[serde(default = "default_dns_domain")]
    pub dns_domain: DnsName,
    /// The Kubernetes cluster CA certificate (PEM) that API clients and nodes trust.
    pub ca: CertificatePem,
    /// The CA certificate (PEM) of the machine API (`skiff ctl`, mutual TLS).
    pub machine_ca: CertificatePem,
    /// Secrets a control plane needs. Only on `role: controlplane`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane: Option<ControlPlaneSecrets>,
    /// Secrets a worker needs. Only on `role: worker`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerSecrets>,
}

fn default_dns_domain() -> DnsName {
    DnsName::cluster_local()
}

/// Credentials only a control plane holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ControlPlaneSecrets {
    /// Private key of the Kubernetes cluster CA (`cluster.ca`), used to issue certificates.
    pub ca_key: PrivateKeyPem,
    /// Private key that signs service account tokens.
    pub service_account_key: PrivateKeyPem,
    /// Private key of the machine API CA (`cluster.machineCa`).
    pub machine_ca_key: PrivateKeyPem,
    /// The bootstrap token workers join with: the API server accepts it as a bearer token
    /// (user `system:bootstrap:<id>`, groups `system:bootstrappers`,
    /// `system:bootstrappers:worker`, `system:nodes`).
    pub bootstrap_token: BootstrapToken,
}

/// Credentials a worker uses to join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkerSecrets {
    /// Bootstrap token (`abcdef.0123456789abcdef`) the node agent uses to register and obtain
    /// its own client certificate.
    pub bootstrap_token: BootstrapToken,
    /// The certificate the worker's machine API serves, issued by `cluster.machineCa` for the
    /// name [`MACHINE_API_SERVER_NAME`]. Omitted: the worker does not serve the machine API
    /// (a control plane issues its own from `machineCaKey`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_api: Option<ServingCertificate>,
}

/// A serving certificate with its private key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServingCertificate {
    /// The certificate (PEM).
    pub cert: CertificatePem,
    /// Its private key (PEM).
    pub key: PrivateKeyPem,
}

/// The DNS name every node's machine-API certificate carries and `skiff ctl` verifies: nodes
/// are reached by address, often learned by DHCP, so the certificate names the cluster's
/// machine API rather than one node.
pub const MACHINE_API_SERVER_NAME: &str = "skiff-machine-api";
