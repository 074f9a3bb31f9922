//! skiff's machine config: the versioned, documented schema that decides what a node becomes,
//! its Ed25519 signature over the exact file bytes, and the checks PID 1 runs before it starts
//! anything (signature first, then schema, then cross-field rules, then replay protection).
//!
//! ```text
//! signed file ──► verify(file, trusted keys) ──► VerifiedConfig ──► check_generation
//!                  signature → YAML → validate()
//! ```

mod config;
mod pem;
mod signing;
mod types;
mod validate;
mod verify;

pub use config::{
    Cluster, ControlPlaneSecrets, Interface, MACHINE_API_SERVER_NAME, Machine, MachineConfig,
    Mirror, Network, Role, Route, SchemaVersion, ServingCertificate, WorkerSecrets,
};
pub use signing::{
    KeyError, KeyId, PublicKey, SIGNATURE_PREFIX, SignatureError, SigningKey, sign, sign_detached,
    verify_detached, verify_signed,
};
pub use types::{
    BootstrapToken, CertificatePem, Cidr, DevicePath, DnsName, EndpointUrl, Generation, Hostname,
    InterfaceName, InvalidValue, KernelArg, MacAddress, MirrorUrl, PrivateKeyPem, RegistryHost,
    ServerAddress,
};
pub use validate::{Violation, Violations};
pub use verify::{ConfigError, MAX_CONFIG_BYTES, VerifiedConfig, check_generation, verify};
