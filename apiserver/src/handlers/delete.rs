//! delete and deletecollection, with preconditions, finalizers, propagation policy and
//! graceful pod deletion.

use http::Response;
use serde_json::{Value, json};

use super::Ctx;
use super::read::Selectors;
use super::write::{finalizers, format_time};
use crate::negotiate::Output;
use crate::objects::{meta_str, parse_rv};
use crate::response::{self, Body};
use crate::status::{self, ApiError};

/// DeleteOptions from the body and query.
#[derive(Debug, Default)]
struct DeleteOptions {
    grace_period: Option<i64>,
    propagation: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
}

fn options(ctx: &Ctx<'_>, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let mut opts = DeleteOptions::default();
    if !body.iter().all(u8::is_ascii_whitespace) {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?;
        opts.grace_period = v.get("gracePeriodSeconds").and_then(Value::as_i64);
        opts.propagation = v
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .map(str::to_string);
        if v.get("orphanDependents").and_then(Value::as_bool) == Some(true) {
            opts.propagation.get_or_insert_with(|| "Orphan".into());
        }
        opts.uid = v
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string);
        opts.resource_version = v
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Some(dry) = v.get("dryRun").and_then(Value::as_array)
            && dry.iter().any(|d| d != "All")
        {
            return Err(ApiError::bad_request(
                "Invalid dry run value: supported values: \"All\"",
            ));
        }
    }
    if let Some(g) = ctx.query.number("gracePeriodSeconds")? {
        opts.grace_period = Some(g);
    }
    if let Some(p) = ctx.query.get("propagationPolicy") {
        opts.propagation = Some(p.to_string());
    }
    if ctx.query.flag("orphanDependents") {
        opts.propagation.get_or_insert_with(|| "Orphan".into());
    }
    match opts.propagation.as_deref() {
        None | Some("Orphan" | "Background" | "Foreground") => Ok(opts),
        Some(other) => Err(ApiError::bad_request(format!(
            "propagationPolicy: Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
        ))),
    }
}

fn dry_run(ctx: &Ctx<'_>, body: &[u8]) -> Result<bool, ApiError> {
    if ctx.query.dry_run()? {
        return Ok(true);
    }
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    Ok(v.get("dryRun")
        .and_then(Value::as_array)
        .is_some_and(|d| d.iter().any(|x| x == "All")))
}

pub async fn delete(ctx: &Ctx<'_>, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let opts = options(ctx, body)?;
    let dry = dry_run(ctx, body)?;
    let name = ctx.name()?.to_string();
    let (code, obj) = delete_one(ctx, &name, &opts, dry).await?;
    Ok(match obj {
        Some(obj) => ctx.render(code, &obj),
        None => response::json(code, &status::success_status(ctx.res, &name, None)),
    })
}

/// Delete one object. Returns the status code and the object to answer with (None: a
/// success `Status`).
async fn delete_one(
    ctx: &Ctx<'_>,
    name: &str,
    opts: &DeleteOptions,
    dry: bool,
) -> Result<(u16, Option<Value>), ApiError> {
    let res = ctx.res;
    let objects = &ctx.api.objects;
    let mut attempt = 0;
    loop {
        let old = objects.must_get(res, ctx.ns(), name).await?;
        let rv = parse_rv(meta_str(&old, "resourceVersion").unwrap_or("0"))?;
        if let Some(uid) = &opts.uid {
            let actual = meta_str(&old, "uid").unwrap_or("");
            if uid != actual {
                return Err(ApiError::conflict(
                    res,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                    ),
                ));
            }
        }
        if let Some(want) = &opts.resource_version {
            let actual = meta_str(&old, "resourceVersion").unwrap_or("");
            if want != actual {
                return Err(ApiError::conflict(
                    res,
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {actual}"
                    ),
                ));
            }
        }
        let mut updated = old.clone();
        let now = format_time(ctx.now());
        let is_pod = res.group.is_empty() && res.kind == "Pod";
        let is_namespace = res.group.is_empty() && res.kind == "Namespace";
        // Graceful deletion: a pod on a node gets time to stop; its node agent finishes the
        // delete with a zero grace period.
        let grace = if is_pod {
            let default = old
                .pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(30);
            let g = opts.grace_period.unwrap_or(default).max(0);
            let bound = old
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
            let finished = matches!(
                old.pointer("/status/phase").and_then(Value::as_str),
                Some("Succeeded" | "Failed")
            );
            if bound && !finished { g } else { 0 }
        } else {
            0
        };
        let mut fins = finalizers(&old);
        match opts.propagation.as_deref() {
            Some("Orphan") if !fins.iter().any(|f| f == "orphan") => fins.push("orphan".into()),
            Some("Foreground") if !fins.iter().any(|f| f == "foregroundDeletion") => {
                fins.push("foregroundDeletion".into());
            }
            _ => {}
        }
        let already_deleting = old.pointer("/metadata/deletionTimestamp").is_some();
        let keep = grace > 0 || !fins.is_empty() || is_namespace;
        if keep {
            if !already_deleting {
                updated["metadata"]["deletionTimestamp"] = json!(now);
                updated["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
            } else if grace > 0 {
                // A shorter grace period may replace a longer one.
                let current = old
                    .pointer("/metadata/deletionGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .unwrap_or(i64::MAX);
                if grace < current {
                    updated["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
                }
            }
            if !fins.is_empty() {
                updated["metadata"]["finalizers"] = json!(fins);
            }
            if is_namespace {
                updated["status"]["phase"] = json!("Terminating");
            }
            if dry {
                return Ok((200, Some(updated)));
            }
            if updated == old {
                return Ok((202, Some(old)));
            }
            match objects.update(res, ctx.ns(), name, updated, rv).await {
                Ok(stored) => return Ok((200, Some(stored.object))),
                Err(e) if e.code == 409 && attempt < 8 => attempt += 1,
                Err(e) => return Err(e),
            }
            continue;
        }
        if dry {
            return Ok((200, if is_pod { Some(old) } else { None }));
        }
        match objects.delete(res, ctx.ns(), name, Some(rv)).await {
            Ok(deleted) => {
                let returns_object = is_pod || (res.group.is_empty() && res.kind == "Service");
                return Ok((200, returns_object.then_some(deleted)));
            }
            Err(e) if e.code == 409 && attempt < 8 => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}

pub async fn delete_collection(ctx: &Ctx<'_>, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let opts = options(ctx, body)?;
    let dry = dry_run(ctx, body)?;
    let selectors = Selectors::from_query(ctx)?;
    let (items, page) = ctx.api.objects.list(ctx.res, ctx.ns(), None, None).await?;
    let mut deleted = Vec::new();
    for obj in items.iter().filter(|o| selectors.matches(ctx.res, o)) {
        let Some(name) = meta_str(obj, "name") else {
            continue;
        };
        let sub_ctx_ns = meta_str(obj, "namespace").map(str::to_string);
        let sub = Ctx {
            api: ctx.api,
            res: ctx.res,
            namespace: sub_ctx_ns.or_else(|| ctx.namespace.clone()),
            name: Some(name.to_string()),
            query: ctx.query.clone(),
            headers: ctx.headers.clone(),
            user: ctx.user.clone(),
            output: ctx.output,
        };
        match delete_one(&sub, name, &opts, dry).await {
            Ok((_, Some(o))) => deleted.push(o),
            Ok((_, None)) => deleted.push(obj.clone()),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let list = json!({
        "kind": ctx.res.list_kind(),
        "apiVersion": ctx.res.api_version(),
        "metadata": {"resourceVersion": page.revision.to_string()},
        "items": deleted,
    });
    let out = if ctx.output == Output::Yaml {
        Output::Yaml
    } else {
        Output::Json
    };
    Ok(response::object(200, out, &list))
}
