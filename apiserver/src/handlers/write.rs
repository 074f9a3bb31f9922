//! create, update and patch: one pipeline from a request body to a stored object.
//!
//! decode (unknown fields per `fieldValidation`) → system metadata → server-set fields →
//! defaults → validation → managed fields → store (compare-and-swap, retried for writes that
//! named no resourceVersion).

use http::Response;
use serde_json::{Map, Value, json};
use skiff_apimachinery::patch::{self, ApplyError, CachedSchemaMeta, PatchError, PatchType};
use skiff_apimachinery::validation::{self, Cause};
use skiff_apimachinery::{Resource, Subresource, defaults, schema};

use super::Ctx;
use crate::kinds;
use crate::negotiate;
use crate::objects::{self, Written, meta_str, parse_rv};
use crate::response::{self, Body};
use crate::services;
use crate::status::{ApiError, StatusCause};

/// How many times a write that named no resourceVersion is retried on a conflict.
const MAX_RETRIES: usize = 8;

/// Decode through the kind's schema and apply `fieldValidation`. Returns the object and the
/// warnings to send.
fn decode(ctx: &Ctx<'_>, input: &Value) -> Result<(Value, Vec<String>), ApiError> {
    check_type(ctx.res, input)?;
    let decoded = ctx.res.decode(input).map_err(|e| {
        ApiError::bad_request(format!(
            "{kind} in version \"{v}\" cannot be handled as a {kind}: {e}",
            kind = ctx.res.kind,
            v = ctx.res.version
        ))
    })?;
    let unknown: Vec<String> = decoded
        .unknown_fields
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    match ctx.query.get("fieldValidation").unwrap_or("Warn") {
        "Strict" if !unknown.is_empty() => Err(ApiError::bad_request(format!(
            "{kind} in version \"{v}\" cannot be handled as a {kind}: strict decoding error: {}",
            unknown.join(", "),
            kind = ctx.res.kind,
            v = ctx.res.version
        ))),
        "Strict" | "Warn" => Ok((decoded.object, unknown)),
        "Ignore" => Ok((decoded.object, Vec::new())),
        other => Err(ApiError::bad_request(format!(
            "fieldValidation must be one of \"Ignore\", \"Warn\" or \"Strict\", got {other:?}"
        ))),
    }
}

/// Refuse a body that names another kind or API version.
fn check_type(res: &Resource, input: &Value) -> Result<(), ApiError> {
    if let Some(av) = input.get("apiVersion").and_then(Value::as_str)
        && av != res.api_version()
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            res.api_version()
        )));
    }
    if let Some(kind) = input.get("kind").and_then(Value::as_str)
        && kind != res.kind
    {
        return Err(ApiError::bad_request(format!(
            "{kind} in version \"{}\" cannot be handled as a {}: the kind in the data does not match the kind of the resource",
            res.version, res.kind
        )));
    }
    Ok(())
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata was just made an object")
}

fn invalid(ctx: &Ctx<'_>, name: &str, causes: Vec<Cause>) -> ApiError {
    let causes = causes
        .into_iter()
        .map(|c| StatusCause {
            reason: c.kind.reason().to_string(),
            message: c.message,
            field: c.field,
        })
        .collect();
    ApiError::invalid(ctx.res.kind, ctx.res, name, causes)
}

/// Random suffix for `generateName`, from the same alphabet Kubernetes uses.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes[..5]
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

fn patch_meta(res: &Resource) -> CachedSchemaMeta {
    CachedSchemaMeta::new(schema::definitions(), &schema::definition_name(res))
}

/// What a create needs to know of its namespace; the rest of the stored object is skipped
/// unparsed.
#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct NamespaceState {
    metadata: NamespaceMeta,
    status: NamespaceStatus,
}

#[derive(Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct NamespaceMeta {
    deletion_timestamp: Option<serde::de::IgnoredAny>,
}

#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct NamespaceStatus {
    phase: Option<String>,
}

/// The namespace must exist and not be terminating before anything is created in it.
async fn check_namespace(ctx: &Ctx<'_>, ns: &str) -> Result<(), ApiError> {
    let objects = &ctx.api.objects;
    if objects.namespace_known_active(ns) {
        return Ok(());
    }
    let generation = objects.namespace_generation();
    let ns_res = ctx
        .api
        .registry
        .get("", "v1", "namespaces")
        .ok_or_else(|| ApiError::internal("namespaces are not registered"))?;
    let Some(kv) = ctx.api.objects.get_raw(ns_res, None, ns).await? else {
        return Err(ApiError::not_found(ns_res, ns));
    };
    let state: NamespaceState = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored object {} is corrupt: {e}", kv.key)))?;
    if state.metadata.deletion_timestamp.is_some()
        || state.status.phase.as_deref() == Some("Terminating")
    {
        let mut e = ApiError::forbidden(format!(
            "unable to create new content in namespace {ns} because it is being terminated"
        ));
        e.details = Some(
            json!({"name": ns, "kind": "namespaces", "causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]}),
        );
        return Err(e);
    }
    objects.remember_active_namespace(ns, generation);
    Ok(())
}

/// Fill in namespace and name from the request, refusing mismatches.
fn bind_identity(ctx: &Ctx<'_>, obj: &mut Value) -> Result<(), ApiError> {
    let res = ctx.res;
    let path_ns = ctx.ns().map(str::to_string);
    let path_name = ctx.name.clone();
    let meta = meta_mut(obj);
    if res.namespaced() {
        let ns = path_ns.ok_or_else(|| {
            ApiError::bad_request(format!(
                "the namespace of the request is required for {}",
                res.plural
            ))
        })?;
        match meta.get("namespace").and_then(Value::as_str) {
            Some(given) if !given.is_empty() && given != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {
                meta.insert("namespace".into(), json!(ns));
            }
        }
    } else {
        meta.remove("namespace");
    }
    if let Some(name) = path_name {
        match meta.get("name").and_then(Value::as_str) {
            Some(given) if !given.is_empty() && given != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({given}) does not match the name on the URL ({name})"
                )));
            }
            _ => {
                meta.insert("name".into(), json!(name));
            }
        }
    }
    Ok(())
}

pub async fn create(ctx: &Ctx<'_>, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let input = negotiate::parse_object(&negotiate::content_type(&ctx.headers), body)?;
    let (obj, warnings) = decode(ctx, &input)?;
    let created = create_object(ctx, obj).await?;
    Ok(response::with_warnings(
        ctx.render_written(201, created),
        &warnings,
    ))
}

/// The create pipeline for a decoded object (also used by server-side apply on a new name).
pub(super) async fn create_object(ctx: &Ctx<'_>, mut obj: Value) -> Result<Written, ApiError> {
    let res = ctx.res;
    bind_identity(ctx, &mut obj)?;
    let now = ctx.now();
    {
        let meta = meta_mut(&mut obj);
        let has_name = meta
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        if !has_name {
            let generate = meta
                .get("generateName")
                .and_then(Value::as_str)
                .filter(|g| !g.is_empty())
                .map(str::to_string);
            match generate {
                Some(prefix) => {
                    meta.insert("name".into(), json!(format!("{prefix}{}", random_suffix())));
                }
                None => {
                    return Err(ApiError::invalid(
                        res.kind,
                        res,
                        "",
                        vec![StatusCause {
                            reason: "FieldValueRequired".into(),
                            message: "Required value: name or generateName is required".into(),
                            field: "metadata.name".into(),
                        }],
                    ));
                }
            }
        }
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(format_time(now)));
        meta.remove("resourceVersion");
        meta.remove("deletionTimestamp");
        meta.remove("deletionGracePeriodSeconds");
        meta.remove("selfLink");
        if kinds::tracks_generation(res) {
            meta.insert("generation".into(), json!(1));
        } else {
            meta.remove("generation");
        }
    }
    let name = meta_str(&obj, "name").unwrap_or_default().to_string();
    let name_problems = validation::validate_name(res, &name);
    if !name_problems.is_empty() {
        return Err(ApiError::invalid(
            res.kind,
            res,
            &name,
            vec![StatusCause {
                reason: "FieldValueInvalid".into(),
                message: format!("Invalid value: \"{name}\": {}", name_problems.join(", ")),
                field: "metadata.name".into(),
            }],
        ));
    }
    if let Some(ns) = ctx.ns() {
        check_namespace(ctx, ns).await?;
    }
    if let Some(status) = kinds::initial_status(res, &obj) {
        obj["status"] = status;
    }
    defaults::apply(res, &mut obj);
    if res.group == "batch" && res.kind == "Job" {
        defaults::job_selector(&mut obj);
    }
    if res.group.is_empty() && res.kind == "Pod" {
        obj["status"]["qosClass"] = json!(kinds::qos_class(&obj));
    }
    let causes = validation::validate_create(res, &obj);
    if !causes.is_empty() {
        return Err(invalid(ctx, &name, causes));
    }
    let manager = ctx.manager();
    if !obj
        .pointer("/metadata/managedFields")
        .is_some_and(Value::is_array)
    {
        patch::track_update(None, &mut obj, &manager, None, &patch_meta(res), now);
    }
    // Mutating admission runs after managed fields are set, so its fields have no manager.
    if res.group.is_empty() && res.kind == "Pod" {
        crate::admission::admit_pod_create(ctx.api, ctx.ns().unwrap_or("default"), &name, &mut obj)
            .await?;
    }
    if res.kind == "CertificateSigningRequest" {
        crate::kubelet::sign_on_create(ctx.api.kubelet.as_ref(), &ctx.user, &mut obj)?;
    }
    let dry_run = ctx.query.dry_run()?;
    let _alloc_guard = if res.group.is_empty() && res.kind == "Service" {
        let guard = ctx.api.alloc_lock.lock().await;
        services::allocate(ctx.api, &mut obj, None).await?;
        Some(guard)
    } else if res.group.is_empty() && res.kind == "Node" {
        let guard = ctx.api.alloc_lock.lock().await;
        crate::nodes::allocate_pod_cidr(ctx.api, &mut obj).await?;
        Some(guard)
    } else {
        None
    };
    if dry_run {
        return Written::unstored(obj);
    }
    ctx.api.objects.create(res, ctx.ns(), &name, obj).await
}

/// `PUT`: replace an object (or its status/finalizers through `sub`).
pub async fn update(
    ctx: &Ctx<'_>,
    body: &[u8],
    sub: Option<Subresource>,
) -> Result<Response<Body>, ApiError> {
    let input = negotiate::parse_object(&negotiate::content_type(&ctx.headers), body)?;
    let (mut obj, warnings) = decode(ctx, &input)?;
    bind_identity(ctx, &mut obj)?;
    let precondition = match meta_str(&obj, "resourceVersion").filter(|s| !s.is_empty()) {
        Some(rv) => Some(parse_rv(rv)?),
        None => None,
    };
    let name = ctx.name()?.to_string();
    let mut attempt = 0;
    loop {
        let old = ctx.api.objects.must_get(ctx.res, ctx.ns(), &name).await?;
        let old_rv = parse_rv(meta_str(&old, "resourceVersion").unwrap_or("0"))?;
        if precondition.is_some_and(|rv| rv != old_rv) {
            return Err(ApiError::modified(ctx.res, &name));
        }
        match write_update(ctx, &old, old_rv, obj.clone(), sub).await {
            Err(e) if e.code == 409 && e.reason == "Conflict" && precondition.is_none() => {
                attempt += 1;
                if attempt >= MAX_RETRIES {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
            Ok(stored) => {
                return Ok(response::with_warnings(ctx.render(200, &stored), &warnings));
            }
        }
    }
}

/// `PATCH`: apply a patch of any of the four types to the current object.
pub async fn patch(
    ctx: &Ctx<'_>,
    body: &[u8],
    sub: Option<Subresource>,
) -> Result<Response<Body>, ApiError> {
    let ct = ctx
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let patch_type = PatchType::from_content_type(ct)
        .ok_or_else(|| ApiError::unsupported_media_type(if ct.is_empty() { "none" } else { ct }))?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the patch body is empty"));
    }
    let name = ctx.name()?.to_string();
    let force = ctx.query.flag("force");
    if patch_type == PatchType::Apply && ctx.query.get("fieldManager").is_none() {
        return Err(ApiError::bad_request(
            "PATCH requests of type apply must set the fieldManager parameter",
        ));
    }
    if patch_type != PatchType::Apply && ctx.query.get("force").is_some() {
        return Err(ApiError::bad_request(
            "force is only allowed for apply patches",
        ));
    }
    let meta = patch_meta(ctx.res);
    let mut attempt = 0;
    loop {
        let old = ctx.api.objects.get(ctx.res, ctx.ns(), &name).await?;
        let Some(old) = old else {
            if patch_type == PatchType::Apply && sub.is_none() {
                let applied = parse_apply_body(body)?;
                let merged = patch::apply(
                    None,
                    &applied,
                    &ctx.manager(),
                    force,
                    None,
                    &meta,
                    ctx.now(),
                )
                .map_err(|e| apply_error(ctx, &name, e))?;
                let (obj, warnings) = decode(ctx, &merged)?;
                let created = create_object(ctx, obj).await?;
                return Ok(response::with_warnings(
                    ctx.render_written(201, created),
                    &warnings,
                ));
            }
            return Err(ApiError::not_found(ctx.res, &name));
        };
        let old_rv_str = meta_str(&old, "resourceVersion").unwrap_or("0").to_string();
        let old_rv = parse_rv(&old_rv_str)?;
        let patched = match patch_type {
            PatchType::Json => patch::json_patch(&old, body),
            PatchType::Merge => patch::merge_patch(&old, body),
            PatchType::StrategicMerge => patch::strategic_merge_patch(&old, body, &meta),
            PatchType::Apply => {
                let applied = parse_apply_body(body)?;
                let out = patch::apply(
                    Some(&old),
                    &applied,
                    &ctx.manager(),
                    force,
                    sub.map(Subresource::name),
                    &meta,
                    ctx.now(),
                )
                .map_err(|e| apply_error(ctx, &name, e))?;
                Ok(out)
            }
        }
        .map_err(|e| patch_error(ctx, &name, e))?;
        let explicit_rv = meta_str(&patched, "resourceVersion")
            .filter(|rv| *rv != old_rv_str)
            .map(str::to_string);
        if explicit_rv.is_some() {
            return Err(ApiError::modified(ctx.res, &name));
        }
        let (obj, warnings) = decode(ctx, &patched)?;
        let track = patch_type != PatchType::Apply;
        match write_update_tracked(ctx, &old, old_rv, obj, sub, track).await {
            Err(e) if e.code == 409 && e.reason == "Conflict" => {
                attempt += 1;
                if attempt >= MAX_RETRIES {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
            Ok(stored) => {
                return Ok(response::with_warnings(ctx.render(200, &stored), &warnings));
            }
        }
    }
}

fn parse_apply_body(body: &[u8]) -> Result<Value, ApiError> {
    patch::decode_apply_patch(body).map_err(|e| ApiError::bad_request(e.to_string()))
}

fn patch_error(ctx: &Ctx<'_>, name: &str, e: PatchError) -> ApiError {
    match e {
        PatchError::Malformed(m) => ApiError::bad_request(m),
        PatchError::Invalid(m) => ApiError::invalid(
            ctx.res.kind,
            ctx.res,
            name,
            vec![StatusCause {
                reason: "FieldValueInvalid".into(),
                message: m,
                field: String::new(),
            }],
        ),
    }
}

fn apply_error(ctx: &Ctx<'_>, name: &str, e: ApplyError) -> ApiError {
    let message = e.to_string();
    match e {
        ApplyError::Malformed(m) => ApiError::bad_request(m),
        ApplyError::Conflicts(conflicts) => {
            let mut err = ApiError::conflict(ctx.res, name, "");
            err.message = message;
            err.causes = conflicts
                .iter()
                .map(|c| StatusCause {
                    reason: "FieldManagerConflict".into(),
                    message: c.message(),
                    field: c.field.clone(),
                })
                .collect();
            err
        }
    }
}

pub(super) async fn write_update(
    ctx: &Ctx<'_>,
    old: &Value,
    old_rv: u64,
    new: Value,
    sub: Option<Subresource>,
) -> Result<Value, ApiError> {
    write_update_tracked(ctx, old, old_rv, new, sub, true).await
}

/// Merge system fields from `old` into `new`, default, validate and store with CAS.
async fn write_update_tracked(
    ctx: &Ctx<'_>,
    old: &Value,
    old_rv: u64,
    mut new: Value,
    sub: Option<Subresource>,
    track: bool,
) -> Result<Value, ApiError> {
    let res = ctx.res;
    let name = ctx.name()?.to_string();
    new = match sub {
        Some(Subresource::Status) => {
            let mut merged = old.clone();
            merged["status"] = new.get("status").cloned().unwrap_or_else(|| json!({}));
            merged
        }
        Some(Subresource::Finalize) => {
            let mut merged = old.clone();
            merged["spec"]["finalizers"] = new
                .pointer("/spec/finalizers")
                .cloned()
                .unwrap_or_else(|| json!([]));
            merged
        }
        _ => {
            if kinds::status_is_subresource(res) {
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Some(m) = new.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
            new
        }
    };
    {
        let old_meta = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
        let meta = meta_mut(&mut new);
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "namespace",
            "name",
            "generation",
        ] {
            match old_meta.get(field) {
                Some(v) => {
                    meta.insert(field.into(), v.clone());
                }
                None => {
                    meta.remove(field);
                }
            }
        }
        if !meta.contains_key("managedFields")
            && let Some(mf) = old_meta.get("managedFields")
        {
            meta.insert("managedFields".into(), mf.clone());
        }
        meta.remove("selfLink");
    }
    defaults::apply(res, &mut new);
    if kinds::tracks_generation(res) && kinds::spec_part(old) != kinds::spec_part(&new) {
        let generation = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        meta_mut(&mut new).insert("generation".into(), json!(generation + 1));
    }
    // Objects being deleted may lose finalizers but not gain them.
    if old.pointer("/metadata/deletionTimestamp").is_some() {
        let old_f = finalizers(old);
        let added: Vec<String> = finalizers(&new)
            .into_iter()
            .filter(|f| !old_f.contains(f))
            .collect();
        if !added.is_empty() {
            return Err(ApiError::forbidden(format!(
                "no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
            )));
        }
    }
    let causes = validation::validate_update(res, old, &new);
    if !causes.is_empty() {
        return Err(invalid(ctx, &name, causes));
    }
    if track {
        let sub_name = sub.map(Subresource::name);
        patch::track_update(
            Some(old),
            &mut new,
            &ctx.manager(),
            sub_name,
            &patch_meta(res),
            ctx.now(),
        );
    }
    let _alloc_guard = if res.group.is_empty() && res.kind == "Service" && sub.is_none() {
        let guard = ctx.api.alloc_lock.lock().await;
        services::allocate(ctx.api, &mut new, Some(old)).await?;
        Some(guard)
    } else {
        None
    };
    if ctx.query.dry_run()? {
        let mut out = new;
        objects::set_resource_version(&mut out, old_rv);
        return Ok(out);
    }
    // An object being deleted whose last finalizer is gone is removed now.
    if new.pointer("/metadata/deletionTimestamp").is_some()
        && finalizers(&new).is_empty()
        && !(res.group.is_empty() && res.kind == "Pod")
    {
        return ctx
            .api
            .objects
            .delete(res, ctx.ns(), &name, Some(old_rv))
            .await;
    }
    if old_unchanged(old, &new) {
        return Ok(old.clone());
    }
    ctx.api
        .objects
        .update(res, ctx.ns(), &name, new, old_rv)
        .await
        .map(|w| w.object)
}

/// A write that changes nothing keeps the old resourceVersion, as in Kubernetes.
fn old_unchanged(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            m.remove("managedFields");
        }
        v
    };
    strip(old) == strip(new)
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// RFC 3339 with seconds precision and `Z`, as Kubernetes writes `metav1.Time`.
pub fn format_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}
