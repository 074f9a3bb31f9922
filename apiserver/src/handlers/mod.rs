//! Request handling: routes a request to discovery, OpenAPI, health, or a resource verb.

mod delete;
mod read;
mod subresource;
mod watch;
mod write;

pub(crate) use write::format_time;

use std::net::Ipv4Addr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response};
use serde_json::{Value, json};
use skiff_apimachinery::{Registry, Resource, openapi};
use tokio::sync::Mutex;

use crate::auth::User;
use crate::negotiate::{self, Output};
use crate::objects::{Objects, Written};
use crate::request::{self, Query, ResourceRequest, Target, Verb};
use crate::response::{self, Body};
use crate::status::ApiError;
use crate::{discovery, version};

/// The API: the registry of kinds, the objects in the store, and the server's settings.
pub struct Api {
    pub(crate) registry: &'static Registry,
    pub(crate) objects: Objects,
    /// The URL clients use to reach this server (discovery's serverAddress).
    pub(crate) external_address: String,
    /// Service cluster IPs are allocated from this IPv4 range.
    pub(crate) service_cidr: (Ipv4Addr, u8),
    /// Serialises allocations of cluster IPs and node ports.
    pub(crate) alloc_lock: Mutex<()>,
    /// Signing for and talking to node agents (absent in servers without a CA key).
    pub(crate) kubelet: Option<crate::kubelet::KubeletAccess>,
    /// Signs and verifies service-account tokens (absent: no TokenRequest, no JWTs).
    pub(crate) sa_key: Option<Arc<crate::tokens::ServiceAccountKey>>,
    /// Controllers make a `default` ServiceAccount in every namespace (pod admission waits
    /// for it instead of skipping the token volume).
    pub(crate) default_service_accounts: std::sync::atomic::AtomicBool,
}

impl Api {
    pub fn new(
        store: Arc<dyn skiff_store::Store>,
        external_address: String,
        service_cidr: (Ipv4Addr, u8),
    ) -> Self {
        Self {
            registry: Registry::builtin(),
            objects: Objects::new(store),
            external_address,
            service_cidr,
            alloc_lock: Mutex::new(()),
            kubelet: None,
            sa_key: None,
            default_service_accounts: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Let the server issue and accept service-account tokens signed with `key`.
    pub fn with_service_account_key(mut self, key: crate::tokens::ServiceAccountKey) -> Self {
        self.sa_key = Some(Arc::new(key));
        self
    }

    /// The user behind a service-account token, or 401.
    pub async fn authenticate_service_account(&self, token: &str) -> Result<User, ApiError> {
        crate::tokenrequest::authenticate(self, token).await
    }

    /// Say that controllers run and make every namespace's `default` ServiceAccount: pod
    /// creates then wait a little for a missing one and are refused without it, as in
    /// Kubernetes, instead of being admitted without a token volume.
    pub fn expect_default_service_accounts(&self) {
        self.default_service_accounts
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Let the server sign node agents' serving certificates and proxy to their logs.
    pub fn with_kubelet_access(mut self, access: crate::kubelet::KubeletAccess) -> Self {
        self.kubelet = Some(access);
        self
    }

    pub fn objects(&self) -> &Objects {
        &self.objects
    }

    /// Create an object as the server itself (bootstrap), through the same pipeline as a
    /// client's create. An object that already exists is left as it is.
    pub async fn create_internal(
        &self,
        group: &str,
        version: &str,
        plural: &str,
        namespace: Option<&str>,
        obj: Value,
    ) -> Result<(), ApiError> {
        let res = self
            .registry
            .get(group, version, plural)
            .ok_or_else(|| ApiError::internal(format!("{plural} is not registered")))?;
        let ctx = Ctx {
            api: self,
            res,
            namespace: namespace.map(str::to_string),
            name: None,
            query: Query::default(),
            headers: HeaderMap::new(),
            user: User::new("system:apiserver", vec!["system:masters".into()]),
            output: Output::Json,
        };
        let decoded = res
            .decode(&obj)
            .map_err(|e| ApiError::internal(format!("built-in {plural} object: {e}")))?;
        match write::create_object(&ctx, decoded.object).await {
            Ok(_) => Ok(()),
            Err(e) if e.reason == "AlreadyExists" => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Handle one authenticated (or anonymous) request.
    pub async fn handle<B>(&self, req: Request<B>, user: Option<User>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let method = req.method().clone();
        let uri = req.uri().clone();
        let result = self.route(req, user).await;
        let resp = result.unwrap_or_else(|e| response::error(&e));
        tracing::debug!(%method, %uri, status = resp.status().as_u16(), "request");
        if method == Method::HEAD {
            let (parts, _) = resp.into_parts();
            return Response::from_parts(parts, response::full(Bytes::new()));
        }
        resp
    }

    async fn route<B>(
        &self,
        mut req: Request<B>,
        user: Option<User>,
    ) -> Result<Response<Body>, ApiError>
    where
        B: hyper::body::Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = req.uri().path().to_string();
        if is_public(&path) {
            return public(&path);
        }
        let Some(user) = user else {
            return Err(ApiError::unauthorized());
        };
        if let Some(review) = crate::reviews::find(&path) {
            let (parts, body) = req.into_parts();
            return crate::reviews::handle(review, &user, &parts.method, &parts.headers, body)
                .await;
        }
        let query = Query::parse(req.uri().query());
        match request::parse(self.registry, req.method(), &path, &query)? {
            Target::Other => self.non_resource(req.method(), &path, req.headers()),
            Target::Resource(rr) => {
                if let Some(sub) = rr.subresource.filter(|s| s.is_streaming()) {
                    let client = hyper::upgrade::on(&mut req);
                    let raw_query = req.uri().query().unwrap_or_default().to_owned();
                    let ctx = Ctx {
                        api: self,
                        res: rr.resource,
                        namespace: rr.namespace.clone(),
                        name: rr.name.clone(),
                        query,
                        headers: req.headers().clone(),
                        user,
                        output: Output::Json,
                    };
                    return crate::kubelet::stream(&ctx, sub, client, &raw_query).await;
                }
                let output = negotiate::output(req.headers())?;
                let (parts, body) = req.into_parts();
                let ctx = Ctx {
                    api: self,
                    res: rr.resource,
                    namespace: rr.namespace.clone(),
                    name: rr.name.clone(),
                    query,
                    headers: parts.headers,
                    user,
                    output,
                };
                self.resource(ctx, rr, body).await
            }
        }
    }

    fn non_resource(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<Response<Body>, ApiError> {
        if method != Method::GET && method != Method::HEAD {
            return Err(ApiError::new(
                405,
                "MethodNotAllowed",
                format!("{method} is not allowed on {path}"),
            ));
        }
        let reg = self.registry;
        let trimmed = path.trim_end_matches('/');
        let parts: Vec<&str> = trimmed.trim_start_matches('/').split('/').collect();
        let value = match parts.as_slice() {
            ["api"] if discovery::wants_aggregated(headers) => {
                return Ok(aggregated(discovery::aggregated(reg, true)));
            }
            ["apis"] if discovery::wants_aggregated(headers) => {
                return Ok(aggregated(discovery::aggregated(reg, false)));
            }
            ["api"] => Some(discovery::core_versions(&self.external_address)),
            ["apis"] => Some(discovery::group_list(reg)),
            ["api", version] => discovery::resource_list(reg, "", version),
            ["apis", group] => discovery::group(reg, group),
            ["apis", group, version] => discovery::resource_list(reg, group, version),
            ["openapi", "v2"] => {
                // Only JSON is served; a client asking for the protobuf form alone gets 406
                // rather than bytes it would misparse.
                let accept = headers
                    .get(http::header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if !accept.is_empty() && !accept.contains("json") && !accept.contains("*/*") {
                    return Err(ApiError::not_acceptable(accept));
                }
                return Ok(response::bytes(200, "application/json", openapi::v2_json()));
            }
            [".well-known", "openid-configuration"] => {
                let key = self
                    .sa_key
                    .as_ref()
                    .ok_or_else(|| ApiError::no_route(path))?;
                Some(key.openid_configuration())
            }
            ["openid", "v1", "jwks"] => {
                let key = self
                    .sa_key
                    .as_ref()
                    .ok_or_else(|| ApiError::no_route(path))?;
                let body = serde_json::to_vec(&key.jwks())
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                return Ok(response::bytes(200, "application/jwk-set+json", body));
            }
            ["openapi", "v3"] => {
                return Ok(response::bytes(
                    200,
                    "application/json",
                    openapi::v3_index(),
                ));
            }
            ["openapi", "v3", rest @ ..] => {
                let (doc, _hash) =
                    openapi::v3_doc(&rest.join("/")).ok_or_else(|| ApiError::no_route(path))?;
                return Ok(response::bytes(200, "application/json", doc));
            }
            _ => None,
        };
        value
            .map(|v| response::json(200, &v))
            .ok_or_else(|| ApiError::no_route(path))
    }

    async fn resource<B>(
        &self,
        ctx: Ctx<'_>,
        rr: ResourceRequest<'static>,
        body: B,
    ) -> Result<Response<Body>, ApiError>
    where
        B: hyper::body::Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if let Some(ns) = &ctx.namespace {
            let problems = skiff_apimachinery::validation::validate_name(
                self.registry.get("", "v1", "namespaces").unwrap_or(ctx.res),
                ns,
            );
            if !problems.is_empty() && rr.verb != Verb::List && rr.verb != Verb::Watch {
                return Err(ApiError::bad_request(format!(
                    "invalid namespace {ns:?}: {}",
                    problems.join(", ")
                )));
            }
        }
        match (rr.subresource, rr.verb) {
            (None, Verb::Get) => read::get(&ctx).await,
            (None, Verb::List) => read::list(&ctx).await,
            (None, Verb::Watch) => watch::watch(&ctx).await,
            (None, Verb::Create) if ctx.name.is_none() => {
                let body = negotiate::read_body(body).await?;
                write::create(&ctx, &body).await
            }
            (None, Verb::Update) => {
                let body = negotiate::read_body(body).await?;
                write::update(&ctx, &body, None).await
            }
            (None, Verb::Patch) => {
                let body = negotiate::read_body(body).await?;
                write::patch(&ctx, &body, None).await
            }
            (None, Verb::Delete) => {
                let body = negotiate::read_body(body).await?;
                delete::delete(&ctx, &body).await
            }
            (None, Verb::DeleteCollection) => {
                if !ctx.res.delete_collection {
                    return Err(ApiError::method_not_allowed("DELETE", ctx.res));
                }
                let body = negotiate::read_body(body).await?;
                delete::delete_collection(&ctx, &body).await
            }
            (Some(sub), verb) => {
                let body = negotiate::read_body(body).await?;
                subresource::handle(&ctx, sub, verb, &body).await
            }
            (None, verb) => Err(ApiError::method_not_allowed(verb.as_str(), ctx.res)),
        }
    }
}

fn aggregated(v: Value) -> Response<Body> {
    match serde_json::to_vec(&v) {
        Ok(b) => response::bytes(200, discovery::AGGREGATED_V2, b),
        Err(e) => response::error(&ApiError::internal(e.to_string())),
    }
}

/// Paths answered without authentication.
fn is_public(path: &str) -> bool {
    let base = path.split('/').nth(1).unwrap_or("");
    matches!(base, "healthz" | "livez" | "readyz") || path == "/version" || path == "/version/"
}

fn public(path: &str) -> Result<Response<Body>, ApiError> {
    if path.starts_with("/version") {
        return Ok(response::json(200, &version::info()));
    }
    Ok(response::bytes(200, "text/plain; charset=utf-8", "ok"))
}

/// Everything a resource handler needs about its request.
pub(crate) struct Ctx<'a> {
    pub api: &'a Api,
    pub res: &'static Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub query: Query,
    pub headers: HeaderMap,
    pub user: User,
    pub output: Output,
}

impl Ctx<'_> {
    pub fn ns(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// The name from the path (handlers for named verbs only run when it is present).
    pub fn name(&self) -> Result<&str, ApiError> {
        self.name
            .as_deref()
            .ok_or_else(|| ApiError::bad_request("a resource name is required"))
    }

    /// `fieldManager`, or the client's user agent up to the first `/`, as kube-apiserver.
    pub fn manager(&self) -> String {
        if let Some(m) = self.query.get("fieldManager") {
            return m.to_string();
        }
        self.headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .and_then(|ua| ua.split('/').next())
            .filter(|s| !s.is_empty())
            .unwrap_or("unknown")
            .to_string()
    }

    pub fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
    }

    /// Render a written object, reusing its JSON when that is the representation asked for.
    pub fn render_written(&self, code: u16, written: Written) -> Response<Body> {
        match self.output {
            Output::Json => response::bytes(code, "application/json", written.json),
            _ => self.render(code, &written.object),
        }
    }

    /// Render one object for this request's representation.
    pub fn render(&self, code: u16, obj: &Value) -> Response<Body> {
        match self.output {
            Output::Table => {
                let table = skiff_apimachinery::table::table(
                    self.res,
                    std::slice::from_ref(obj),
                    include_object(&self.query),
                    self.now(),
                    json!({"resourceVersion": obj.pointer("/metadata/resourceVersion")}),
                );
                response::json(code, &table)
            }
            Output::Metadata => response::json(code, &partial_metadata(obj)),
            out => response::object(code, out, obj),
        }
    }
}

pub(crate) fn include_object(query: &Query) -> skiff_apimachinery::table::IncludeObject {
    use skiff_apimachinery::table::IncludeObject;
    match query.get("includeObject") {
        Some("None") => IncludeObject::None,
        Some("Object") => IncludeObject::Object,
        _ => IncludeObject::Metadata,
    }
}

pub(crate) fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}
