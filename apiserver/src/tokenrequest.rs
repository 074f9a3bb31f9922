//! `POST .../serviceaccounts/{name}/token` (an `authentication.k8s.io/v1` TokenRequest), and
//! authenticating the tokens it hands out: signature and times (`tokens`), then the service
//! account and the bound object must still exist with the uids the token names.

use http::Response;
use serde_json::{Value, json};

use crate::auth::User;
use crate::handlers::Api;
use crate::handlers::{Ctx, format_time};
use crate::negotiate;
use crate::response::{self, Body};
use crate::status::{ApiError, StatusCause};
use crate::tokens::{Claims, KubeClaim, Ref, service_account_user};

/// Token lifetimes kube-apiserver accepts: at least 10 minutes, at most 2^32 seconds.
const MIN_EXPIRATION: i64 = 600;
const MAX_EXPIRATION: i64 = 1 << 32;
const DEFAULT_EXPIRATION: i64 = 3600;

fn invalid(name: &str, field: &str, message: String) -> ApiError {
    let mut e = ApiError::new(
        422,
        "Invalid",
        format!("TokenRequest.authentication.k8s.io \"{name}\" is invalid: {field}: {message}"),
    );
    e.details =
        Some(json!({"name": name, "group": "authentication.k8s.io", "kind": "TokenRequest"}));
    e.causes = vec![StatusCause {
        reason: "FieldValueInvalid".into(),
        message,
        field: field.into(),
    }];
    e
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// What the request asks for, checked.
#[derive(Debug)]
struct Spec {
    audiences: Vec<String>,
    expiration: i64,
    bound: Option<(String, String, Option<String>)>,
}

fn parse_spec(name: &str, req: &Value, default_audiences: Vec<String>) -> Result<Spec, ApiError> {
    if let Some(kind) = str_at(req, "/kind")
        && kind != "TokenRequest"
    {
        return Err(ApiError::bad_request(format!(
            "the body must be a TokenRequest, not a {kind}"
        )));
    }
    // The typed form finds wrong field types the way the real decoder does. The status is
    // the server's to fill (clients send `expirationTimestamp: null`), so it is not checked.
    let mut typed = req.clone();
    if let Some(m) = typed.as_object_mut() {
        m.remove("status");
    }
    serde_json::from_value::<k8s_openapi::api::authentication::v1::TokenRequest>(typed).map_err(
        |e| {
            ApiError::bad_request(format!(
                "TokenRequest in version \"v1\" cannot be handled as a TokenRequest: {e}"
            ))
        },
    )?;
    let audiences: Vec<String> = req
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    let audiences = if audiences.is_empty() {
        default_audiences
    } else {
        audiences
    };
    let expiration = match req.pointer("/spec/expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_EXPIRATION,
        Some(v) => v.as_i64().unwrap_or(i64::MAX),
    };
    if expiration < MIN_EXPIRATION {
        return Err(invalid(
            name,
            "spec.expirationSeconds",
            format!("Invalid value: {expiration}: may not specify a duration less than 10 minutes"),
        ));
    }
    if expiration > MAX_EXPIRATION {
        return Err(invalid(
            name,
            "spec.expirationSeconds",
            format!(
                "Invalid value: {expiration}: may not specify a duration larger than 2^32 seconds"
            ),
        ));
    }
    let bound = match req.pointer("/spec/boundObjectRef") {
        None | Some(Value::Null) => None,
        Some(r) => {
            let kind = str_at(r, "/kind").unwrap_or("").to_string();
            let api_version = str_at(r, "/apiVersion").unwrap_or("v1");
            if api_version != "v1" || !matches!(kind.as_str(), "Pod" | "Secret" | "Node") {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token for object of type {api_version}, Kind={kind}"
                )));
            }
            let Some(obj_name) = str_at(r, "/name") else {
                return Err(invalid(
                    name,
                    "spec.boundObjectRef.name",
                    "Required value".into(),
                ));
            };
            Some((
                kind,
                obj_name.to_string(),
                str_at(r, "/uid").map(str::to_string),
            ))
        }
    };
    Ok(Spec {
        audiences,
        expiration,
        bound,
    })
}

async fn get(
    api: &Api,
    plural: &str,
    ns: Option<&str>,
    name: &str,
) -> Result<Option<Value>, ApiError> {
    let res = api
        .registry
        .get("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} is not registered")))?;
    api.objects.get(res, ns, name).await
}

async fn must_get(
    api: &Api,
    plural: &str,
    ns: Option<&str>,
    name: &str,
) -> Result<Value, ApiError> {
    let res = api
        .registry
        .get("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} is not registered")))?;
    api.objects.must_get(res, ns, name).await
}

fn obj_ref(obj: &Value) -> Ref {
    Ref {
        name: str_at(obj, "/metadata/name").unwrap_or("").to_string(),
        uid: str_at(obj, "/metadata/uid").unwrap_or("").to_string(),
    }
}

/// `POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token`.
pub async fn create(ctx: &Ctx<'_>, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let key =
        ctx.api.sa_key.as_ref().ok_or_else(|| {
            ApiError::unavailable("service-account token signing is not configured")
        })?;
    let name = ctx.name()?.to_string();
    let ns = ctx
        .ns()
        .ok_or_else(|| ApiError::bad_request("a namespace is required"))?
        .to_string();
    let req = negotiate::parse_object(&negotiate::content_type(&ctx.headers), body)?;
    let spec = parse_spec(&name, &req, key.api_audiences())?;
    let sa = ctx.api.objects.must_get(ctx.res, Some(&ns), &name).await?;
    let mut kube = KubeClaim {
        namespace: ns.clone(),
        serviceaccount: obj_ref(&sa),
        pod: None,
        secret: None,
        node: None,
    };
    if let Some((kind, obj_name, uid)) = &spec.bound {
        let (plural, obj_ns) = match kind.as_str() {
            "Pod" => ("pods", Some(ns.as_str())),
            "Secret" => ("secrets", Some(ns.as_str())),
            _ => ("nodes", None),
        };
        let obj = must_get(ctx.api, plural, obj_ns, obj_name).await?;
        let r = obj_ref(&obj);
        if let Some(uid) = uid
            && *uid != r.uid
        {
            let mut e = ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {kind} \"{obj_name}\": the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
                ),
            );
            e.details = Some(json!({"name": obj_name, "kind": kind}));
            return Err(e);
        }
        match kind.as_str() {
            "Pod" => {
                let pod_sa = str_at(&obj, "/spec/serviceAccountName").unwrap_or("default");
                if pod_sa != name {
                    return Err(ApiError::bad_request(format!(
                        "cannot bind token for serviceaccount \"{name}\" to pod running with different serviceaccount name."
                    )));
                }
                if let Some(node) = str_at(&obj, "/spec/nodeName")
                    && let Some(n) = get(ctx.api, "nodes", None, node).await?
                {
                    kube.node = Some(obj_ref(&n));
                }
                kube.pod = Some(r);
            }
            "Secret" => kube.secret = Some(r),
            _ => kube.node = Some(r),
        }
    }
    let now = ctx.now();
    let iat = now.as_second();
    let claims = Claims {
        aud: spec.audiences.clone(),
        exp: iat + spec.expiration,
        iat,
        iss: key.issuer().to_string(),
        jti: uuid::Uuid::new_v4().to_string(),
        kube,
        nbf: iat,
        sub: service_account_user(&ns, &name),
    };
    let token = key
        .sign(&claims)
        .map_err(|e| ApiError::internal(format!("signing the token: {e}")))?;
    let expires =
        jiff::Timestamp::from_second(claims.exp).map_err(|e| ApiError::internal(e.to_string()))?;
    let mut out_spec = json!({
        "audiences": spec.audiences,
        "expirationSeconds": spec.expiration,
        "boundObjectRef": null,
    });
    if let Some(r) = req.pointer("/spec/boundObjectRef").filter(|r| !r.is_null()) {
        out_spec["boundObjectRef"] = r.clone();
    }
    let out = json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": format_time(now)},
        "spec": out_spec,
        "status": {"token": token, "expirationTimestamp": format_time(expires)},
    });
    Ok(response::json(201, &out))
}

/// The user behind a service-account JWT, or 401.
pub async fn authenticate(api: &Api, token: &str) -> Result<User, ApiError> {
    let key = api.sa_key.as_ref().ok_or_else(ApiError::unauthorized)?;
    let claims = key
        .verify(token, jiff::Timestamp::now().as_second())
        .map_err(|e| {
            tracing::debug!(error = %e, "service-account token refused");
            ApiError::unauthorized()
        })?;
    let ns = claims.kube.namespace.as_str();
    let still_there = |obj: Option<Value>, want: &Ref| {
        obj.is_some_and(|o| {
            o.pointer("/metadata/deletionTimestamp")
                .is_none_or(Value::is_null)
                && obj_ref(&o).uid == want.uid
        })
    };
    let sa = get(
        api,
        "serviceaccounts",
        Some(ns),
        &claims.kube.serviceaccount.name,
    )
    .await?;
    let mut ok = still_there(sa, &claims.kube.serviceaccount);
    if let Some(pod) = &claims.kube.pod {
        ok = ok && still_there(get(api, "pods", Some(ns), &pod.name).await?, pod);
    }
    if let Some(secret) = &claims.kube.secret {
        ok = ok && still_there(get(api, "secrets", Some(ns), &secret.name).await?, secret);
    }
    if !ok {
        tracing::debug!(sub = %claims.sub, "service-account token names objects that are gone");
        return Err(ApiError::unauthorized());
    }
    Ok(claims.user())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aud() -> Vec<String> {
        vec!["https://kubernetes.default.svc.cluster.local".into()]
    }

    #[test]
    fn spec_defaults_and_limits() {
        let s = parse_spec(
            "default",
            &json!({"spec": {}, "status": {"token": "", "expirationTimestamp": null}}),
            aud(),
        )
        .unwrap();
        assert_eq!(s.audiences, aud());
        assert_eq!(s.expiration, 3600);
        assert!(s.bound.is_none());
        let s = parse_spec(
            "default",
            &json!({"spec": {"audiences": ["vault"], "expirationSeconds": 7200,
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "web", "uid": "u1"}}}),
            aud(),
        )
        .unwrap();
        assert_eq!(s.audiences, vec!["vault"]);
        assert_eq!(s.expiration, 7200);
        assert_eq!(
            s.bound,
            Some(("Pod".into(), "web".into(), Some("u1".into())))
        );
        let short = parse_spec(
            "default",
            &json!({"spec": {"expirationSeconds": 60}}),
            aud(),
        )
        .unwrap_err();
        assert_eq!(short.code, 422);
        assert_eq!(
            short.message,
            "TokenRequest.authentication.k8s.io \"default\" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"
        );
        assert_eq!(short.causes[0].field, "spec.expirationSeconds");
        let long = parse_spec(
            "default",
            &json!({"spec": {"expirationSeconds": 1_i64 << 40}}),
            aud(),
        )
        .unwrap_err();
        assert_eq!(long.code, 422);
        let kind = parse_spec(
            "default",
            &json!({"spec": {"boundObjectRef": {"kind": "ConfigMap", "name": "x"}}}),
            aud(),
        )
        .unwrap_err();
        assert_eq!(kind.code, 400);
        let typed = parse_spec("default", &json!({"spec": {"audiences": "x"}}), aud()).unwrap_err();
        assert_eq!(typed.code, 400);
        let unnamed = parse_spec(
            "default",
            &json!({"spec": {"boundObjectRef": {"kind": "Pod"}}}),
            aud(),
        )
        .unwrap_err();
        assert_eq!(unnamed.code, 422);
    }
}
