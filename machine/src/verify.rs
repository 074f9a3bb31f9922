//! Turning a signed config file into a trusted, validated `MachineConfig`: size limit, then
//! the signature over the exact bytes, and only then YAML parsing and validation. Also the
//! replay rule on generations.

use crate::config::MachineConfig;
use crate::signing::{KeyId, PublicKey, SignatureError, verify_signed};
use crate::validate::Violations;

/// The largest config file accepted. Real configs are a few kilobytes.
pub const MAX_CONFIG_BYTES: usize = 1024 * 1024;

/// Why a machine config was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file is larger than [`MAX_CONFIG_BYTES`].
    #[error("config file is {size} bytes; at most {limit} are accepted")]
    TooLarge {
        /// Size of the file.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The signature is missing, unreadable, untrusted or does not match.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// The signed bytes are not UTF-8 text.
    #[error("config is not UTF-8 text (invalid byte at offset {offset})")]
    NotUtf8 {
        /// Offset of the first invalid byte in the file.
        offset: usize,
    },
    /// The YAML could not be read into the schema.
    #[error("config line {line}, column {column}: {message}")]
    Yaml {
        /// Line in the file (1-based), counting the signature line.
        line: usize,
        /// Column (1-based).
        column: usize,
        /// What the parser says, with the field path where known.
        message: String,
    },
    /// A field name the schema does not know (often a typo).
    #[error(
        "config line {line}, column {column}: unknown field `{field}` in {path}; \
         check its spelling against docs/machine-config.md"
    )]
    UnknownField {
        /// The unknown field name.
        field: String,
        /// Path of the object that contains it (`machine.network`, or `the top level`).
        path: String,
        /// Line in the file (1-based).
        line: usize,
        /// Column (1-based).
        column: usize,
    },
    /// The config parsed but breaks cross-field rules.
    #[error("invalid machine config: {0}")]
    Invalid(Violations),
    /// The config is older than the one the node already applied.
    #[error(
        "config generation {generation} is older than generation {last_applied} already \
         applied here; refusing to roll back (sign a config with generation {last_applied} or \
         higher)"
    )]
    StaleGeneration {
        /// Generation of the refused config.
        generation: u64,
        /// Generation the node last applied.
        last_applied: u64,
    },
}

/// A config whose signature, schema and rules all checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedConfig {
    /// The config itself.
    pub config: MachineConfig,
    /// The key that signed it.
    pub key_id: KeyId,
    /// SHA-256 of the signed payload, hex: names this exact config in logs and the machine API.
    pub sha256: String,
}

/// Verifies a signed config file against the trusted keys, then parses and validates it.
/// Nothing of the YAML is read before the signature has been checked.
pub fn verify(file: &[u8], trusted: &[PublicKey]) -> Result<VerifiedConfig, ConfigError> {
    if file.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge {
            size: file.len(),
            limit: MAX_CONFIG_BYTES,
        });
    }
    let (key_id, payload) = verify_signed(file, trusted)?;
    // The signature line is a YAML comment, so parsing the whole file reads exactly the signed
    // payload while line numbers in errors match what the user sees in the file.
    let text = std::str::from_utf8(file).map_err(|e| ConfigError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    let config = MachineConfig::from_yaml(text)?;
    let digest = ring::digest::digest(&ring::digest::SHA256, payload);
    Ok(VerifiedConfig {
        config,
        key_id,
        sha256: digest.as_ref().iter().map(|b| format!("{b:02x}")).collect(),
    })
}

/// Refuses a config whose generation is lower than the last one applied on this node. The
/// same generation is accepted: it is the same config applied again (after a reboot).
pub fn check_generation(last_applied: Option<u64>, cfg: &MachineConfig) -> Result<(), ConfigError> {
    let generation = cfg.generation.get();
    match last_applied {
        Some(last_applied) if generation < last_applied => Err(ConfigError::StaleGeneration {
            generation,
            last_applied,
        }),
        _ => Ok(()),
    }
}

impl MachineConfig {
    /// Parses and validates config YAML (unsigned: for tools that produce configs; nodes use
    /// [`verify`]).
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let config: Self = serde_yaml::from_str(text).map_err(yaml_error)?;
        config.validate().map_err(ConfigError::Invalid)?;
        Ok(config)
    }

    /// Writes the config as YAML (the payload to sign).
    pub fn to_yaml(&self) -> Result<String, ConfigError> {
        serde_yaml::to_string(self).map_err(yaml_error)
    }
}

fn yaml_error(error: serde_yaml::Error) -> ConfigError {
    let (line, column) = error.location().map_or((0, 0), |l| (l.line(), l.column()));
    let mut message = error.to_string();
    let suffix = format!(" at line {line} column {column}");
    if let Some(stripped) = message.strip_suffix(&suffix) {
        message = stripped.to_owned();
    }
    if let Some((path, field)) = unknown_field(&message) {
        return ConfigError::UnknownField {
            field,
            path,
            line,
            column,
        };
    }
    ConfigError::Yaml {
        line,
        column,
        message,
    }
}

/// Picks the field name and its parent's path out of serde's "unknown field" message, which
/// serde_yaml prefixes with the path (`machine.network: unknown field `x`, expected …`).
fn unknown_field(message: &str) -> Option<(String, String)> {
    const MARKER: &str = "unknown field `";
    let start = message.find(MARKER)?;
    let rest = &message[start + MARKER.len()..];
    let field = &rest[..rest.find('`')?];
    let path = message[..start].trim_end_matches(": ").trim();
    let path = if path.is_empty() {
        "the top level"
    } else {
        path
    };
    Some((path.to_owned(), field.to_owned()))
}
