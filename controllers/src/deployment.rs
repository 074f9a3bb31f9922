//! Deployment controller: one ReplicaSet per pod template (named by `pod-template-hash`),
//! rolled with RollingUpdate (`maxSurge` / `maxUnavailable`) or Recreate, revision annotations
//! (`deployment.kubernetes.io/revision`, `-history`, `desired-replicas`, `max-replicas`) that
//! `kubectl rollout history | undo` read, pause/resume, `revisionHistoryLimit` cleanup, and the
//! status counts and Available / Progressing conditions `kubectl rollout status` waits on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use serde_json::json;

use crate::runtime::{Ctx, Error, tolerate};
use crate::util;

pub const REVISION: &str = "deployment.kubernetes.io/revision";
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const HASH_LABEL: &str = "pod-template-hash";

/// Annotations of a Deployment that are not copied onto its ReplicaSets.
fn copied_annotation(key: &str) -> bool {
    key != "kubectl.kubernetes.io/last-applied-configuration"
        && !key.starts_with("deployment.kubernetes.io/")
}

fn revision_of(rs: &ReplicaSet) -> i64 {
    rs.annotations()
        .get(REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn status_of(rs: &ReplicaSet) -> (i32, i32, i32) {
    let s = rs.status.clone().unwrap_or_default();
    (
        s.replicas,
        s.ready_replicas.unwrap_or(0),
        s.available_replicas.unwrap_or(0),
    )
}

/// Resolve an int-or-percent against `total`, rounding up or down.
pub fn scaled_value(v: Option<&IntOrString>, total: i32, default: &str, round_up: bool) -> i32 {
    let v = v
        .cloned()
        .unwrap_or(IntOrString::String(default.to_string()));
    match v {
        IntOrString::Int(i) => i,
        IntOrString::String(s) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            let num = pct * i64::from(total);
            let r = if round_up {
                (num + 99) / 100
            } else {
                num / 100
            };
            i32::try_from(r).unwrap_or(0)
        }
    }
}

/// (maxSurge, maxUnavailable) of a rolling update of `replicas`.
pub fn surge_and_unavailable(d: &Deployment, replicas: i32) -> (i32, i32) {
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let surge = scaled_value(ru.and_then(|r| r.max_surge.as_ref()), replicas, "25%", true);
    let mut unavailable = scaled_value(
        ru.and_then(|r| r.max_unavailable.as_ref()),
        replicas,
        "25%",
        false,
    );
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable.min(replicas.max(0)))
}

struct Plan {
    /// name -> desired spec.replicas after this reconcile
    scale: BTreeMap<String, i32>,
}

pub async fn reconcile(d: Arc<Deployment>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if util::terminating(&d.metadata) {
        return Ok(Action::await_change());
    }
    let Some(spec) = d.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let ns = d.namespace().unwrap_or_default();
    let name = d.name_any();
    let uid = util::uid(&d.metadata).to_string();
    let rs_api: Api<ReplicaSet> = ctx.api(&ns);
    let replicas = spec.replicas.unwrap_or(1);
    let paused = spec.paused.unwrap_or(false);
    let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");

    // Claim ReplicaSets: ours, plus matching orphans.
    let mut all: Vec<ReplicaSet> = Vec::new();
    for rs in ctx
        .stores
        .replicasets
        .state_filter(|r| r.metadata.namespace.as_deref() == Some(ns.as_str()))
    {
        if util::terminating(&rs.metadata) {
            continue;
        }
        let matches = util::selector_matches(
            &spec.selector,
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .and_then(|t| t.metadata.as_ref())
                .and_then(|m| m.labels.as_ref()),
        );
        match util::controller_of(&rs.metadata) {
            Some(r) if r.uid == uid => all.push((*rs).clone()),
            None if matches => {
                let mut refs = rs.metadata.owner_references.clone().unwrap_or_default();
                refs.push(util::owner_ref(d.as_ref()));
                let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": rs.metadata.resource_version}});
                match rs_api
                    .patch(
                        &rs.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(patch),
                    )
                    .await
                {
                    Ok(r) => all.push(r),
                    Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            _ => {}
        }
    }

    let template = spec.template.clone();
    let find_new = |all: &[ReplicaSet]| {
        all.iter().position(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| util::template_without(t, HASH_LABEL) == template)
        })
    };
    let max_old_revision = |all: &[ReplicaSet], skip: Option<usize>| {
        all.iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != skip)
            .map(|(_, rs)| revision_of(rs))
            .max()
            .unwrap_or(0)
    };
    let (surge, max_unavailable) = surge_and_unavailable(&d, replicas);
    let mut new_idx = find_new(&all);
    let mut created_new = false;
    let mut collision_count = d.status.as_ref().and_then(|s| s.collision_count);

    if new_idx.is_none() && !paused {
        let old_total: i32 = all.iter().map(spec_replicas).sum();
        let initial = if recreate {
            if old_total > 0 { 0 } else { replicas }
        } else {
            (replicas + surge - old_total).clamp(0, replicas)
        };
        let revision = max_old_revision(&all, None) + 1;
        let hash = util::hash_of(&template, collision_count);
        let rs_name = format!("{name}-{hash}");
        let mut tmpl = template.clone();
        let tm = tmpl.metadata.get_or_insert_with(ObjectMeta::default);
        tm.labels
            .get_or_insert_with(BTreeMap::new)
            .insert(HASH_LABEL.into(), hash.clone());
        let mut selector: LabelSelector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(HASH_LABEL.into(), hash.clone());
        let mut annotations: BTreeMap<String, String> = d
            .annotations()
            .iter()
            .filter(|(k, _)| copied_annotation(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        annotations.insert(REVISION.into(), revision.to_string());
        annotations.insert(DESIRED_REPLICAS.into(), replicas.to_string());
        annotations.insert(MAX_REPLICAS.into(), (replicas + surge).to_string());
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(rs_name.clone()),
                namespace: Some(ns.clone()),
                labels: tm.labels.clone(),
                annotations: Some(annotations),
                owner_references: Some(vec![util::owner_ref(d.as_ref())]),
                ..ObjectMeta::default()
            },
            spec: Some(k8s_openapi::api::apps::v1::ReplicaSetSpec {
                replicas: Some(initial),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(tmpl),
            }),
            status: None,
        };
        match rs_api.create(&PostParams::default(), &rs).await {
            Ok(created) => {
                ctx.events.publish(
                    d.as_ref(),
                    false,
                    "ScalingReplicaSet",
                    format!("Scaled up replica set {rs_name} from 0 to {initial}"),
                );
                all.push(created);
                new_idx = Some(all.len() - 1);
                created_new = true;
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // Same name, different template: a hash collision. Count it and try again.
                collision_count = Some(collision_count.unwrap_or(0) + 1);
                let api: Api<Deployment> = ctx.api(&ns);
                api.patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"collisionCount": collision_count}})),
                )
                .await?;
                return Ok(Action::requeue(Duration::from_millis(100)));
            }
            Err(e) => return Err(e.into()),
        }
    }

    // The new ReplicaSet gets the newest revision and the Deployment's annotations.
    if let Some(i) = new_idx {
        let max_old = max_old_revision(&all, Some(i));
        let rs = &all[i];
        let current = revision_of(rs);
        let mut want: BTreeMap<String, String> = rs.annotations().clone();
        for (k, v) in d.annotations().iter().filter(|(k, _)| copied_annotation(k)) {
            want.insert(k.clone(), v.clone());
        }
        if current <= max_old {
            let history: Vec<String> = rs
                .annotations()
                .get(REVISION_HISTORY)
                .map(|h| h.split(',').map(str::to_string).collect::<Vec<String>>())
                .unwrap_or_default()
                .into_iter()
                .chain((current > 0).then(|| current.to_string()))
                .collect();
            want.insert(REVISION.into(), (max_old + 1).to_string());
            if !history.is_empty() {
                want.insert(REVISION_HISTORY.into(), history.join(","));
            }
        }
        if &want != rs.annotations() {
            let patch = json!({"metadata": {"annotations": want}});
            let updated = rs_api
                .patch(
                    &rs.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(patch),
                )
                .await?;
            all[i] = updated;
        }
        let rev = all[i]
            .annotations()
            .get(REVISION)
            .cloned()
            .unwrap_or_default();
        if d.annotations().get(REVISION) != Some(&rev) {
            let api: Api<Deployment> = ctx.api(&ns);
            let patch = json!({"metadata": {"annotations": {REVISION: rev}}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await?;
        }
    }

    // Decide the replica counts.
    let mut plan = Plan {
        scale: all
            .iter()
            .map(|rs| (rs.name_any(), spec_replicas(rs)))
            .collect(),
    };
    let new_name = new_idx.map(|i| all[i].name_any());
    let olds: Vec<&ReplicaSet> = {
        let mut o: Vec<&ReplicaSet> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != new_idx)
            .map(|(_, r)| r)
            .collect();
        o.sort_by_key(|r| {
            (
                r.metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.as_second()),
                r.name_any(),
            )
        });
        o
    };
    let active: Vec<&ReplicaSet> = all.iter().filter(|r| spec_replicas(r) > 0).collect();
    let scaling_event = active.iter().any(|r| {
        r.annotations().get(DESIRED_REPLICAS).map(String::as_str)
            != Some(replicas.to_string().as_str())
    });
    if !recreate && active.len() > 1 && scaling_event {
        // Scaled in the middle of a rollout (or while paused): every active ReplicaSet grows
        // or shrinks in proportion to its size, as kube-controller-manager does.
        let sizes: Vec<Sized> = active
            .iter()
            .map(|r| Sized {
                name: r.name_any(),
                replicas: spec_replicas(r),
                max_replicas: r
                    .annotations()
                    .get(MAX_REPLICAS)
                    .and_then(|v| v.parse().ok()),
                created: r
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map_or(0, |t| t.0.as_second()),
            })
            .collect();
        let fallback = d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        for (name, n) in proportional(&sizes, replicas, surge, fallback) {
            plan.scale.insert(name, n);
        }
    } else if paused {
        // Paused: no rollout, but follow scaling on the newest ReplicaSet.
        if let Some(nn) = &new_name {
            let old_total: i32 = olds.iter().map(|r| spec_replicas(r)).sum();
            plan.scale.insert(nn.clone(), (replicas - old_total).max(0));
        }
    } else if recreate {
        let old_running: i32 = olds.iter().map(|r| spec_replicas(r) + status_of(r).0).sum();
        if old_running > 0 {
            for r in &olds {
                plan.scale.insert(r.name_any(), 0);
            }
        } else if let Some(nn) = &new_name {
            plan.scale.insert(nn.clone(), replicas);
        }
    } else if let (Some(i), Some(nn)) = (new_idx, &new_name) {
        rolling(
            &mut plan,
            &all[i],
            nn,
            &olds,
            replicas,
            surge,
            max_unavailable,
        );
    }

    // Apply the plan: scale-ups and scale-downs as patches of spec.replicas.
    for rs in &mut all {
        let n = rs.name_any();
        let want = plan.scale.get(&n).copied().unwrap_or(0);
        let have = spec_replicas(rs);
        let desired_ann = rs.annotations().get(DESIRED_REPLICAS).cloned();
        if want == have && (want == 0 || desired_ann.as_deref() == Some(&replicas.to_string())) {
            continue;
        }
        let patch = json!({
            "metadata": {"annotations": {DESIRED_REPLICAS: replicas.to_string(), MAX_REPLICAS: (replicas + surge).to_string()}},
            "spec": {"replicas": want},
        });
        let r = rs_api
            .patch(&n, &PatchParams::default(), &Patch::Merge(patch))
            .await;
        match r {
            Ok(updated) => *rs = updated,
            Err(kube::Error::Api(s)) if s.code == 404 => continue,
            Err(e) => return Err(e.into()),
        }
        if want != have {
            let verb = if want > have { "up" } else { "down" };
            ctx.events.publish(
                d.as_ref(),
                false,
                "ScalingReplicaSet",
                format!("Scaled {verb} replica set {n} from {have} to {want}"),
            );
        }
    }

    // Old, empty ReplicaSets beyond the history limit go, oldest revision first.
    if !paused {
        let limit = usize::try_from(spec.revision_history_limit.unwrap_or(10).max(0)).unwrap_or(10);
        let mut empty: Vec<&ReplicaSet> = all
            .iter()
            .filter(|r| {
                Some(r.name_any()) != new_name && spec_replicas(r) == 0 && status_of(r).0 == 0
            })
            .collect();
        if empty.len() > limit {
            empty.sort_by_key(|r| revision_of(r));
            let excess = empty.len() - limit;
            for r in empty.into_iter().take(excess) {
                let res = rs_api
                    .delete(&r.name_any(), &DeleteParams::background())
                    .await
                    .map(|_| ())
                    .map_err(Error::from);
                tolerate(res, &[404, 409])?;
            }
        }
    }

    update_status(
        &ctx,
        &d,
        &all,
        new_idx,
        replicas,
        max_unavailable,
        paused,
        created_new,
        collision_count,
    )
    .await
}

/// An active ReplicaSet as proportional scaling sees it.
struct Sized {
    name: String,
    replicas: i32,
    /// Its `max-replicas` annotation: the Deployment's replicas + maxSurge when last scaled.
    max_replicas: Option<i32>,
    created: i64,
}

/// New sizes of the active ReplicaSets when a Deployment is scaled to `replicas` mid-rollout:
/// the room up to `replicas + surge` is shared in proportion to each one's size relative to
/// its `max-replicas`, the biggest first (newest first when growing, oldest first when
/// shrinking), and what rounding leaves over goes to the biggest.
fn proportional(
    active: &[Sized],
    replicas: i32,
    surge: i32,
    fallback_max: i32,
) -> Vec<(String, i32)> {
    let allowed = replicas + surge;
    let current: i32 = active.iter().map(|r| r.replicas).sum();
    let to_add = allowed - current;
    let mut order: Vec<&Sized> = active.iter().collect();
    if to_add > 0 {
        order.sort_by(|a, b| b.replicas.cmp(&a.replicas).then(b.created.cmp(&a.created)));
    } else {
        order.sort_by(|a, b| b.replicas.cmp(&a.replicas).then(a.created.cmp(&b.created)));
    }
    let mut added = 0i32;
    let mut sizes: Vec<(String, i32)> = Vec::with_capacity(order.len());
    for r in &order {
        let mut proportion = 0;
        if r.replicas > 0 && to_add != 0 && to_add != added {
            let fraction = if replicas == 0 {
                -r.replicas
            } else {
                let annotated = i64::from(r.max_replicas.unwrap_or(fallback_max).max(1));
                // replicas * allowed / annotated, rounded half up (all terms are >= 0).
                let scaled = i64::from(r.replicas) * i64::from(allowed.max(0));
                let size = (2 * scaled + annotated) / (2 * annotated);
                i32::try_from(size).unwrap_or(i32::MAX) - r.replicas
            };
            let left = to_add - added;
            proportion = if to_add > 0 {
                fraction.min(left)
            } else {
                fraction.max(left)
            };
        }
        added += proportion;
        sizes.push((r.name.clone(), r.replicas + proportion));
    }
    if let Some(first) = sizes.first_mut()
        && added != to_add
    {
        first.1 = (first.1 + to_add - added).max(0);
    }
    sizes
}

/// One step of a rolling update: scale the new ReplicaSet up within maxSurge, else scale old
/// ones down while keeping `replicas - maxUnavailable` available.
fn rolling(
    plan: &mut Plan,
    new_rs: &ReplicaSet,
    new_name: &str,
    olds: &[&ReplicaSet],
    replicas: i32,
    surge: i32,
    max_unavailable: i32,
) {
    let total: i32 = plan.scale.values().sum();
    let new_have = plan.scale.get(new_name).copied().unwrap_or(0);
    if new_have < replicas {
        let max_total = replicas + surge;
        if total < max_total {
            let up = (max_total - total).min(replicas - new_have);
            plan.scale.insert(new_name.to_string(), new_have + up);
            return;
        }
    } else if new_have > replicas {
        plan.scale.insert(new_name.to_string(), replicas);
        return;
    }
    let old_total: i32 = olds.iter().map(|r| spec_replicas(r)).sum();
    if old_total == 0 {
        return;
    }
    let min_available = replicas - max_unavailable;
    let new_available = status_of(new_rs).2;
    let new_unavailable = (new_have - new_available).max(0);
    let mut max_scaled_down = total - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return;
    }
    // First the old pods that are not available anyway.
    for r in olds {
        if max_scaled_down <= 0 {
            break;
        }
        let n = r.name_any();
        let have = plan.scale.get(&n).copied().unwrap_or(0);
        let unhealthy = (have - status_of(r).2).max(0);
        let down = unhealthy.min(max_scaled_down);
        if down > 0 {
            plan.scale.insert(n, have - down);
            max_scaled_down -= down;
        }
    }
    // Then available ones, as long as enough stay available.
    let available_all: i32 = olds
        .iter()
        .map(|r| {
            status_of(r)
                .2
                .min(plan.scale.get(&r.name_any()).copied().unwrap_or(0))
        })
        .sum::<i32>()
        + new_available;
    let mut can_remove = (available_all - min_available).min(max_scaled_down);
    for r in olds {
        if can_remove <= 0 {
            break;
        }
        let n = r.name_any();
        let have = plan.scale.get(&n).copied().unwrap_or(0);
        let down = have.min(can_remove);
        if down > 0 {
            plan.scale.insert(n, have - down);
            can_remove -= down;
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn update_status(
    ctx: &Ctx,
    d: &Deployment,
    all: &[ReplicaSet],
    new_idx: Option<usize>,
    replicas: i32,
    max_unavailable: i32,
    paused: bool,
    created_new: bool,
    collision_count: Option<i32>,
) -> Result<Action, Error> {
    let now = util::now();
    let sum = |f: &dyn Fn(&ReplicaSet) -> i32| all.iter().map(f).sum::<i32>();
    let total_status = sum(&|r| status_of(r).0);
    let ready = sum(&|r| status_of(r).1);
    let available = sum(&|r| status_of(r).2);
    let updated = new_idx.map_or(0, |i| status_of(&all[i]).0);
    let spec_total = sum(&spec_replicas);
    let old = d.status.clone().unwrap_or_default();
    let new_name = new_idx.map(|i| all[i].name_any()).unwrap_or_default();
    let old_conds = old.conditions.clone().unwrap_or_default();
    let find = |t: &str| old_conds.iter().find(|c| c.type_ == t).cloned();

    let complete = updated == replicas
        && available == replicas
        && total_status == replicas
        && new_idx.is_some();
    let deadline = d
        .spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .unwrap_or(600);
    let progressed = old.updated_replicas.unwrap_or(0) != updated
        || old.available_replicas.unwrap_or(0) != available
        || old.replicas.unwrap_or(0) != total_status
        || old.ready_replicas.unwrap_or(0) != ready
        || created_new;
    let prev_progress = find("Progressing");
    let (p_status, p_reason, p_message) = if paused {
        (
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused".to_string(),
        )
    } else if complete {
        (
            "True",
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{new_name}\" has successfully progressed."),
        )
    } else if created_new {
        (
            "True",
            "NewReplicaSetCreated",
            format!("Created new replica set \"{new_name}\""),
        )
    } else if !progressed
        && prev_progress.as_ref().is_some_and(|c| {
            c.reason.as_deref() == Some("ProgressDeadlineExceeded")
                || (c.reason.as_deref() != Some("DeploymentPaused")
                    && c.last_update_time
                        .as_ref()
                        .is_some_and(|t| now.as_second() - t.0.as_second() > i64::from(deadline)))
        })
    {
        (
            "False",
            "ProgressDeadlineExceeded",
            format!("ReplicaSet \"{new_name}\" has timed out progressing."),
        )
    } else {
        (
            "True",
            "ReplicaSetUpdated",
            format!("ReplicaSet \"{new_name}\" is progressing."),
        )
    };
    let condition = |t: &str, status: &str, reason: &str, message: String, touch: bool| {
        let prev = find(t);
        let same_status = prev.as_ref().is_some_and(|c| c.status == status);
        let same = prev.as_ref().is_some_and(|c| {
            c.status == status
                && c.reason.as_deref() == Some(reason)
                && c.message.as_deref() == Some(message.as_str())
        });
        DeploymentCondition {
            type_: t.to_string(),
            status: status.to_string(),
            reason: Some(reason.to_string()),
            message: Some(message),
            last_transition_time: if same_status {
                prev.as_ref().and_then(|c| c.last_transition_time.clone())
            } else {
                Some(util::time(now))
            },
            last_update_time: if same && !touch {
                prev.as_ref().and_then(|c| c.last_update_time.clone())
            } else {
                Some(util::time(now))
            },
        }
    };
    let avail_cond = if available >= replicas - max_unavailable {
        condition(
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
            false,
        )
    } else {
        condition(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
            false,
        )
    };
    let prog_cond = condition(
        "Progressing",
        p_status,
        p_reason,
        p_message,
        progressed && !complete && !paused,
    );
    let status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(total_status),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        unavailable_replicas: Some((spec_total - available).max(0)),
        conditions: Some(vec![avail_cond, prog_cond]),
        collision_count,
    };
    if d.status.as_ref() != Some(&status) {
        ctx.patch_status::<Deployment>(&d.namespace().unwrap_or_default(), &d.name_any(), &status)
            .await?;
    }
    if !complete && !paused {
        return Ok(Action::requeue(Duration::from_secs(
            u64::try_from(deadline.clamp(1, 30)).unwrap_or(30),
        )));
    }
    Ok(Action::requeue(Duration::from_secs(600)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{ReplicaSetSpec, ReplicaSetStatus};

    fn rs(name: &str, spec: i32, available: i32, created: i64) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(util::time(
                    jiff::Timestamp::from_second(created).unwrap(),
                )),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(spec),
                ..ReplicaSetSpec::default()
            }),
            status: Some(ReplicaSetStatus {
                replicas: spec,
                available_replicas: Some(available),
                ready_replicas: Some(available),
                ..ReplicaSetStatus::default()
            }),
        }
    }

    #[test]
    fn percentages_round_like_kubernetes() {
        let p = IntOrString::String("25%".into());
        assert_eq!(scaled_value(Some(&p), 10, "25%", true), 3);
        assert_eq!(scaled_value(Some(&p), 10, "25%", false), 2);
        assert_eq!(
            scaled_value(Some(&IntOrString::Int(4)), 10, "25%", false),
            4
        );
    }

    #[test]
    fn rolling_update_surges_then_scales_down_within_availability() {
        // 10 replicas, surge 3, unavailable 2.
        let old = rs("old", 10, 10, 1);
        let new = rs("new", 0, 0, 2);
        let mut plan = Plan {
            scale: [("old".to_string(), 10), ("new".to_string(), 0)]
                .into_iter()
                .collect(),
        };
        rolling(&mut plan, &new, "new", &[&old], 10, 3, 2);
        assert_eq!(plan.scale["new"], 3, "surge first");
        assert_eq!(plan.scale["old"], 10);
        // New pods not available yet: old may only drop by maxUnavailable.
        let new = rs("new", 3, 0, 2);
        rolling(&mut plan, &new, "new", &[&old], 10, 3, 2);
        assert_eq!(plan.scale["old"], 8);
        let total_available = 8;
        assert!(total_available >= 10 - 2);
    }

    fn sized(name: &str, replicas: i32, max: i32, created: i64) -> Sized {
        Sized {
            name: name.into(),
            replicas,
            max_replicas: Some(max),
            created,
        }
    }

    #[test]
    fn scaling_mid_rollout_is_proportional() {
        // 10 replicas with surge 3 were rolling out: old 8, new 5. Scaled to 20 (surge 5): the
        // 12 extra are shared 7 / 5.
        let active = [sized("old", 8, 13, 1), sized("new", 5, 13, 2)];
        let got: BTreeMap<String, i32> = proportional(&active, 20, 5, 13).into_iter().collect();
        assert_eq!(got["old"], 15);
        assert_eq!(got["new"], 10);
        // Scaled down to 5 (surge 2): 7 allowed, 6 to remove; old 8 -> 4, new 5 -> 3 (rounding
        // leftovers go to the biggest).
        let got: BTreeMap<String, i32> = proportional(&active, 5, 2, 13).into_iter().collect();
        assert_eq!(got["old"] + got["new"], 7);
        assert_eq!(got["old"], 4);
        assert_eq!(got["new"], 3);
        // To zero: everything goes.
        let got: BTreeMap<String, i32> = proportional(&active, 0, 0, 13).into_iter().collect();
        assert_eq!((got["old"], got["new"]), (0, 0));
    }

    #[test]
    fn proportional_leftover_goes_to_the_biggest() {
        // Three equal ReplicaSets of 3 (max 10), scaled so 1 more is allowed: each fraction
        // rounds to 0, the newest of the biggest gets the one.
        let active = [
            sized("a", 3, 10, 1),
            sized("b", 3, 10, 2),
            sized("c", 3, 10, 3),
        ];
        let got: BTreeMap<String, i32> = proportional(&active, 8, 2, 10).into_iter().collect();
        assert_eq!(got.values().sum::<i32>(), 10);
        assert_eq!(got["c"], 4);
    }

    #[test]
    fn both_zero_means_one_unavailable() {
        let d = Deployment {
            spec: Some(k8s_openapi::api::apps::v1::DeploymentSpec {
                strategy: Some(k8s_openapi::api::apps::v1::DeploymentStrategy {
                    rolling_update: Some(k8s_openapi::api::apps::v1::RollingUpdateDeployment {
                        max_surge: Some(IntOrString::Int(0)),
                        max_unavailable: Some(IntOrString::Int(0)),
                    }),
                    type_: None,
                }),
                ..k8s_openapi::api::apps::v1::DeploymentSpec::default()
            }),
            ..Deployment::default()
        };
        assert_eq!(surge_and_unavailable(&d, 3), (0, 1));
    }
}
