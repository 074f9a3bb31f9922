//! Authentication: x509 client certificates (CN = user, O = groups), bearer tokens from a
//! static token file, and service-account JWTs (checked in `tokens`). Requests with none are
//! anonymous; only health and version paths answer them.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use http::HeaderMap;

use crate::status::ApiError;

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
    /// Empty unless the authenticator knows one (service accounts: the account's uid).
    pub uid: String,
    /// Extra attributes (bound pod, node, credential id of service-account tokens).
    pub extra: BTreeMap<String, Vec<String>>,
}

impl User {
    pub fn new(name: impl Into<String>, mut groups: Vec<String>) -> Self {
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        Self {
            name: name.into(),
            groups,
            uid: String::new(),
            extra: BTreeMap::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read token file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: expected token,user,uid[,\"group1,group2\"]")]
    Syntax { path: String, line: usize },
}

/// Bearer tokens in kube-apiserver's `--token-auth-file` format: `token,user,uid[,"g1,g2"]`.
#[derive(Debug, Default, Clone)]
pub struct Tokens {
    users: HashMap<String, User>,
}

impl Tokens {
    /// Load `path` if it exists; an absent file means no tokens.
    pub fn load(path: &Path) -> Result<Self, TokenFileError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(TokenFileError::Read {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        Self::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, origin: &str) -> Result<Self, TokenFileError> {
        let mut users = HashMap::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields = split_csv(line);
            if fields.len() < 3 || fields[0].is_empty() || fields[1].is_empty() {
                return Err(TokenFileError::Syntax {
                    path: origin.to_string(),
                    line: n + 1,
                });
            }
            let groups = fields
                .get(3)
                .map(|g| {
                    g.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            users.insert(fields[0].clone(), User::new(fields[1].clone(), groups));
        }
        Ok(Self { users })
    }

    pub fn insert(&mut self, token: &str, user: User) {
        self.users.insert(token.to_string(), user);
    }

    fn lookup(&self, token: &str) -> Option<&User> {
        self.users.get(token)
    }
}

/// Split one CSV line, honouring double quotes.
fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().map(|s| s.trim().to_string()).collect()
}

/// What a request's credentials say before any check that needs the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A static token or the client certificate named this user.
    User(User),
    /// A bearer token shaped like a JWT that the token file does not know: a service-account
    /// token to verify (`tokens::authenticate`).
    ServiceAccountToken(String),
    Anonymous,
}

/// Decide who is asking. A bearer token that matches nothing is refused outright, as in
/// Kubernetes; otherwise the client certificate's identity is used, else anonymous.
pub fn authenticate(
    headers: &HeaderMap,
    cert_user: Option<&User>,
    tokens: &Tokens,
) -> Result<Credential, ApiError> {
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| ApiError::unauthorized())?;
        if let Some(token) = value.strip_prefix("Bearer ") {
            let token = token.trim();
            if let Some(user) = tokens.lookup(token) {
                return Ok(Credential::User(user.clone()));
            }
            if crate::tokens::looks_like_jwt(token) {
                return Ok(Credential::ServiceAccountToken(token.to_string()));
            }
        }
        return Err(ApiError::unauthorized());
    }
    Ok(cert_user.map_or(Credential::Anonymous, |u| Credential::User(u.clone())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_token_files() {
        let t = Tokens::parse(
            "# comment\nabc,alice,1,\"dev,ops\"\nxyz,bob,2\n",
            "tokens.csv",
        )
        .unwrap();
        assert_eq!(
            t.lookup("abc").unwrap().groups,
            vec!["dev", "ops", "system:authenticated"]
        );
        assert_eq!(t.lookup("xyz").unwrap().name, "bob");
        let err = Tokens::parse("onlytoken\n", "t.csv").unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.csv:1: expected token,user,uid[,\"group1,group2\"]"
        );
    }

    #[test]
    fn tokens_beat_certs_and_bad_tokens_are_refused() {
        let mut tokens = Tokens::default();
        tokens.insert("good", User::new("tok", vec![]));
        let cert = User::new("cert", vec![]);
        let mut h = HeaderMap::new();
        assert_eq!(
            authenticate(&h, Some(&cert), &tokens).unwrap(),
            Credential::User(cert.clone())
        );
        assert_eq!(
            authenticate(&h, None, &tokens).unwrap(),
            Credential::Anonymous
        );
        h.insert(http::header::AUTHORIZATION, "Bearer good".parse().unwrap());
        assert_eq!(
            authenticate(&h, Some(&cert), &tokens).unwrap(),
            Credential::User(User::new("tok", vec![]))
        );
        h.insert(
            http::header::AUTHORIZATION,
            "Bearer eyJa.eyJb.c".parse().unwrap(),
        );
        assert_eq!(
            authenticate(&h, Some(&cert), &tokens).unwrap(),
            Credential::ServiceAccountToken("eyJa.eyJb.c".into())
        );
        h.insert(http::header::AUTHORIZATION, "Bearer bad".parse().unwrap());
        assert_eq!(
            authenticate(&h, Some(&cert), &tokens).unwrap_err().code,
            401
        );
        h.insert(http::header::AUTHORIZATION, "Basic Zm9v".parse().unwrap());
        assert_eq!(authenticate(&h, None, &tokens).unwrap_err().code, 401);
    }
}
