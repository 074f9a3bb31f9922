//! CronJob controller: creates a Job (`{cronjob}-{minutes since epoch}`) at each scheduled
//! time, honouring `suspend`, `startingDeadlineSeconds` and `concurrencyPolicy`
//! (Allow / Forbid / Replace), keeps `status.active`, `lastScheduleTime` and
//! `lastSuccessfulTime`, and trims finished Jobs to the history limits.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::cron::Schedule;
use crate::runtime::{Ctx, Error, tolerate};
use crate::util;

fn job_finished(job: &Job) -> Option<(&'static str, Option<i64>)> {
    let conds = job.status.as_ref()?.conditions.as_ref()?;
    for c in conds.iter().filter(|c| c.status == "True") {
        if c.type_ == "Complete" {
            let at = job
                .status
                .as_ref()?
                .completion_time
                .as_ref()
                .map(|t| t.0.as_second());
            return Some(("Complete", at));
        }
        if c.type_ == "Failed" {
            return Some((
                "Failed",
                c.last_transition_time.as_ref().map(|t| t.0.as_second()),
            ));
        }
    }
    None
}

pub async fn reconcile(cj: Arc<CronJob>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if util::terminating(&cj.metadata) {
        return Ok(Action::await_change());
    }
    let Some(spec) = cj.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let ns = cj.namespace().unwrap_or_default();
    let name = cj.name_any();
    let uid = util::uid(&cj.metadata).to_string();
    let jobs_api: Api<Job> = ctx.api(&ns);
    let now = util::now();

    let mut jobs: Vec<Arc<Job>> = ctx.stores.jobs.state_filter(|j| {
        j.metadata.namespace.as_deref() == Some(ns.as_str())
            && util::controller_of(&j.metadata).is_some_and(|r| r.uid == uid)
    });
    jobs.sort_by_key(|j| {
        j.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second())
    });
    let active: Vec<&Arc<Job>> = jobs
        .iter()
        .filter(|j| job_finished(j).is_none() && !util::terminating(&j.metadata))
        .collect();
    let last_success = jobs
        .iter()
        .filter_map(|j| match job_finished(j) {
            Some(("Complete", at)) => at,
            _ => None,
        })
        .max();

    // History limits.
    for (kind, limit) in [
        ("Complete", spec.successful_jobs_history_limit.unwrap_or(3)),
        ("Failed", spec.failed_jobs_history_limit.unwrap_or(1)),
    ] {
        let done: Vec<&Arc<Job>> = jobs
            .iter()
            .filter(|j| {
                job_finished(j).is_some_and(|(k, _)| k == kind) && !util::terminating(&j.metadata)
            })
            .collect();
        let limit = usize::try_from(limit.max(0)).unwrap_or(0);
        if done.len() > limit {
            for j in &done[..done.len() - limit] {
                let r = jobs_api
                    .delete(&j.name_any(), &DeleteParams::background())
                    .await
                    .map(|_| ())
                    .map_err(Error::from);
                tolerate(r, &[404, 409])?;
                ctx.events.publish(
                    cj.as_ref(),
                    false,
                    "SuccessfulDelete",
                    format!("Deleted job {}", j.name_any()),
                );
            }
        }
    }

    let schedule = match Schedule::parse(&spec.schedule) {
        Ok(s) => match spec.time_zone.as_deref() {
            None => s,
            Some(tz) => match s.in_time_zone(tz) {
                Ok(s) => s,
                Err(e) => {
                    ctx.events.publish(
                        cj.as_ref(),
                        true,
                        "UnknownTimeZone",
                        format!("invalid timeZone: {tz:?}: {e}"),
                    );
                    return Ok(Action::await_change());
                }
            },
        },
        Err(e) => {
            ctx.events.publish(
                cj.as_ref(),
                true,
                "UnparseableSchedule",
                format!("unparseable schedule: {}: {e}", spec.schedule),
            );
            return Ok(Action::await_change());
        }
    };
    let last = cj
        .status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
        .map(|t| t.0)
        .or_else(|| cj.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(now);
    let mut active_refs: Vec<serde_json::Value> =
        active.iter().map(|j| json!(j.object_ref(&()))).collect();
    let mut last_schedule = cj
        .status
        .as_ref()
        .and_then(|s| s.last_schedule_time.clone());
    if !spec.suspend.unwrap_or(false)
        && let Some(due) = schedule.last_due(last, now)
    {
        let too_late = spec
            .starting_deadline_seconds
            .is_some_and(|d| now.as_second() - due.as_second() > d);
        let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
        let blocked = policy == "Forbid" && !active.is_empty();
        if !too_late && !blocked {
            if policy == "Replace" {
                for j in &active {
                    let r = jobs_api
                        .delete(&j.name_any(), &DeleteParams::background())
                        .await
                        .map(|_| ())
                        .map_err(Error::from);
                    tolerate(r, &[404, 409])?;
                    ctx.events.publish(
                        cj.as_ref(),
                        false,
                        "SuccessfulDelete",
                        format!("Deleted job {}", j.name_any()),
                    );
                }
                active_refs.clear();
            }
            let job_name = format!("{name}-{}", due.as_second() / 60);
            let tmpl = spec.job_template.clone();
            let tm = tmpl.metadata.unwrap_or_default();
            let mut annotations: BTreeMap<String, String> = tm.annotations.unwrap_or_default();
            annotations.insert(
                "batch.kubernetes.io/cronjob-scheduled-timestamp".into(),
                schedule.format(due),
            );
            let job = Job {
                metadata: ObjectMeta {
                    name: Some(job_name.clone()),
                    namespace: Some(ns.clone()),
                    labels: tm.labels,
                    annotations: Some(annotations),
                    owner_references: Some(vec![util::owner_ref(cj.as_ref())]),
                    ..ObjectMeta::default()
                },
                spec: tmpl.spec,
                status: None,
            };
            match jobs_api.create(&PostParams::default(), &job).await {
                Ok(created) => {
                    ctx.events.publish(
                        cj.as_ref(),
                        false,
                        "SuccessfulCreate",
                        format!("Created job {job_name}"),
                    );
                    active_refs.push(json!(created.object_ref(&())));
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
            last_schedule = Some(util::time(due));
        } else if blocked {
            ctx.events.publish(cj.as_ref(), false, "JobAlreadyActive", "Not starting job because prior execution is running and concurrency policy is Forbid".into());
        } else {
            last_schedule = Some(util::time(due));
        }
    }
    let mut status = json!({
        "active": if active_refs.is_empty() { serde_json::Value::Null } else { json!(active_refs) },
        "lastScheduleTime": last_schedule,
    });
    if let Some(ls) = last_success {
        status["lastSuccessfulTime"] = json!(jiff::Timestamp::from_second(ls).ok().map(util::time));
    }
    let current = serde_json::to_value(cj.status.clone().unwrap_or_default()).unwrap_or_default();
    let differs = ["active", "lastScheduleTime", "lastSuccessfulTime"]
        .iter()
        .any(|k| {
            current.get(*k).unwrap_or(&serde_json::Value::Null)
                != status.get(*k).unwrap_or(&serde_json::Value::Null)
        });
    if differs {
        ctx.patch_status::<CronJob>(&ns, &name, &status).await?;
    }
    let next = schedule
        .next_after(now)
        .map_or(300, |t| t.as_second() - now.as_second());
    Ok(Action::requeue(Duration::from_secs(
        u64::try_from(next.clamp(1, 300)).unwrap_or(60),
    )))
}
