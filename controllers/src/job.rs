//! Job controller: runs pods until `completions` succeed, `parallelism` at a time, replacing
//! failed pods after an exponential backoff until `backoffLimit` failures, failing at
//! `activeDeadlineSeconds`, with the Complete / Failed conditions kubectl shows, and deletes
//! finished Jobs after `ttlSecondsAfterFinished`. Indexed Jobs run one pod per completion index
//! (`status.completedIndexes`); `podFailurePolicy` decides how each failed pod counts.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use serde_json::json;

use crate::job_pods::{self, Verdict};
use crate::replicaset::{first_error, pod_from_template};
use crate::runtime::{Ctx, Error, pod_seen, tolerate};
use crate::util;

fn finished_condition(job: &Job) -> Option<&JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

/// When the pod finished (its container's terminated time), in seconds.
fn finished_at(p: &Pod) -> Option<i64> {
    p.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0.as_second())
        .max()
}

pub async fn reconcile(job: Arc<Job>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if util::terminating(&job.metadata) {
        return Ok(Action::await_change());
    }
    let Some(spec) = job.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let ns = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let uid = util::uid(&job.metadata).to_string();
    let now = util::now();
    let jobs_api: Api<Job> = ctx.api(&ns);
    let pods_api: Api<Pod> = ctx.api(&ns);

    // Finished: only the TTL is left to handle.
    if let Some(cond) = finished_condition(&job) {
        if let Some(ttl) = spec.ttl_seconds_after_finished {
            let since = cond
                .last_transition_time
                .as_ref()
                .map_or(now.as_second(), |t| t.0.as_second());
            let left = since + i64::from(ttl) - now.as_second();
            if left <= 0 {
                let r = jobs_api
                    .delete(&name, &DeleteParams::background())
                    .await
                    .map(|_| ())
                    .map_err(Error::from);
                tolerate(r, &[404, 409])?;
                return Ok(Action::await_change());
            }
            return Ok(Action::requeue(Duration::from_secs(
                u64::try_from(left).unwrap_or(1),
            )));
        }
        return Ok(Action::await_change());
    }

    let pods: Vec<Arc<Pod>> = ctx
        .pods_in(&ns)
        .into_iter()
        .filter(|p| util::controller_of(&p.metadata).is_some_and(|r| r.uid == uid))
        .collect();
    let active: Vec<&Arc<Pod>> = pods.iter().filter(|p| util::pod_active(p)).collect();
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let completions_target = spec.completions.unwrap_or(1);
    // Indexed: a completion is an index in 0..completions with a succeeded pod.
    let completed_indexes: BTreeSet<i32> = pods
        .iter()
        .filter(|p| util::pod_phase(p) == "Succeeded")
        .filter_map(|p| job_pods::index_of(p))
        .filter(|i| *i < completions_target)
        .collect();
    let succeeded = if indexed {
        i32::try_from(completed_indexes.len()).unwrap_or(0)
    } else {
        i32::try_from(
            pods.iter()
                .filter(|p| util::pod_phase(p) == "Succeeded")
                .count(),
        )
        .unwrap_or(0)
    };
    // Failed pods count towards backoffLimit unless the pod failure policy ignores them.
    let mut failed = 0i32;
    let mut fail_job: Option<String> = None;
    for p in pods.iter().filter(|p| util::pod_phase(p) == "Failed") {
        match job_pods::verdict(spec.pod_failure_policy.as_ref(), p) {
            Verdict::Ignore => {}
            Verdict::Count | Verdict::FailIndex => failed += 1,
            Verdict::FailJob(msg) => {
                failed += 1;
                fail_job.get_or_insert(msg);
            }
        }
    }
    let n_active = i32::try_from(active.len()).unwrap_or(0);
    let ready = i32::try_from(active.iter().filter(|p| util::pod_ready(p)).count()).unwrap_or(0);
    let parallelism = spec.parallelism.unwrap_or(1);
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let suspended = spec.suspend.unwrap_or(false);
    let start_time = job
        .status
        .as_ref()
        .and_then(|s| s.start_time.clone())
        .unwrap_or_else(|| util::time(now));

    let complete = match spec.completions {
        Some(c) => succeeded >= c,
        None => succeeded >= 1 && n_active == 0,
    } && fail_job.is_none();
    let deadline_exceeded = spec
        .active_deadline_seconds
        .is_some_and(|d| now.as_second() - start_time.0.as_second() >= d);
    let mut conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let condition = |t: &str, reason: &str, message: &str| JobCondition {
        type_: t.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(util::time(now)),
        last_transition_time: Some(util::time(now)),
    };
    let mut completion_time = None;
    let mut requeue = Duration::from_secs(300);
    if complete {
        conditions.push(condition(
            "SuccessCriteriaMet",
            "CompletionsReached",
            "Reached expected number of succeeded pods",
        ));
        conditions.push(condition(
            "Complete",
            "CompletionsReached",
            "Reached expected number of succeeded pods",
        ));
        completion_time = Some(util::time(now));
        ctx.events
            .publish(job.as_ref(), false, "Completed", "Job completed".into());
        if let Some(ttl) = spec.ttl_seconds_after_finished {
            requeue = Duration::from_secs(u64::try_from(ttl.max(0)).unwrap_or(0));
        }
    } else if fail_job.is_some() || failed > backoff_limit || deadline_exceeded {
        let (reason, message) = if let Some(msg) = &fail_job {
            ("PodFailurePolicy", msg.as_str())
        } else if deadline_exceeded {
            (
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            )
        } else {
            (
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            )
        };
        conditions.push(condition("FailureTarget", reason, message));
        conditions.push(condition("Failed", reason, message));
        ctx.events
            .publish(job.as_ref(), true, reason, message.into());
        for p in &active {
            let r = pods_api
                .delete(&p.name_any(), &DeleteParams::default())
                .await
                .map(|_| ())
                .map_err(Error::from);
            tolerate(r, &[404, 409])?;
        }
        if let Some(ttl) = spec.ttl_seconds_after_finished {
            requeue = Duration::from_secs(u64::try_from(ttl.max(0)).unwrap_or(0));
        }
    } else if suspended {
        for p in &active {
            let r = pods_api
                .delete(&p.name_any(), &DeleteParams::default())
                .await
                .map(|_| ())
                .map_err(Error::from);
            tolerate(r, &[404, 409])?;
        }
    } else if ctx
        .expectations
        .satisfied(&uid, pod_seen(&ctx.stores.pods, &ns))
    {
        let remaining = spec
            .completions
            .map_or(parallelism, |c| (c - succeeded).min(parallelism));
        let want = (remaining - n_active).max(0);
        // Failed pods come back after a backoff that doubles per failure.
        let wait = if failed > 0 && want > 0 {
            let base = ctx.opts.job_backoff.as_secs_f64();
            let delay = (base * 2f64.powi(failed - 1)).min(360.0);
            let last = pods
                .iter()
                .filter(|p| util::pod_phase(p) == "Failed")
                .filter_map(|p| finished_at(p))
                .max();
            let since = last.map_or(f64::MAX, |l| {
                Duration::from_secs(u64::try_from(now.as_second() - l).unwrap_or(0)).as_secs_f64()
            });
            (since < delay).then(|| Duration::from_secs_f64((delay - since).max(0.1)))
        } else {
            None
        };
        match wait {
            Some(w) if want > 0 => requeue = w,
            _ => {
                if want > 0 {
                    let indexes = if indexed {
                        // The lowest indexes with neither a success nor a running pod.
                        let busy: BTreeSet<i32> = active
                            .iter()
                            .filter_map(|p| job_pods::index_of(p))
                            .collect();
                        (0..completions_target)
                            .filter(|i| !completed_indexes.contains(i) && !busy.contains(i))
                            .take(usize::try_from(want).unwrap_or(0))
                            .map(Some)
                            .collect()
                    } else {
                        vec![None; usize::try_from(want).unwrap_or(0)]
                    };
                    create_pods(&ctx, &job, indexes).await?;
                }
            }
        }
        if let Some(d) = spec.active_deadline_seconds {
            let left = start_time.0.as_second() + d - now.as_second();
            requeue = requeue.min(Duration::from_secs(u64::try_from(left.max(1)).unwrap_or(1)));
        }
    }
    let status = JobStatus {
        active: (n_active > 0).then_some(n_active),
        succeeded: (succeeded > 0).then_some(succeeded),
        failed: (failed > 0).then_some(failed),
        ready: Some(ready),
        start_time: Some(start_time),
        completion_time: completion_time
            .or_else(|| job.status.as_ref().and_then(|s| s.completion_time.clone())),
        conditions: (!conditions.is_empty()).then_some(conditions),
        completed_indexes: indexed.then(|| job_pods::compress(&completed_indexes)),
        terminating: Some(0),
        ..JobStatus::default()
    };
    if job.status.as_ref() != Some(&status) {
        let r = jobs_api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            )
            .await
            .map(|_| ())
            .map_err(Error::from);
        tolerate(r, &[404])?;
    }
    Ok(Action::requeue(requeue))
}

/// Create one pod per entry: `Some(i)` is completion index `i` of an Indexed Job.
async fn create_pods(ctx: &Ctx, job: &Job, indexes: Vec<Option<i32>>) -> Result<(), Error> {
    let spec = job.spec.clone().unwrap_or_default();
    let ns = job.namespace().unwrap_or_default();
    let uid = util::uid(&job.metadata).to_string();
    let api: Api<Pod> = ctx.api(&ns);
    let prefix = format!("{}-", job.name_any());
    let results: Vec<Result<(), Error>> = futures::stream::iter(indexes)
        .map(|index| {
            let generate = match index {
                Some(i) => format!("{prefix}{i}-"),
                None => prefix.clone(),
            };
            let mut pod = pod_from_template(job, &spec.template, None, Some(generate));
            if let Some(i) = index {
                job_pods::stamp_index(&mut pod, &job.name_any(), i);
            }
            let labels = pod.metadata.labels.get_or_insert_with(Default::default);
            labels
                .entry("batch.kubernetes.io/controller-uid".into())
                .or_insert_with(|| uid.clone());
            labels
                .entry("batch.kubernetes.io/job-name".into())
                .or_insert_with(|| job.name_any());
            labels
                .entry("controller-uid".into())
                .or_insert_with(|| uid.clone());
            labels
                .entry("job-name".into())
                .or_insert_with(|| job.name_any());
            let api = api.clone();
            let uid = uid.clone();
            async move {
                let created = api.create(&PostParams::default(), &pod).await?;
                ctx.expectations.expect_create(&uid, created.name_any());
                ctx.events.publish(
                    job,
                    false,
                    "SuccessfulCreate",
                    format!("Created pod: {}", created.name_any()),
                );
                Ok(())
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    first_error(results)
}
