//! Ed25519 keys and signatures over exact bytes. A signed file is the line
//! `# skiff-signature: ed25519 <key-id> <base64 signature>` followed by the signed bytes,
//! untouched; a detached signature (for image manifests) is the same line without the
//! `# skiff-signature: ` prefix. The key id is the first 16 hex digits of the SHA-256 of the
//! raw 32-byte public key, so a verifier can say which key signed a file it does not trust.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};

use crate::pem;

/// The prefix of the first line of a signed file.
pub const SIGNATURE_PREFIX: &str = "# skiff-signature: ";
const ALGORITHM: &str = "ed25519";
const SIGNATURE_LEN: usize = 64;
const PUBLIC_KEY_LEN: usize = 32;
/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the raw key follows it.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// A key could not be created, read or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The system random number generator failed.
    #[error("could not generate a key: the system random number generator failed")]
    Random,
    /// The bytes are not an Ed25519 PKCS#8 private key.
    #[error("not an Ed25519 private key in PKCS#8 form ({0})")]
    InvalidPrivateKey(String),
    /// The bytes or text are not an Ed25519 public key.
    #[error("not an Ed25519 public key: {0}")]
    InvalidPublicKey(String),
}

/// A signature was missing, unreadable, from an untrusted key or did not match.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The file has no signature line.
    #[error(
        "not signed: the first line must be `# skiff-signature: ed25519 <key-id> <signature>`; \
         sign the file with the cluster's signing key"
    )]
    Unsigned,
    /// The signature line is there but cannot be read.
    #[error("malformed signature line: {0}; expected `ed25519 <key-id> <base64 signature>`")]
    Malformed(String),
    /// Signed by a key this verifier does not trust.
    #[error(
        "signed by unknown key {key_id} ({}); sign it with the cluster's signing key",
        trust_summary(trusted)
    )]
    UnknownKey {
        /// The key id named by the signature.
        key_id: KeyId,
        /// The ids of the keys that are trusted.
        trusted: Vec<KeyId>,
    },
    /// Signed by a trusted key, but the bytes changed since.
    #[error(
        "bad signature from key {key_id}: the content was changed after it was signed; \
         sign it again"
    )]
    BadSignature {
        /// The key that supposedly signed it.
        key_id: KeyId,
    },
}

fn trust_summary(trusted: &[KeyId]) -> String {
    if trusted.is_empty() {
        return "no key is trusted here".to_owned();
    }
    let ids: Vec<String> = trusted.iter().map(KeyId::to_string).collect();
    format!("trusted: {}", ids.join(", "))
}

/// The short id of a public key: the first 8 bytes of its SHA-256, shown as 16 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId([u8; 8]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl FromStr for KeyId {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("key id `{text}` is not 16 lowercase hex digits");
        if text.len() != 16 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad());
        }
        let mut out = [0u8; 8];
        for (slot, pair) in out.iter_mut().zip(text.as_bytes().chunks(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| bad())?;
            *slot = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
        }
        Ok(Self(out))
    }
}

/// An Ed25519 public key: what a node trusts.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; PUBLIC_KEY_LEN]);

impl PublicKey {
    /// Reads a raw 32-byte key or a DER SubjectPublicKeyInfo (44 bytes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let raw = bytes.strip_prefix(&SPKI_PREFIX[..]).unwrap_or(bytes);
        let raw: [u8; PUBLIC_KEY_LEN] = raw.try_into().map_err(|_| {
            KeyError::InvalidPublicKey(format!(
                "expected 32 raw bytes or a 44-byte SubjectPublicKeyInfo, got {} bytes",
                bytes.len()
            ))
        })?;
        Ok(Self(raw))
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.0
    }

    /// Reads a key file: a PEM `PUBLIC KEY` block (as `openssl pkey -pubout` writes) or the
    /// base64 of the raw key or of its SubjectPublicKeyInfo.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        if text.starts_with("-----BEGIN") {
            let blocks = pem::decode(text).map_err(KeyError::InvalidPublicKey)?;
            return match blocks.as_slice() {
                [one] if one.label == "PUBLIC KEY" => Self::from_bytes(&one.der),
                _ => Err(KeyError::InvalidPublicKey(
                    "expected exactly one PEM `PUBLIC KEY` block".into(),
                )),
            };
        }
        let bytes = STANDARD
            .decode(text)
            .map_err(|e| KeyError::InvalidPublicKey(format!("not PEM and not base64 ({e})")))?;
        Self::from_bytes(&bytes)
    }

    /// The PEM `PUBLIC KEY` form (SubjectPublicKeyInfo), readable by openssl.
    pub fn to_pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.0);
        pem::encode("PUBLIC KEY", &der)
    }

    /// The base64 of the raw 32 bytes.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// This key's short id.
    pub fn key_id(&self) -> KeyId {
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.0);
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest.as_ref()[..8]);
        KeyId(id)
    }

    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, signature)
            .is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.key_id())
    }
}

/// An Ed25519 private key: the cluster's signing key. Its `Debug` form shows only the key id.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    pkcs8: Vec<u8>,
}

impl SigningKey {
    /// Generates a new key from the system's random number generator.
    pub fn generate() -> Result<Self, KeyError> {
        let document =
            Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| KeyError::Random)?;
        Self::from_pkcs8(document.as_ref())
    }

    /// Reads a PKCS#8 DER key, v1 (as `openssl genpkey -algorithm ed25519` writes) or v2 (as
    /// `generate` writes).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|e| KeyError::InvalidPrivateKey(e.to_string()))?;
        Ok(Self {
            pair,
            pkcs8: der.to_vec(),
        })
    }

    /// The PKCS#8 DER bytes this key was created from.
    pub fn to_pkcs8(&self) -> Vec<u8> {
        self.pkcs8.clone()
    }

    /// Reads a PEM `PRIVATE KEY` block holding PKCS#8.
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        let blocks = pem::decode(text).map_err(KeyError::InvalidPrivateKey)?;
        match blocks.as_slice() {
            [one] if one.label == "PRIVATE KEY" => Self::from_pkcs8(&one.der),
            _ => Err(KeyError::InvalidPrivateKey(
                "expected exactly one PEM `PRIVATE KEY` block".into(),
            )),
        }
    }

    /// The PEM `PRIVATE KEY` form, readable by openssl.
    pub fn to_pem(&self) -> String {
        pem::encode("PRIVATE KEY", &self.pkcs8)
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        let mut raw = [0u8; PUBLIC_KEY_LEN];
        raw.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(raw)
    }

    fn signature_line(&self, payload: &[u8]) -> String {
        let signature = self.pair.sign(payload);
        format!(
            "{ALGORITHM} {} {}",
            self.public_key().key_id(),
            STANDARD.encode(signature.as_ref())
        )
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.public_key().key_id())
    }
}

/// Signs `payload` and returns the signed file: the signature line, then `payload` unchanged.
pub fn sign(payload: &[u8], key: &SigningKey) -> Vec<u8> {
    let line = key.signature_line(payload);
    let mut out = Vec::with_capacity(SIGNATURE_PREFIX.len() + line.len() + 1 + payload.len());
    out.extend_from_slice(SIGNATURE_PREFIX.as_bytes());
    out.extend_from_slice(line.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(payload);
    out
}

/// Signs `payload` and returns a detached signature file: `ed25519 <key-id> <base64>\n`.
pub fn sign_detached(payload: &[u8], key: &SigningKey) -> String {
    format!("{}\n", key.signature_line(payload))
}

/// Checks a signed file against the trusted keys and returns the key that signed it and the
/// signed payload (the bytes after the signature line).
pub fn verify_signed<'a>(
    file: &'a [u8],
    trusted: &[PublicKey],
) -> Result<(KeyId, &'a [u8]), SignatureError> {
    let Some(rest) = file.strip_prefix(SIGNATURE_PREFIX.as_bytes()) else {
        let bare = SIGNATURE_PREFIX.trim_end().as_bytes();
        return Err(if file.starts_with(bare) {
            SignatureError::Malformed("expected a space after `# skiff-signature:`".into())
        } else {
            SignatureError::Unsigned
        });
    };
    let end = rest
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| SignatureError::Malformed("the signature line has no end".into()))?;
    let (line, payload) = (&rest[..end], &rest[end + 1..]);
    let key_id = verify_line(line, payload, trusted)?;
    Ok((key_id, payload))
}

/// Checks a detached signature file (as written by [`sign_detached`]) over `payload`.
pub fn verify_detached(
    payload: &[u8],
    signature_file: &[u8],
    trusted: &[PublicKey],
) -> Result<KeyId, SignatureError> {
    let line = signature_file.strip_suffix(b"\n").unwrap_or(signature_file);
    if line.iter().all(u8::is_ascii_whitespace) {
        return Err(SignatureError::Unsigned);
    }
    verify_line(line, payload, trusted)
}

fn verify_line(
    line: &[u8],
    payload: &[u8],
    trusted: &[PublicKey],
) -> Result<KeyId, SignatureError> {
    let malformed = |why: &str| SignatureError::Malformed(why.to_owned());
    let line = std::str::from_utf8(line).map_err(|_| malformed("it is not text"))?;
    let fields: Vec<&str> = line.split_ascii_whitespace().collect();
    let [algorithm, key_id, signature] = fields.as_slice() else {
        return Err(SignatureError::Malformed(format!(
            "found {} fields instead of 3",
            fields.len()
        )));
    };
    if *algorithm != ALGORITHM {
        return Err(SignatureError::Malformed(format!(
            "unsupported algorithm `{algorithm}`"
        )));
    }
    let key_id: KeyId = key_id
        .parse()
        .map_err(|e: String| SignatureError::Malformed(e))?;
    let signature = STANDARD
        .decode(signature)
        .map_err(|e| SignatureError::Malformed(format!("the signature is not base64 ({e})")))?;
    if signature.len() != SIGNATURE_LEN {
        return Err(SignatureError::Malformed(format!(
            "the signature is {} bytes instead of {SIGNATURE_LEN}",
            signature.len()
        )));
    }
    let mut candidates = trusted.iter().filter(|k| k.key_id() == key_id).peekable();
    if candidates.peek().is_none() {
        return Err(SignatureError::UnknownKey {
            key_id,
            trusted: trusted.iter().map(PublicKey::key_id).collect(),
        });
    }
    if candidates.any(|k| k.verifies(payload, &signature)) {
        Ok(key_id)
    } else {
        Err(SignatureError::BadSignature { key_id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Generated with `openssl genpkey -algorithm ed25519` (PKCS#8 v1, no public key inside).
    const OPENSSL_KEY: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIPbOkX0LGWsi4vzhAH/GdKzMkL+/qQtUSBzto2HBS8QK
-----END PRIVATE KEY-----
";
    /// `openssl pkey -pubout` of the key above.
    const OPENSSL_PUB: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAAVtXaY1x0WPsR/4Lu8KKVT6rqNONgApB2ufGOqhF/HE=
-----END PUBLIC KEY-----
";
    /// `openssl pkeyutl -sign -rawin` of "hello\n" with the key above, base64.
    const OPENSSL_SIG: &str =
        "HyyAftFyNLcbKejVka2pUZO+U3uEH9QfOLClTgYdGJCAqYUAjOVo7re2VTukx5M9ZvrlhxkEXzB3gaNcEOtJAQ==";

    #[test]
    fn keys_interoperate_with_openssl() {
        let key = SigningKey::from_pem(OPENSSL_KEY).unwrap();
        let public = PublicKey::parse(OPENSSL_PUB).unwrap();
        assert_eq!(key.public_key(), public);
        assert_eq!(public.to_pem(), OPENSSL_PUB);
        assert_eq!(key.to_pem(), OPENSSL_KEY);
        // Ed25519 is deterministic, so our signature must equal openssl's.
        let line = sign_detached(b"hello\n", &key);
        assert_eq!(line, format!("ed25519 {} {OPENSSL_SIG}\n", public.key_id()));
        assert_eq!(
            verify_detached(b"hello\n", line.as_bytes(), &[public]),
            Ok(public.key_id())
        );
    }

    #[test]
    fn generated_keys_round_trip_through_every_encoding() {
        let key = SigningKey::generate().unwrap();
        let again = SigningKey::from_pkcs8(&key.to_pkcs8()).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        let from_pem = SigningKey::from_pem(&key.to_pem()).unwrap();
        assert_eq!(from_pem.public_key(), key.public_key());
        let public = key.public_key();
        assert_eq!(PublicKey::parse(&public.to_base64()).unwrap(), public);
        assert_eq!(PublicKey::parse(&public.to_pem()).unwrap(), public);
        assert_eq!(PublicKey::from_bytes(public.as_bytes()).unwrap(), public);
        assert!(PublicKey::from_bytes(&[0; 31]).is_err());
        assert!(SigningKey::from_pkcs8(b"not a key").is_err());
        assert!(!format!("{key:?}").contains(&key.to_pem()));
    }

    #[test]
    fn key_id_is_sha256_prefix_in_hex() {
        let public = PublicKey::parse(OPENSSL_PUB).unwrap();
        let digest = ring::digest::digest(&ring::digest::SHA256, public.as_bytes());
        let expected: String = digest.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(public.key_id().to_string(), expected);
        assert_eq!(expected.parse::<KeyId>().unwrap(), public.key_id());
        assert!("ABCDEF0123456789".parse::<KeyId>().is_err());
    }

    #[test]
    fn signed_files_keep_the_payload_exactly() {
        let key = SigningKey::generate().unwrap();
        let payload = b"a: 1\n# comment kept\r\nb: [2]";
        let file = sign(payload, &key);
        assert!(file.starts_with(SIGNATURE_PREFIX.as_bytes()));
        let (id, body) = verify_signed(&file, &[key.public_key()]).unwrap();
        assert_eq!(id, key.public_key().key_id());
        assert_eq!(body, payload);
    }

    #[test]
    fn detached_signatures_refuse_damage() {
        let key = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        let line = sign_detached(b"payload", &key);
        let trusted = [key.public_key()];
        assert!(matches!(
            verify_detached(b"payloaD", line.as_bytes(), &trusted),
            Err(SignatureError::BadSignature { .. })
        ));
        assert!(matches!(
            verify_detached(b"payload", line.as_bytes(), &[other.public_key()]),
            Err(SignatureError::UnknownKey { .. })
        ));
        assert_eq!(
            verify_detached(b"payload", b"", &trusted),
            Err(SignatureError::Unsigned)
        );
        let wrong_algorithm = line.replacen("ed25519", "rsa", 1);
        let err = verify_detached(b"payload", wrong_algorithm.as_bytes(), &trusted).unwrap_err();
        assert!(
            err.to_string().contains("unsupported algorithm `rsa`"),
            "{err}"
        );
    }
}
