//! Namespace lifecycle: a namespace being deleted has its contents removed, then its
//! `kubernetes` finalizer dropped, then it is deleted itself.
//!
//! This runs inside the API server over its own store until the controller manager (its own
//! issue) takes namespace deletion over as an API client.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::handlers::Api;
use crate::objects::{meta_str, parse_rv};
use crate::status::ApiError;

const PERIOD: Duration = Duration::from_millis(500);

pub async fn run(api: Arc<Api>) {
    loop {
        if let Err(e) = sweep(&api).await {
            tracing::warn!(error = %e, "namespace cleanup failed; retrying");
        }
        tokio::time::sleep(PERIOD).await;
    }
}

async fn sweep(api: &Api) -> Result<(), ApiError> {
    let Some(ns_res) = api.registry.get("", "v1", "namespaces") else {
        return Ok(());
    };
    let (namespaces, _) = api.objects.list(ns_res, None, None, None).await?;
    for ns in namespaces {
        if ns.pointer("/metadata/deletionTimestamp").is_none() {
            continue;
        }
        let Some(name) = meta_str(&ns, "name").map(str::to_string) else {
            continue;
        };
        if empty_namespace(api, &name).await? {
            finish(api, &name).await?;
        }
    }
    Ok(())
}

/// Delete what is left in `ns`; true when nothing remains.
async fn empty_namespace(api: &Api, ns: &str) -> Result<bool, ApiError> {
    let mut remaining = 0usize;
    for res in api.registry.all().iter().filter(|r| r.namespaced()) {
        let (items, _) = api.objects.list(res, Some(ns), None, None).await?;
        for obj in items {
            remaining += 1;
            let Some(name) = meta_str(&obj, "name") else {
                continue;
            };
            let finalizers = obj
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty());
            if finalizers {
                if obj.pointer("/metadata/deletionTimestamp").is_none() {
                    let rv = parse_rv(meta_str(&obj, "resourceVersion").unwrap_or("0"))?;
                    let mut marked = obj.clone();
                    marked["metadata"]["deletionTimestamp"] = json!(
                        jiff::Timestamp::now()
                            .strftime("%Y-%m-%dT%H:%M:%SZ")
                            .to_string()
                    );
                    marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                    let _ = api.objects.update(res, Some(ns), name, &marked, rv).await;
                }
                continue;
            }
            match api.objects.delete(res, Some(ns), name, None).await {
                Ok(_) => remaining -= 1,
                Err(e) if e.code == 404 => remaining -= 1,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(remaining == 0)
}

async fn finish(api: &Api, name: &str) -> Result<(), ApiError> {
    let Some(ns_res) = api.registry.get("", "v1", "namespaces") else {
        return Ok(());
    };
    let Some(ns) = api.objects.get(ns_res, None, name).await? else {
        return Ok(());
    };
    let rv = parse_rv(meta_str(&ns, "resourceVersion").unwrap_or("0"))?;
    let spec_finalizers = ns
        .pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    if spec_finalizers {
        let mut updated = ns.clone();
        let kept: Vec<Value> = ns["spec"]["finalizers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f.as_str() != Some("kubernetes"))
            .cloned()
            .collect();
        updated["spec"]["finalizers"] = Value::Array(kept);
        api.objects.update(ns_res, None, name, &updated, rv).await?;
        return Ok(());
    }
    let meta_finalizers = ns
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    if !meta_finalizers {
        match api.objects.delete(ns_res, None, name, Some(rv)).await {
            Ok(_) => {}
            Err(e) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
