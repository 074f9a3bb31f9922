//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while creating, loading or using certificates.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// rcgen refused to build or sign something.
    #[error("generating {what}")]
    Generate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    /// The system's random source failed.
    #[error("generating random bytes")]
    Random,
    /// A PEM document held nothing usable.
    #[error("no {what} found in pem data")]
    PemMissing { what: &'static str },
    /// A PEM document was malformed.
    #[error("invalid pem {what}")]
    PemInvalid {
        what: &'static str,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// A private key could not be loaded.
    #[error("loading private key")]
    Key(#[source] rcgen::Error),
    /// A DER certificate could not be parsed.
    #[error("parsing certificate")]
    Certificate(#[source] x509_parser::nom::Err<x509_parser::error::X509Error>),
    /// Certificate DER did not have the expected structure.
    #[error("malformed certificate der: {0}")]
    Der(&'static str),
    /// A certificate extension could not be decoded.
    #[error("reading certificate extension")]
    Extension(#[source] x509_parser::error::X509Error),
    /// The certificate given as a CA is not one.
    #[error("certificate is not a certificate authority")]
    NotCa,
    /// The private key belongs to another certificate.
    #[error("private key does not match certificate")]
    KeyMismatch,
    /// The subject has no common name, so it names no user.
    #[error("certificate subject has no common name")]
    NoCommonName,
    /// A subject attribute is not a UTF-8 string.
    #[error("certificate subject attribute is not a string")]
    BadSubject,
    /// A certificate failed verification against its CA.
    #[error("verifying certificate")]
    Verify(#[source] rustls::Error),
    /// A name given for a serving certificate is neither a DNS name nor an IP address.
    #[error("invalid server name {0:?}")]
    ServerName(String),
    /// rustls rejected the configuration.
    #[error("building tls configuration")]
    Tls(#[source] rustls::Error),
    /// rustls could not build a certificate verifier.
    #[error("building certificate verifier")]
    Verifier(#[source] rustls::server::VerifierBuilderError),
    /// A file could not be read.
    #[error("reading {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("writing {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Half of a certificate/key pair exists on disk; refusing to guess.
    #[error("{} exists but {} is missing", present.display(), missing.display())]
    Incomplete { present: PathBuf, missing: PathBuf },
    /// A file holds something that cannot be used.
    #[error("loading {}", path.display())]
    Load {
        path: PathBuf,
        #[source]
        source: Box<PkiError>,
    },
    /// A kubeconfig document is not valid YAML of the expected shape.
    #[error("parsing kubeconfig")]
    Kubeconfig(#[source] serde_yaml::Error),
}
