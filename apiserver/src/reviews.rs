//! The self-subject reviews: `authorization.k8s.io/v1` SelfSubjectAccessReview and
//! SelfSubjectRulesReview (`kubectl auth can-i`, `--list`), and `authentication.k8s.io/v1`
//! SelfSubjectReview (`kubectl auth whoami`). They are create-only and never stored. RBAC is
//! not enforced yet, so every authenticated user may do everything, and the reviews say so.
//!
//! They are not in the resource registry (no storage, no OpenAPI paths); discovery lists them
//! from [`REVIEWS`].

use http::{HeaderMap, Method, Response};
use serde_json::{Value, json};

use crate::auth::User;
use crate::negotiate;
use crate::response::{self, Body};
use crate::status::{ApiError, StatusCause};

/// One review resource.
#[derive(Debug)]
pub struct Review {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
}

/// Every review this server answers.
pub const REVIEWS: &[Review] = &[
    Review {
        group: "authentication.k8s.io",
        version: "v1",
        plural: "selfsubjectreviews",
        kind: "SelfSubjectReview",
    },
    Review {
        group: "authorization.k8s.io",
        version: "v1",
        plural: "selfsubjectaccessreviews",
        kind: "SelfSubjectAccessReview",
    },
    Review {
        group: "authorization.k8s.io",
        version: "v1",
        plural: "selfsubjectrulesreviews",
        kind: "SelfSubjectRulesReview",
    },
];

/// Why everything is allowed, in the review's `status.reason`.
const ALLOWED_REASON: &str = "skiff does not enforce RBAC yet: every authenticated user is allowed";

/// The review a path names (`/apis/{group}/{version}/{plural}`).
pub fn find(path: &str) -> Option<&'static Review> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let ["apis", group, version, plural] = parts.as_slice() else {
        return None;
    };
    REVIEWS
        .iter()
        .find(|r| r.group == *group && r.version == *version && r.plural == *plural)
}

/// Review groups with their versions, for discovery.
pub fn groups() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in REVIEWS {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

/// Reviews in one group/version.
pub fn in_group_version<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static Review> + 'a {
    REVIEWS
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

fn invalid(kind: &str, field: &str, message: &str) -> ApiError {
    let group = if kind == "SelfSubjectReview" {
        "authentication.k8s.io"
    } else {
        "authorization.k8s.io"
    };
    let mut e = ApiError::new(
        422,
        "Invalid",
        format!("{kind}.{group} \"\" is invalid: {field}: {message}"),
    );
    e.details = Some(json!({"group": group, "kind": kind}));
    e.causes = vec![StatusCause {
        reason: "FieldValueInvalid".into(),
        message: message.into(),
        field: field.into(),
    }];
    e
}

/// Answer one review request.
pub async fn handle<B>(
    review: &Review,
    user: &User,
    method: &Method,
    headers: &HeaderMap,
    body: B,
) -> Result<Response<Body>, ApiError>
where
    B: hyper::body::Body<Data = bytes::Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if method != Method::POST {
        return Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!(
                "the server does not allow this method on the requested resource ({method} {})",
                review.plural
            ),
        ));
    }
    let body = negotiate::read_body(body).await?;
    let req = negotiate::parse_object(&negotiate::content_type(headers), &body)?;
    if let Some(kind) = req.get("kind").and_then(Value::as_str)
        && !kind.is_empty()
        && kind != review.kind
    {
        return Err(ApiError::bad_request(format!(
            "the body must be a {}, not a {kind}",
            review.kind
        )));
    }
    let answer = answer(review, user, &req)?;
    Ok(response::json(201, &answer))
}

/// The review with its status filled in.
fn answer(review: &Review, user: &User, req: &Value) -> Result<Value, ApiError> {
    let spec = req.get("spec").cloned().unwrap_or_else(|| json!({}));
    let mut out = json!({
        "kind": review.kind,
        "apiVersion": format!("{}/{}", review.group, review.version),
        "metadata": {"creationTimestamp": null},
    });
    match review.kind {
        "SelfSubjectReview" => {
            let mut info = json!({"username": user.name, "groups": user.groups});
            if !user.uid.is_empty() {
                info["uid"] = json!(user.uid);
            }
            if !user.extra.is_empty() {
                info["extra"] = json!(user.extra);
            }
            out["status"] = json!({"userInfo": info});
        }
        "SelfSubjectAccessReview" => {
            let has = |k: &str| spec.get(k).is_some_and(|v| !v.is_null());
            if has("resourceAttributes") == has("nonResourceAttributes") {
                return Err(invalid(
                    review.kind,
                    "spec.resourceAttributes",
                    "Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified",
                ));
            }
            out["spec"] = spec;
            out["status"] = json!({"allowed": true, "reason": ALLOWED_REASON});
        }
        _ => {
            out["spec"] = spec;
            out["status"] = json!({
                "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                "incomplete": false,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(plural: &str) -> &'static Review {
        REVIEWS.iter().find(|r| r.plural == plural).unwrap()
    }

    #[test]
    fn finds_review_paths() {
        assert_eq!(
            find("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")
                .unwrap()
                .kind,
            "SelfSubjectAccessReview"
        );
        assert!(find("/apis/authorization.k8s.io/v1/subjectaccessreviews").is_none());
        assert!(find("/api/v1/pods").is_none());
        assert_eq!(
            groups(),
            vec![
                ("authentication.k8s.io", "v1"),
                ("authorization.k8s.io", "v1")
            ]
        );
    }

    #[test]
    fn whoami_reports_the_user() {
        let mut user = User::new("system:serviceaccount:default:default", vec![]);
        user.uid = "u1".into();
        user.extra.insert(
            "authentication.kubernetes.io/pod-name".into(),
            vec!["web".into()],
        );
        let a = answer(review("selfsubjectreviews"), &user, &json!({})).unwrap();
        assert_eq!(
            a["status"]["userInfo"],
            json!({"username": "system:serviceaccount:default:default", "uid": "u1",
                "groups": ["system:authenticated"],
                "extra": {"authentication.kubernetes.io/pod-name": ["web"]}})
        );
    }

    #[test]
    fn access_reviews_allow_and_check_their_spec() {
        let user = User::new("alice", vec![]);
        let r = review("selfsubjectaccessreviews");
        let spec = json!({"resourceAttributes": {"verb": "get", "resource": "pods"}});
        let a = answer(r, &user, &json!({"spec": spec})).unwrap();
        assert_eq!(a["status"]["allowed"], true);
        assert_eq!(a["spec"], spec);
        let e = answer(r, &user, &json!({"spec": {}})).unwrap_err();
        assert_eq!(e.code, 422);
        let both = json!({"spec": {"resourceAttributes": {}, "nonResourceAttributes": {}}});
        assert_eq!(answer(r, &user, &both).unwrap_err().code, 422);
        let rules = answer(
            review("selfsubjectrulesreviews"),
            &user,
            &json!({"spec": {"namespace": "default"}}),
        )
        .unwrap();
        assert_eq!(rules["status"]["resourceRules"][0]["verbs"], json!(["*"]));
        assert_eq!(rules["status"]["incomplete"], false);
    }
}
