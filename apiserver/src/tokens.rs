//! Service-account tokens: the ES256 signing key (`DATA/pki/sa.key`, made on first start like
//! kube-apiserver's `--service-account-signing-key-file`), JWT signing and verification, the
//! claims kube-apiserver puts in bound tokens, and the OIDC discovery documents
//! (`/.well-known/openid-configuration`, `/openid/v1/jwks`).

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The issuer kubeadm clusters use; also the default (and only accepted) audience.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: String,
        #[source]
        source: skiff_pki::PkiError,
    },
    #[error("service-account key is not a PEM PKCS#8 P-256 private key")]
    Format,
    #[error("cannot generate a service-account key")]
    Generate,
}

/// Why a token was not accepted. The client only ever sees 401; this is for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("not a JWT")]
    Malformed,
    #[error("unsupported signing algorithm")]
    Algorithm,
    #[error("bad signature")]
    Signature,
    #[error("wrong issuer")]
    Issuer,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token audiences do not include the API server")]
    Audience,
    #[error("not a service-account token")]
    Subject,
}

/// One object a token is bound to (`kubernetes.io.pod`, `.serviceaccount`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ref {
    pub name: String,
    pub uid: String,
}

/// The private `kubernetes.io` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeClaim {
    pub namespace: String,
    pub serviceaccount: Ref,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Ref>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Ref>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<Ref>,
}

/// The claims of a bound service-account token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub iss: String,
    #[serde(default)]
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kube: KubeClaim,
    pub nbf: i64,
    pub sub: String,
}

impl Claims {
    /// The user a valid token authenticates as, with the extras kube-apiserver adds.
    pub fn user(&self) -> crate::auth::User {
        let ns = &self.kube.namespace;
        let mut user = crate::auth::User::new(
            self.sub.clone(),
            vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
            ],
        );
        user.uid = self.kube.serviceaccount.uid.clone();
        let mut extra = BTreeMap::new();
        if !self.jti.is_empty() {
            extra.insert(
                "authentication.kubernetes.io/credential-id".to_string(),
                vec![format!("JTI={}", self.jti)],
            );
        }
        if let Some(node) = &self.kube.node {
            extra.insert(
                "authentication.kubernetes.io/node-name".into(),
                vec![node.name.clone()],
            );
            extra.insert(
                "authentication.kubernetes.io/node-uid".into(),
                vec![node.uid.clone()],
            );
        }
        if let Some(pod) = &self.kube.pod {
            extra.insert(
                "authentication.kubernetes.io/pod-name".into(),
                vec![pod.name.clone()],
            );
            extra.insert(
                "authentication.kubernetes.io/pod-uid".into(),
                vec![pod.uid.clone()],
            );
        }
        user.extra = extra;
        user
    }
}

/// The user name of a service account.
pub fn service_account_user(ns: &str, name: &str) -> String {
    format!("system:serviceaccount:{ns}:{name}")
}

/// The service-account signing key and the issuer it signs for.
pub struct ServiceAccountKey {
    pair: EcdsaKeyPair,
    kid: String,
    issuer: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl ServiceAccountKey {
    /// Read the key at `path`; write `seed` (PEM) there first if given, or a new key if the
    /// file does not exist.
    pub fn load_or_create(path: &Path, seed: Option<&str>) -> Result<Self, KeyError> {
        let write = |pem: &str| {
            skiff_pki::write_private(path, pem.as_bytes()).map_err(|source| KeyError::Write {
                path: path.display().to_string(),
                source,
            })
        };
        if let Some(seed) = seed {
            let key = Self::from_pem(seed)?;
            if std::fs::read_to_string(path).ok().as_deref() != Some(seed) {
                write(seed)?;
            }
            return Ok(key);
        }
        match std::fs::read_to_string(path) {
            Ok(pem) => Self::from_pem(&pem),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let pem = generate_pem()?;
                write(&pem)?;
                Self::from_pem(&pem)
            }
            Err(source) => Err(KeyError::Read {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// A key from PEM PKCS#8 (`PRIVATE KEY`; `skiff gen config` writes this form).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let der = pem_body(pem, "PRIVATE KEY").ok_or(KeyError::Format)?;
        let rng = SystemRandom::new();
        let pair =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
                .map_err(|_| KeyError::Format)?;
        let digest = ring::digest::digest(&ring::digest::SHA256, pair.public_key().as_ref());
        Ok(Self {
            kid: URL_SAFE_NO_PAD.encode(digest.as_ref()),
            pair,
            issuer: DEFAULT_ISSUER.to_string(),
            rng,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Audiences the API server accepts (tokens for other audiences are for someone else).
    pub fn api_audiences(&self) -> Vec<String> {
        vec![self.issuer.clone()]
    }

    /// A signed compact JWS of `claims`.
    pub fn sign(&self, claims: &Claims) -> Result<String, KeyError> {
        let header = json!({"alg": "ES256", "kid": self.kid});
        let signing_input = format!("{}.{}", b64_json(&header), b64_json(claims));
        let sig = self
            .pair
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| KeyError::Generate)?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(sig.as_ref())
        ))
    }

    /// Check signature, issuer, time window (`now` in Unix seconds) and audience; the caller
    /// checks that the objects the token names still exist.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, VerifyError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(VerifyError::Malformed);
        };
        let header: Value = decode_segment(h)?;
        if header.get("alg").and_then(Value::as_str) != Some("ES256") {
            return Err(VerifyError::Algorithm);
        }
        let sig = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| VerifyError::Malformed)?;
        let public = signature::UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_FIXED,
            self.pair.public_key().as_ref(),
        );
        public
            .verify(format!("{h}.{p}").as_bytes(), &sig)
            .map_err(|_| VerifyError::Signature)?;
        let claims: Claims = decode_segment(p)?;
        if claims.iss != self.issuer {
            return Err(VerifyError::Issuer);
        }
        if now >= claims.exp {
            return Err(VerifyError::Expired);
        }
        if now < claims.nbf {
            return Err(VerifyError::NotYetValid);
        }
        let accepted = self.api_audiences();
        if !claims.aud.iter().any(|a| accepted.contains(a)) {
            return Err(VerifyError::Audience);
        }
        let want = service_account_user(&claims.kube.namespace, &claims.kube.serviceaccount.name);
        if claims.sub != want {
            return Err(VerifyError::Subject);
        }
        Ok(claims)
    }

    /// `GET /openid/v1/jwks`: the public key as a JSON Web Key Set.
    pub fn jwks(&self) -> Value {
        let point = self.pair.public_key().as_ref();
        // Uncompressed P-256 point: 0x04 || x (32 bytes) || y (32 bytes).
        let coords = point.get(1..).unwrap_or_default();
        let (x, y) = coords.split_at(coords.len() / 2);
        json!({"keys": [{
            "use": "sig",
            "kty": "EC",
            "kid": self.kid,
            "crv": "P-256",
            "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(x),
            "y": URL_SAFE_NO_PAD.encode(y),
        }]})
    }

    /// `GET /.well-known/openid-configuration`.
    pub fn openid_configuration(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": format!("{}/openid/v1/jwks", self.issuer),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        })
    }
}

/// Base64url (no padding) of a value's JSON.
fn b64_json<T: Serialize + ?Sized>(v: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap_or_default())
}

fn decode_segment<T: serde::de::DeserializeOwned>(seg: &str) -> Result<T, VerifyError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(seg)
        .map_err(|_| VerifyError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| VerifyError::Malformed)
}

/// Whether a bearer token has the shape of a JWT (three base64url segments, JSON header).
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3 && token.starts_with("eyJ")
}

fn generate_pem() -> Result<String, KeyError> {
    let rng = SystemRandom::new();
    let doc = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| KeyError::Generate)?;
    let b64 = STANDARD.encode(doc.as_ref());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    Ok(pem)
}

/// The DER inside the first `label` block of a PEM text.
fn pem_body(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let b64: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(b64).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(now: i64) -> Claims {
        Claims {
            aud: vec![DEFAULT_ISSUER.into()],
            exp: now + 3600,
            iat: now,
            iss: DEFAULT_ISSUER.into(),
            jti: "j1".into(),
            kube: KubeClaim {
                namespace: "default".into(),
                serviceaccount: Ref {
                    name: "default".into(),
                    uid: "sa-uid".into(),
                },
                pod: Some(Ref {
                    name: "web".into(),
                    uid: "pod-uid".into(),
                }),
                secret: None,
                node: None,
            },
            nbf: now,
            sub: "system:serviceaccount:default:default".into(),
        }
    }

    fn key() -> ServiceAccountKey {
        ServiceAccountKey::from_pem(&generate_pem().unwrap()).unwrap()
    }

    #[test]
    fn signs_and_verifies_es256() {
        let k = key();
        let now = 1_700_000_000;
        let token = k.sign(&claims(now)).unwrap();
        assert!(looks_like_jwt(&token));
        let header: Value = decode_segment(token.split('.').next().unwrap()).unwrap();
        assert_eq!(header["alg"], "ES256");
        let back = k.verify(&token, now + 10).unwrap();
        assert_eq!(back, claims(now));
        let user = back.user();
        assert_eq!(user.name, "system:serviceaccount:default:default");
        assert_eq!(
            user.groups,
            vec![
                "system:serviceaccounts",
                "system:serviceaccounts:default",
                "system:authenticated"
            ]
        );
        assert_eq!(user.uid, "sa-uid");
        assert_eq!(
            user.extra["authentication.kubernetes.io/pod-name"],
            vec!["web"]
        );
    }

    #[test]
    fn refuses_expired_forged_and_foreign_tokens() {
        let k = key();
        let now = 1_700_000_000;
        let token = k.sign(&claims(now)).unwrap();
        assert_eq!(k.verify(&token, now + 3600), Err(VerifyError::Expired));
        assert_eq!(k.verify(&token, now - 5), Err(VerifyError::NotYetValid));
        // Another key's signature.
        assert_eq!(key().verify(&token, now), Err(VerifyError::Signature));
        // Claims swapped under the same signature.
        let mut forged = claims(now);
        forged.kube.namespace = "kube-system".into();
        forged.sub = "system:serviceaccount:kube-system:default".into();
        let parts: Vec<&str> = token.split('.').collect();
        let tampered = format!("{}.{}.{}", parts[0], b64_json(&forged), parts[2]);
        assert_eq!(k.verify(&tampered, now), Err(VerifyError::Signature));
        // A token for another audience is not for us.
        let mut other = claims(now);
        other.aud = vec!["vault".into()];
        assert_eq!(
            k.verify(&k.sign(&other).unwrap(), now),
            Err(VerifyError::Audience)
        );
        // alg=none is refused before anything else.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            parts[1]
        );
        assert_eq!(k.verify(&none, now), Err(VerifyError::Algorithm));
        assert_eq!(k.verify("abc", now), Err(VerifyError::Malformed));
        // A subject that does not match the claim.
        let mut sub = claims(now);
        sub.sub = "admin".into();
        assert_eq!(
            k.verify(&k.sign(&sub).unwrap(), now),
            Err(VerifyError::Subject)
        );
    }

    #[test]
    fn key_file_is_created_once_and_seeds_win() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("sa.key");
        let a = ServiceAccountKey::load_or_create(&path, None).unwrap();
        let b = ServiceAccountKey::load_or_create(&path, None).unwrap();
        assert_eq!(a.kid, b.kid);
        let seed = generate_pem().unwrap();
        let c = ServiceAccountKey::load_or_create(&path, Some(&seed)).unwrap();
        assert_ne!(a.kid, c.kid);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), seed);
        assert!(ServiceAccountKey::from_pem("nonsense").is_err());
    }

    #[test]
    fn jwks_carries_the_public_point() {
        let k = key();
        let jwks = k.jwks();
        let jwk = &jwks["keys"][0];
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["kid"], k.kid.as_str());
        let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
        let y = URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap();
        assert_eq!((x.len(), y.len()), (32, 32));
        let mut point = vec![4u8];
        point.extend(x);
        point.extend(y);
        assert_eq!(point, k.pair.public_key().as_ref());
        assert_eq!(
            k.openid_configuration()["jwks_uri"],
            format!("{DEFAULT_ISSUER}/openid/v1/jwks")
        );
    }
}
