//! Image references: normalisation (`nginx` → `docker.io/library/nginx:latest`) and registry
//! mirrors (`docker.io=http://127.0.0.1:5000`).

use std::fmt;
use std::str::FromStr;

use oci_client::Reference;

/// A reference that is not a valid image name.
#[derive(Debug, thiserror::Error)]
#[error("invalid image reference {reference:?}")]
pub struct InvalidReference {
    pub reference: String,
    #[source]
    source: oci_client::ParseError,
}

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef(Reference);

impl ImageRef {
    /// Parse and normalise `image` the way Docker and the kubelet do: a missing registry is
    /// `docker.io`, a single-component Docker Hub name gets `library/`, a missing tag (and
    /// digest) is `latest`.
    pub fn parse(image: &str) -> Result<Self, InvalidReference> {
        let parsed = Reference::from_str(image).map_err(|source| InvalidReference {
            reference: image.to_string(),
            source,
        })?;
        // The parser accepts `index.docker.io` as a synonym; keep one spelling.
        let registry = match parsed.registry() {
            "index.docker.io" => "docker.io",
            other => other,
        }
        .to_string();
        let repository = parsed.repository().to_string();
        let r = match (parsed.tag(), parsed.digest()) {
            (Some(tag), Some(digest)) => Reference::with_tag_and_digest(
                registry,
                repository,
                tag.to_string(),
                digest.to_string(),
            ),
            (None, Some(digest)) => {
                Reference::with_digest(registry, repository, digest.to_string())
            }
            (tag, None) => {
                Reference::with_tag(registry, repository, tag.unwrap_or("latest").to_string())
            }
        };
        Ok(Self(r))
    }

    /// `docker.io`, `registry.example.com:5000`, ...
    pub fn registry(&self) -> &str {
        self.0.registry()
    }

    /// `library/nginx`.
    pub fn repository(&self) -> &str {
        self.0.repository()
    }

    pub fn tag(&self) -> Option<&str> {
        self.0.tag()
    }

    pub fn digest(&self) -> Option<&str> {
        self.0.digest()
    }

    /// `docker.io/library/nginx@sha256:...`: the form the kubelet reports as `imageID`.
    pub fn with_digest(&self, digest: &str) -> String {
        format!("{}/{}@{}", self.registry(), self.repository(), digest)
    }

    pub(crate) fn oci(&self) -> &Reference {
        &self.0
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A malformed `--registry-mirror` value.
#[derive(Debug, thiserror::Error)]
#[error("invalid registry mirror {0:?}: want REGISTRY=http(s)://HOST[:PORT]")]
pub struct InvalidMirror(String);

/// `registry` is served by `host` (a `HOST:PORT` authority) over plain HTTP or HTTPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    pub registry: String,
    pub host: String,
    pub insecure_http: bool,
}

impl FromStr for Mirror {
    type Err = InvalidMirror;

    /// `docker.io=http://127.0.0.1:5000`. Plain HTTP is used only for endpoints configured
    /// with `http://`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidMirror(s.to_string());
        let (registry, endpoint) = s.split_once('=').ok_or_else(bad)?;
        let (insecure_http, rest) = if let Some(rest) = endpoint.strip_prefix("http://") {
            (true, rest)
        } else if let Some(rest) = endpoint.strip_prefix("https://") {
            (false, rest)
        } else {
            return Err(bad());
        };
        let host = rest.trim_end_matches('/');
        let registry = match registry.trim() {
            "index.docker.io" => "docker.io",
            other => other,
        };
        if registry.is_empty() || host.is_empty() || host.contains('/') {
            return Err(bad());
        }
        Ok(Self {
            registry: registry.to_string(),
            host: host.to_string(),
            insecure_http,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        ImageRef::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(norm("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(norm("nginx:1.27"), "docker.io/library/nginx:1.27");
        assert_eq!(norm("bitnami/redis"), "docker.io/bitnami/redis:latest");
        assert_eq!(norm("docker.io/nginx"), "docker.io/library/nginx:latest");
        assert_eq!(
            norm("index.docker.io/library/nginx:1"),
            "docker.io/library/nginx:1"
        );
        assert_eq!(
            norm("registry.example.com:5000/team/app:v1"),
            "registry.example.com:5000/team/app:v1"
        );
        assert_eq!(norm("localhost:5000/app"), "localhost:5000/app:latest");
        let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let by_digest = ImageRef::parse(&format!("nginx@{d}")).unwrap();
        assert_eq!(
            by_digest.to_string(),
            format!("docker.io/library/nginx@{d}")
        );
        assert_eq!(by_digest.tag(), None);
        assert_eq!(by_digest.digest(), Some(d));
        assert_eq!(
            by_digest.with_digest(d),
            format!("docker.io/library/nginx@{d}")
        );
    }

    #[test]
    fn rejects_invalid_names() {
        for bad in [
            "",
            "Nginx",
            "library/Nginx:1",
            "nginx:",
            "a b",
            "nginx@sha256:short",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn parses_mirrors() {
        let m: Mirror = "docker.io=http://127.0.0.1:5000".parse().unwrap();
        assert_eq!(
            m,
            Mirror {
                registry: "docker.io".into(),
                host: "127.0.0.1:5000".into(),
                insecure_http: true
            }
        );
        let m: Mirror = "quay.io=https://mirror.local/".parse().unwrap();
        assert!(!m.insecure_http);
        assert_eq!(m.host, "mirror.local");
        for bad in [
            "docker.io",
            "docker.io=127.0.0.1:5000",
            "=http://x",
            "d=http://x/path",
        ] {
            assert!(bad.parse::<Mirror>().is_err(), "{bad:?} accepted");
        }
    }
}
