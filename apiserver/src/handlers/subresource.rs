//! Subresources: `status`, `scale` (an `autoscaling/v1` Scale view), `binding`, `finalize`,
//! `log` (proxied to the agent) and `token` (`tokenrequest`).

use http::Response;
use serde_json::{Value, json};
use skiff_apimachinery::Subresource;
use skiff_apimachinery::patch::{self, PatchType};

use super::Ctx;
use super::write::{self, format_time};
use crate::negotiate::{self, Output};
use crate::objects::{meta_str, parse_rv};
use crate::request::Verb;
use crate::response::{self, Body};
use crate::status::{ApiError, success_status};

pub async fn handle(
    ctx: &Ctx<'_>,
    sub: Subresource,
    verb: Verb,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    match (sub, verb) {
        (Subresource::Status, Verb::Get) => super::read::get(ctx).await,
        (Subresource::Status, Verb::Update) => write::update(ctx, body, Some(sub)).await,
        (Subresource::Status, Verb::Patch) => write::patch(ctx, body, Some(sub)).await,
        (Subresource::Finalize, Verb::Update) => write::update(ctx, body, Some(sub)).await,
        (Subresource::Scale, Verb::Get) => {
            let obj = ctx
                .api
                .objects
                .must_get(ctx.res, ctx.ns(), ctx.name()?)
                .await?;
            Ok(render(ctx, 200, &scale_of(&obj)))
        }
        (Subresource::Scale, Verb::Update | Verb::Patch) => scale_write(ctx, verb, body).await,
        (Subresource::Binding, Verb::Create) => bind(ctx, body).await,
        (Subresource::Log, Verb::Get) => crate::kubelet::log(ctx).await,
        (Subresource::Token, Verb::Create) => crate::tokenrequest::create(ctx, body).await,
        (sub, verb) => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!(
                "the server does not allow this method on the requested resource ({} {}/{})",
                verb.as_str(),
                ctx.res.plural,
                sub.name()
            ),
        )),
    }
}

fn render(ctx: &Ctx<'_>, code: u16, v: &Value) -> Response<Body> {
    let out = if ctx.output == Output::Yaml {
        Output::Yaml
    } else {
        Output::Json
    };
    response::object(code, out, v)
}

/// A label selector as the string form Scale's `status.selector` carries.
fn selector_string(sel: Option<&Value>) -> String {
    let Some(sel) = sel else {
        return String::new();
    };
    let mut parts: Vec<String> = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e["key"].as_str().unwrap_or("");
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        parts.push(match e["operator"].as_str().unwrap_or("") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => continue,
        });
    }
    parts.sort();
    parts.join(",")
}

fn scale_of(obj: &Value) -> Value {
    let meta = &obj["metadata"];
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector_string(obj.pointer("/spec/selector")),
        },
    })
}

async fn scale_write(ctx: &Ctx<'_>, verb: Verb, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let name = ctx.name()?.to_string();
    let mut attempt = 0;
    loop {
        let old = ctx.api.objects.must_get(ctx.res, ctx.ns(), &name).await?;
        let old_rv = parse_rv(meta_str(&old, "resourceVersion").unwrap_or("0"))?;
        let current = scale_of(&old);
        let wanted = if verb == Verb::Patch {
            let ct = ctx
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let pt = PatchType::from_content_type(ct)
                .ok_or_else(|| ApiError::unsupported_media_type(ct))?;
            let patched = match pt {
                PatchType::Json => patch::json_patch(&current, body),
                PatchType::Merge | PatchType::StrategicMerge => patch::merge_patch(&current, body),
                PatchType::Apply => {
                    return Err(ApiError::bad_request(
                        "server-side apply is not supported on the scale subresource",
                    ));
                }
            }
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
            if patched.pointer("/metadata/resourceVersion")
                != current.pointer("/metadata/resourceVersion")
            {
                return Err(ApiError::modified(ctx.res, &name));
            }
            patched
        } else {
            let v = negotiate::parse_object(&negotiate::content_type(&ctx.headers), body)?;
            if let Some(rv) = v
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                && !rv.is_empty()
                && rv != meta_str(&old, "resourceVersion").unwrap_or("")
            {
                return Err(ApiError::modified(ctx.res, &name));
            }
            v
        };
        let replicas = match wanted.pointer("/spec/replicas") {
            Some(Value::Number(n)) => n.as_i64().filter(|r| *r >= 0).ok_or_else(|| {
                ApiError::invalid(
                    "Scale",
                    ctx.res,
                    &name,
                    vec![crate::status::StatusCause {
                        reason: "FieldValueInvalid".into(),
                        message: format!("Invalid value: {n}: must be greater than or equal to 0"),
                        field: "spec.replicas".into(),
                    }],
                )
            })?,
            None | Some(Value::Null) => 0,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "Scale in version \"v1\" cannot be handled as a Scale: spec.replicas must be an integer, got {other}"
                )));
            }
        };
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(replicas);
        match write::write_update(ctx, &old, old_rv, new, None).await {
            Ok(stored) => return Ok(render(ctx, 200, &scale_of(&stored))),
            Err(e) if e.code == 409 && e.reason == "Conflict" && attempt < 8 => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}

/// `POST pods/{name}/binding`: assign a pod to a node, once.
async fn bind(ctx: &Ctx<'_>, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let name = ctx.name()?.to_string();
    let binding = negotiate::parse_object(&negotiate::content_type(&ctx.headers), body)?;
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("binding target.name is required"))?
        .to_string();
    if let Some(kind) = binding.pointer("/target/kind").and_then(Value::as_str)
        && !kind.is_empty()
        && kind != "Node"
    {
        return Err(ApiError::bad_request(format!(
            "binding target kind must be Node, got {kind}"
        )));
    }
    loop {
        let old = ctx.api.objects.must_get(ctx.res, ctx.ns(), &name).await?;
        let rv = parse_rv(meta_str(&old, "resourceVersion").unwrap_or("0"))?;
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(ApiError::conflict(
                ctx.res,
                &name,
                "pod is being deleted, cannot be assigned to a host",
            ));
        }
        if let Some(current) = old
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            return Err(ApiError::conflict(
                ctx.res,
                &name,
                &format!("pod {name} is already assigned to node \"{current}\""),
            ));
        }
        let mut new = old.clone();
        new["spec"]["nodeName"] = json!(node);
        let mut conditions: Vec<Value> = new
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        conditions.retain(|c| c["type"] != "PodScheduled");
        conditions.push(json!({
            "type": "PodScheduled",
            "status": "True",
            "lastProbeTime": null,
            "lastTransitionTime": format_time(ctx.now()),
        }));
        new["status"]["conditions"] = json!(conditions);
        if ctx.query.dry_run()? {
            return Ok(response::json(201, &success_status(ctx.res, &name, None)));
        }
        match ctx
            .api
            .objects
            .update(ctx.res, ctx.ns(), &name, new, rv)
            .await
        {
            Ok(_) => {
                let mut status = success_status(ctx.res, &name, None);
                status["code"] = json!(201);
                return Ok(response::json(201, &status));
            }
            Err(e) if e.code == 409 => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_strings() {
        let sel = json!({"matchLabels": {"app": "web", "tier": "fe"}, "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["a", "b"]},
            {"key": "x", "operator": "DoesNotExist"}
        ]});
        assert_eq!(
            selector_string(Some(&sel)),
            "!x,app=web,env in (a,b),tier=fe"
        );
        assert_eq!(selector_string(None), "");
    }

    #[test]
    fn scale_view_of_a_deployment() {
        let d = json!({"metadata": {"name": "web", "namespace": "default", "resourceVersion": "7"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}},
            "status": {"replicas": 2}});
        let s = scale_of(&d);
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["status"]["replicas"], 2);
        assert_eq!(s["status"]["selector"], "app=web");
        assert_eq!(s["metadata"]["resourceVersion"], "7");
    }
}
