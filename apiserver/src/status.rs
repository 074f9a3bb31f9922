//! API errors and the `meta/v1` `Status` objects they become on the wire.

use serde_json::{Value, json};
use skiff_apimachinery::Resource;

/// One cause inside a `Status`'s details (`field`, `reason`, `message`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCause {
    pub reason: String,
    pub message: String,
    pub field: String,
}

/// An error answered to a client as a Kubernetes `Status`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
    pub causes: Vec<StatusCause>,
    /// Extra response headers (e.g. Retry-After).
    pub retry_after: Option<u64>,
}

/// `deployments.apps` for grouped resources, `pods` for core ones.
pub fn qualified(res: &Resource) -> String {
    if res.group.is_empty() {
        res.plural.to_string()
    } else {
        format!("{}.{}", res.plural, res.group)
    }
}

fn details(res: Option<&Resource>, name: &str) -> Value {
    match res {
        Some(r) => json!({"name": name, "group": r.group, "kind": r.plural}),
        None => json!({"name": name}),
    }
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
            causes: Vec::new(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    pub fn not_found(res: &Resource, name: &str) -> Self {
        let mut e = Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(res)),
        );
        e.details = Some(details(Some(res), name));
        e
    }

    /// A path that names no resource.
    pub fn no_route(path: &str) -> Self {
        let mut e = Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
        e.details = Some(
            json!({"causes": [{"reason": "UnexpectedServerResponse", "message": format!("404 page not found: {path}")}]}),
        );
        e
    }

    pub fn method_not_allowed(verb: &str, res: &Resource) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!(
                "the server does not allow this method on the requested resource ({verb} {})",
                qualified(res)
            ),
        )
    }

    pub fn already_exists(res: &Resource, name: &str) -> Self {
        let mut e = Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(res)),
        );
        e.details = Some(details(Some(res), name));
        e
    }

    pub fn conflict(res: &Resource, name: &str, why: &str) -> Self {
        let mut e = Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                qualified(res)
            ),
        );
        e.details = Some(details(Some(res), name));
        e
    }

    /// The optimistic-concurrency failure kubectl and controllers retry on.
    pub fn modified(res: &Resource, name: &str) -> Self {
        Self::conflict(
            res,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    }

    pub fn unsupported_media_type(ct: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format ({ct}) - accepted media types include: application/json, application/yaml"
            ),
        )
    }

    pub fn not_acceptable(accept: &str) -> Self {
        Self::new(
            406,
            "NotAcceptable",
            format!(
                "only the following media types are accepted: application/json, application/yaml (asked for {accept})"
            ),
        )
    }

    /// 422 with field causes, in the real server's message shape.
    pub fn invalid(kind: &str, res: &Resource, name: &str, causes: Vec<StatusCause>) -> Self {
        let list: Vec<String> = causes
            .iter()
            .map(|c| {
                if c.field.is_empty() {
                    c.message.clone()
                } else {
                    format!("{}: {}", c.field, c.message)
                }
            })
            .collect();
        let what = if res.group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{}", res.group)
        };
        let message = if list.len() == 1 {
            format!("{what} \"{name}\" is invalid: {}", list[0])
        } else {
            format!("{what} \"{name}\" is invalid: [{}]", list.join(", "))
        };
        let mut e = Self::new(422, "Invalid", message);
        e.details = Some(json!({"name": name, "group": res.group, "kind": kind}));
        e.causes = causes;
        e
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        let mut e = Self::new(503, "ServiceUnavailable", message);
        e.retry_after = Some(1);
        e
    }

    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        let mut details = self.details.clone();
        if !self.causes.is_empty() {
            let causes: Vec<Value> = self
                .causes
                .iter()
                .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                .collect();
            let d = details.get_or_insert_with(|| json!({}));
            d["causes"] = Value::Array(causes);
        }
        if let Some(d) = details {
            status["details"] = d;
        }
        status
    }
}

/// A `Status` reporting success (what deletes of most kinds return).
pub fn success_status(res: &Resource, name: &str, uid: Option<&str>) -> Value {
    let mut d = details(Some(res), name);
    if let Some(uid) = uid {
        d["uid"] = Value::String(uid.to_string());
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": d})
}

impl From<skiff_store::StoreError> for ApiError {
    fn from(e: skiff_store::StoreError) -> Self {
        use skiff_store::StoreError as E;
        match e {
            E::Compacted { requested, floor } => {
                ApiError::gone(format!("too old resource version: {requested} ({floor})"))
            }
            E::Closed => ApiError::unavailable("the store is shutting down"),
            other => ApiError::internal(format!("storage error: {other}")),
        }
    }
}
