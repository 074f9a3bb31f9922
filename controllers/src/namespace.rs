//! Namespace controller and service accounts.
//!
//! A live namespace gets its `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap
//! (the cluster CA, for pods that talk to the API). A namespace being deleted has everything
//! in it deleted (every namespaced resource the API's discovery lists), and once nothing is left
//! its `kubernetes` finalizer is removed through `namespaces/{name}/finalize`, after which the
//! API server removes it.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::discovery::{Discovery, Scope, verbs};
use kube::runtime::controller::Action;
use serde_json::json;

use crate::runtime::{Ctx, Error};

pub async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let name = ns.name_any();
    if ns.metadata.deletion_timestamp.is_none() {
        ensure_default_service_account(&ctx, &name).await?;
        if let Some(ca) = &ctx.opts.root_ca {
            ensure_root_ca(&ctx, &name, ca).await?;
        }
        return Ok(Action::requeue(Duration::from_secs(60)));
    }
    let remaining = empty(&ctx, &name).await?;
    if remaining > 0 {
        tracing::debug!(namespace = %name, remaining, "namespace still has contents");
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    // Finalizing with no finalizers left is what lets the API server remove the namespace.
    {
        let mut body =
            serde_json::to_value(ns.as_ref()).map_err(|e| Error::Invalid(e.to_string()))?;
        body["spec"]["finalizers"] = json!([]);
        let req = http::Request::put(format!("/api/v1/namespaces/{name}/finalize"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(&body).unwrap_or_default())
            .map_err(|e| Error::Invalid(e.to_string()))?;
        match ctx.client.request_text(req).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Action::requeue(Duration::from_secs(1)))
}

async fn ensure_default_service_account(ctx: &Ctx, ns: &str) -> Result<(), Error> {
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), ns);
    if api.get_opt("default").await?.is_some() {
        return Ok(());
    }
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some("default".into()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    match api.create(&PostParams::default(), &sa).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 403 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// `kube-root-ca.crt` with `ca.crt` = the cluster CA, created or put back to it.
async fn ensure_root_ca(ctx: &Ctx, ns: &str, ca: &str) -> Result<(), Error> {
    const NAME: &str = "kube-root-ca.crt";
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let want = std::collections::BTreeMap::from([("ca.crt".to_string(), ca.to_string())]);
    let result = match api.get_opt(NAME).await? {
        Some(cm) if cm.data.as_ref() == Some(&want) => return Ok(()),
        Some(mut cm) => {
            cm.data = Some(want);
            api.replace(NAME, &PostParams::default(), &cm).await
        }
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(NAME.into()),
                    annotations: Some(
                        [(
                            "kubernetes.io/description".to_string(),
                            "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.".to_string(),
                        )]
                        .into(),
                    ),
                    ..ObjectMeta::default()
                },
                data: Some(want),
                ..ConfigMap::default()
            };
            api.create(&PostParams::default(), &cm).await
        }
    };
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 403 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Delete everything in `ns`; returns how many objects were still there.
async fn empty(ctx: &Ctx, ns: &str) -> Result<usize, Error> {
    let discovery = Discovery::new(ctx.client.clone()).run().await?;
    let mut remaining = 0usize;
    for group in discovery.groups() {
        for (res, caps) in group.recommended_resources() {
            if caps.scope != Scope::Namespaced
                || !caps.supports_operation(verbs::LIST)
                || !caps.supports_operation(verbs::DELETE)
            {
                continue;
            }
            // Events go with their namespace too, but never block it.
            let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &res);
            let list = match api.list_metadata(&ListParams::default()).await {
                Ok(l) => l,
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 405 => continue,
                Err(e) => return Err(e.into()),
            };
            for obj in list.items {
                let name = obj.metadata.name.clone().unwrap_or_default();
                remaining += 1;
                if obj.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                match api.delete(&name, &DeleteParams::background()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(remaining)
}
