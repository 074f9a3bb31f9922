//! ControllerRevisions for StatefulSets and DaemonSets: one per distinct pod template, named
//! `{owner}-{hash}`, numbered in order of use (`kubectl rollout history` lists them and
//! `rollout undo` copies one back), trimmed to `revisionHistoryLimit`.

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::json;
use std::collections::BTreeMap;

use crate::runtime::{Ctx, Error};
use crate::util;

pub const HASH_LABEL: &str = "controller-revision-hash";

/// The revision data Kubernetes stores: a patch that replaces the pod template.
fn data_of(template: &PodTemplateSpec) -> serde_json::Value {
    let mut t = serde_json::to_value(template).unwrap_or_default();
    if let Some(m) = t.as_object_mut() {
        m.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// The pod template stored in a revision.
#[cfg(test)]
pub fn template_of(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.pointer("/spec/template")?.clone();
    if let Some(m) = t.as_object_mut() {
        m.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

/// Revisions owned by `owner`, oldest first.
pub fn owned<K: Resource<DynamicType = ()>>(ctx: &Ctx, owner: &K) -> Vec<ControllerRevision> {
    let uid = util::uid(owner.meta()).to_string();
    let ns = owner.meta().namespace.clone();
    let mut revs: Vec<ControllerRevision> = ctx
        .stores
        .revisions
        .state_filter(|r| {
            r.metadata.namespace == ns
                && util::controller_of(&r.metadata).is_some_and(|o| o.uid == uid)
        })
        .into_iter()
        .map(|r| (*r).clone())
        .collect();
    revs.sort_by_key(|r| r.revision);
    revs
}

/// Make sure the newest revision holds `template`; returns its name (the hash label value) and
/// the full list.
pub async fn sync<K: Resource<DynamicType = ()>>(
    ctx: &Ctx,
    owner: &K,
    template: &PodTemplateSpec,
    selector_labels: &BTreeMap<String, String>,
    history_limit: i32,
    keep: &[String],
) -> Result<String, Error> {
    let ns = owner.meta().namespace.clone().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let mut revs = owned(ctx, owner);
    let data = data_of(template);
    let max = revs.iter().map(|r| r.revision).max().unwrap_or(0);
    let name = match revs
        .iter()
        .find(|r| r.data.as_ref().map(|d| &d.0) == Some(&data))
    {
        Some(r) => {
            let n = r.name_any();
            if r.revision != max {
                api.patch(
                    &n,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"revision": max + 1})),
                )
                .await?;
            }
            n
        }
        None => {
            let hash = util::hash_of(template, None);
            let n = format!("{}-{hash}", owner.meta().name.as_deref().unwrap_or(""));
            let mut labels = selector_labels.clone();
            labels.insert(HASH_LABEL.into(), hash);
            let rev = ControllerRevision {
                metadata: ObjectMeta {
                    name: Some(n.clone()),
                    namespace: Some(ns.clone()),
                    labels: Some(labels),
                    owner_references: Some(vec![util::owner_ref(owner)]),
                    ..ObjectMeta::default()
                },
                data: Some(RawExtension(data)),
                revision: max + 1,
            };
            match api.create(&PostParams::default(), &rev).await {
                Ok(created) => revs.push(created),
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
            n
        }
    };
    // Trim history, never the revisions in use.
    let limit = usize::try_from(history_limit.max(0)).unwrap_or(10);
    let removable: Vec<&ControllerRevision> = revs
        .iter()
        .filter(|r| r.name_any() != name && !keep.contains(&r.name_any()))
        .collect();
    if removable.len() > limit {
        for r in removable.iter().take(removable.len() - limit) {
            match api.delete(&r.name_any(), &DeleteParams::default()).await {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_data_round_trips_the_template() {
        let t = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..ObjectMeta::default()
            }),
            spec: None,
        };
        let rev = ControllerRevision {
            data: Some(RawExtension(data_of(&t))),
            ..ControllerRevision::default()
        };
        assert_eq!(
            rev.data.as_ref().unwrap().0["spec"]["template"]["$patch"],
            "replace"
        );
        assert_eq!(template_of(&rev), Some(t));
    }
}
