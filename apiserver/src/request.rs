//! Turning a request's method, path and query into what it asks for.

use std::collections::HashMap;

use http::Method;
use skiff_apimachinery::{Registry, Resource, Subresource};

use crate::status::ApiError;

/// What a request path names.
#[derive(Debug, Clone)]
pub enum Target<'a> {
    /// Non-resource paths: discovery, health, version, openapi.
    Other,
    /// A resource collection or object.
    Resource(ResourceRequest<'a>),
}

#[derive(Debug, Clone)]
pub struct ResourceRequest<'a> {
    pub resource: &'a Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<Subresource>,
    pub verb: Verb,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::List => "list",
            Self::Watch => "watch",
            Self::Create => "create",
            Self::Update => "update",
            Self::Patch => "patch",
            Self::Delete => "delete",
            Self::DeleteCollection => "deletecollection",
        }
    }
}

/// Parse `/api/v1/...` and `/apis/{group}/{version}/...` paths. Returns `Target::Other` for
/// paths that are not resource paths; errors for resource paths that name nothing.
pub fn parse<'r>(
    registry: &'r Registry,
    method: &Method,
    path: &str,
    query: &Query,
) -> Result<Target<'r>, ApiError> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, mut rest) = match parts.as_slice() {
        ["api", version, rest @ ..] if !rest.is_empty() => ("", *version, rest),
        ["apis", group, version, rest @ ..] if !rest.is_empty() => (*group, *version, rest),
        _ => return Ok(Target::Other),
    };
    let mut watch = query.flag("watch");
    if rest.first() == Some(&"watch") {
        watch = true;
        rest = &rest[1..];
    }
    let mut namespace = None;
    if rest.first() == Some(&"namespaces") && rest.len() > 1 {
        namespace = Some(rest[1].to_string());
        if rest.len() > 2 && rest[2] != "status" && rest[2] != "finalize" {
            rest = &rest[2..];
        }
    }
    let (plural, name, sub) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
        _ => return Err(ApiError::no_route(path)),
    };
    let resource = registry
        .get(group, version, plural)
        .ok_or_else(|| ApiError::no_route(path))?;
    // `/api/v1/namespaces/foo` names the namespace object itself.
    let name = name.map(str::to_string);
    let namespace = if rest[0] == "namespaces" {
        None
    } else {
        namespace
    };
    if !resource.namespaced() && namespace.is_some() {
        return Err(ApiError::no_route(path));
    }
    let subresource = match sub {
        Some(s) => Some(
            resource
                .subresource(s)
                .ok_or_else(|| ApiError::no_route(path))?,
        ),
        None => None,
    };
    for n in name.iter().chain(namespace.iter()) {
        if n.is_empty() || n.contains('%') || n == "." || n == ".." {
            return Err(ApiError::bad_request(format!(
                "invalid name in path: {n:?}"
            )));
        }
    }
    let verb = match (method.as_str(), name.is_some()) {
        ("GET" | "HEAD", true) if watch => Verb::Watch,
        ("GET" | "HEAD", true) => Verb::Get,
        ("GET" | "HEAD", false) if watch => Verb::Watch,
        ("GET" | "HEAD", false) => Verb::List,
        ("POST", _) => Verb::Create,
        ("PUT", true) => Verb::Update,
        ("PATCH", true) => Verb::Patch,
        ("DELETE", true) => Verb::Delete,
        ("DELETE", false) => Verb::DeleteCollection,
        _ => return Err(ApiError::method_not_allowed(method.as_str(), resource)),
    };
    Ok(Target::Resource(ResourceRequest {
        resource,
        namespace,
        name,
        subresource,
        verb,
    }))
}

/// Decoded query parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        let mut map = HashMap::new();
        for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            map.insert(decode_component(k), decode_component(v));
        }
        Self(map)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// A boolean parameter, parsed as Go's `strconv.ParseBool` (what clients expect).
    pub fn flag(&self, key: &str) -> bool {
        matches!(
            self.0.get(key).map(String::as_str),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True")
        )
    }

    pub fn number(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!("invalid value for {key}: {v:?} is not an integer"))
            }),
        }
    }

    pub fn dry_run(&self) -> Result<bool, ApiError> {
        match self.0.get("dryRun").map(String::as_str) {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "Invalid dry run value: {other:?}: supported values: \"All\""
            ))),
        }
    }
}

/// Percent-decoding for query components (`+` is a space).
fn decode_component(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(method: Method, path: &str, q: &str) -> Result<Target<'static>, ApiError> {
        parse(Registry::builtin(), &method, path, &Query::parse(Some(q)))
    }

    fn req(method: Method, path: &str, q: &str) -> ResourceRequest<'static> {
        match target(method, path, q).unwrap() {
            Target::Resource(r) => r,
            Target::Other => panic!("{path} parsed as non-resource"),
        }
    }

    #[test]
    fn parses_namespaced_paths() {
        let r = req(
            Method::GET,
            "/apis/apps/v1/namespaces/prod/deployments/web",
            "",
        );
        assert_eq!(r.resource.kind, "Deployment");
        assert_eq!(r.namespace.as_deref(), Some("prod"));
        assert_eq!(r.name.as_deref(), Some("web"));
        assert_eq!(r.verb, Verb::Get);
        let r = req(Method::GET, "/api/v1/pods", "watch=true");
        assert_eq!((r.namespace, r.verb), (None, Verb::Watch));
        let r = req(Method::GET, "/api/v1/watch/namespaces/a/pods", "");
        assert_eq!(r.verb, Verb::Watch);
        let r = req(
            Method::PATCH,
            "/apis/apps/v1/namespaces/a/deployments/web/scale",
            "",
        );
        assert_eq!(r.subresource, Some(Subresource::Scale));
        let r = req(Method::DELETE, "/api/v1/namespaces/a/configmaps", "");
        assert_eq!(r.verb, Verb::DeleteCollection);
    }

    #[test]
    fn parses_namespace_objects_and_their_subresources() {
        let r = req(Method::GET, "/api/v1/namespaces/kube-system", "");
        assert_eq!(r.resource.plural, "namespaces");
        assert_eq!(
            (r.namespace, r.name.as_deref()),
            (None, Some("kube-system"))
        );
        let r = req(Method::PUT, "/api/v1/namespaces/x/finalize", "");
        assert_eq!(r.name.as_deref(), Some("x"));
        assert_eq!(r.subresource, Some(Subresource::Finalize));
        let r = req(Method::GET, "/api/v1/namespaces", "");
        assert_eq!(r.verb, Verb::List);
    }

    #[test]
    fn unknown_things_are_not_found() {
        assert!(matches!(
            target(Method::GET, "/version", ""),
            Ok(Target::Other)
        ));
        assert!(matches!(
            target(Method::GET, "/apis/apps/v1", ""),
            Ok(Target::Other)
        ));
        assert_eq!(
            target(Method::GET, "/api/v1/widgets", "").unwrap_err().code,
            404
        );
        assert_eq!(
            target(Method::GET, "/api/v1/namespaces/a/nodes/n1", "")
                .unwrap_err()
                .code,
            404
        );
        assert_eq!(
            target(Method::GET, "/api/v1/namespaces/a/pods/p/bogus", "")
                .unwrap_err()
                .code,
            404
        );
        assert_eq!(
            target(Method::PUT, "/api/v1/pods", "").unwrap_err().code,
            405
        );
    }

    #[test]
    fn decodes_query_strings() {
        let q = Query::parse(Some(
            "labelSelector=app%3Dweb%2Ctier+in+(a)&limit=5&watch=1",
        ));
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
        assert_eq!(q.number("limit").unwrap(), Some(5));
        assert!(q.flag("watch"));
        assert!(Query::parse(Some("watch=True")).flag("watch"));
        assert!(!Query::parse(Some("watch=no")).flag("watch"));
        assert!(Query::parse(Some("limit=x")).number("limit").is_err());
        assert!(Query::parse(Some("dryRun=All")).dry_run().unwrap());
        assert!(Query::parse(Some("dryRun=Some")).dry_run().is_err());
    }
}
