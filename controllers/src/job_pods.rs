//! What a Job's pods mean for the Job: their completion index (Indexed completion mode), how
//! an Indexed Job's pods are stamped, the compressed index lists of `status.completedIndexes`,
//! and the verdict of `spec.podFailurePolicy` on a failed pod.

use std::collections::BTreeSet;

use k8s_openapi::api::batch::v1::{PodFailurePolicy, PodFailurePolicyRule};
use k8s_openapi::api::core::v1::{Container, EnvVar, EnvVarSource, ObjectFieldSelector, Pod};

/// Annotation and label carrying a pod's completion index.
pub const INDEX_KEY: &str = "batch.kubernetes.io/job-completion-index";
/// The environment variable every container of an Indexed Job's pod gets.
pub const INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

/// The completion index of an Indexed Job's pod, if it has a valid one.
pub fn index_of(p: &Pod) -> Option<i32> {
    p.metadata
        .annotations
        .as_ref()?
        .get(INDEX_KEY)?
        .parse()
        .ok()
        .filter(|i| *i >= 0)
}

/// Stamp a new pod of an Indexed Job with its index: annotation, label, hostname
/// `{job}-{index}`, and `JOB_COMPLETION_INDEX` (from the annotation) in every container.
pub fn stamp_index(pod: &mut Pod, job_name: &str, index: i32) {
    let value = index.to_string();
    pod.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(INDEX_KEY.into(), value.clone());
    pod.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(INDEX_KEY.into(), value);
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    if spec.hostname.is_none() {
        spec.hostname = Some(format!("{job_name}-{index}"));
    }
    let add_env = |c: &mut Container| {
        let env = c.env.get_or_insert_with(Vec::new);
        if env.iter().any(|e| e.name == INDEX_ENV) {
            return;
        }
        env.push(EnvVar {
            name: INDEX_ENV.into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: Some("v1".into()),
                    field_path: format!("metadata.annotations['{INDEX_KEY}']"),
                }),
                ..EnvVarSource::default()
            }),
        });
    };
    spec.containers.iter_mut().for_each(add_env);
    spec.init_containers.iter_mut().flatten().for_each(add_env);
}

/// `status.completedIndexes` form: ascending, consecutive runs as `a-b`, comma separated.
pub fn compress(indexes: &BTreeSet<i32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut run: Option<(i32, i32)> = None;
    for &i in indexes {
        run = match run {
            Some((a, b)) if i == b + 1 => Some((a, i)),
            Some(r) => {
                out.push(range(r));
                Some((i, i))
            }
            None => Some((i, i)),
        };
    }
    if let Some(r) = run {
        out.push(range(r));
    }
    out.join(",")
}

fn range((a, b): (i32, i32)) -> String {
    if a == b {
        a.to_string()
    } else {
        format!("{a}-{b}")
    }
}

/// What the pod failure policy makes of one failed pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Counts towards `backoffLimit` (no rule matched, or a `Count` rule did).
    Count,
    /// Not counted at all.
    Ignore,
    /// The whole Job fails now, with this message.
    FailJob(String),
    /// The pod's index fails (with `backoffLimitPerIndex`); counted otherwise.
    FailIndex,
}

/// Apply `policy` to a failed pod: the first matching rule decides.
pub fn verdict(policy: Option<&PodFailurePolicy>, pod: &Pod) -> Verdict {
    let Some(policy) = policy else {
        return Verdict::Count;
    };
    for (i, rule) in policy.rules.iter().enumerate() {
        let Some(why) = rule_matches(rule, pod) else {
            continue;
        };
        return match rule.action.as_str() {
            "Ignore" => Verdict::Ignore,
            "FailJob" => Verdict::FailJob(format!("{why} matching FailJob rule at index {i}")),
            "FailIndex" => Verdict::FailIndex,
            _ => Verdict::Count,
        };
    }
    Verdict::Count
}

/// Why the rule matches (the start of kube-controller-manager's message), or None.
fn rule_matches(rule: &PodFailurePolicyRule, pod: &Pod) -> Option<String> {
    let pod_name = format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or("")
    );
    if let Some(req) = &rule.on_exit_codes {
        let statuses = pod.status.as_ref()?;
        let containers = statuses
            .init_container_statuses
            .iter()
            .flatten()
            .chain(statuses.container_statuses.iter().flatten());
        for c in containers {
            if req.container_name.as_deref().is_some_and(|n| n != c.name) {
                continue;
            }
            let Some(code) = c
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .map(|t| t.exit_code)
            else {
                continue;
            };
            // Exit code 0 never matches: the container succeeded.
            if code == 0 {
                continue;
            }
            let listed = req.values.contains(&code);
            let hit = match req.operator.as_str() {
                "In" => listed,
                "NotIn" => !listed,
                _ => false,
            };
            if hit {
                return Some(format!(
                    "Container {} for pod {pod_name} failed with exit code {code}",
                    c.name
                ));
            }
        }
        return None;
    }
    let wanted = rule.on_pod_conditions.as_deref().unwrap_or(&[]);
    let conditions = pod.status.as_ref()?.conditions.as_deref().unwrap_or(&[]);
    wanted
        .iter()
        .find(|w| {
            conditions
                .iter()
                .any(|c| c.type_ == w.type_ && c.status == w.status)
        })
        .map(|w| format!("Pod {pod_name} has condition {}", w.type_))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn failed_pod(container: &str, code: i32) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "j-0-abc", "namespace": "default"},
            "spec": {"containers": [{"name": container, "image": "busybox"}]},
            "status": {"phase": "Failed", "containerStatuses": [{"name": container, "image": "busybox",
                "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": code}}}]},
        }))
        .unwrap()
    }

    fn policy(rules: serde_json::Value) -> PodFailurePolicy {
        serde_json::from_value(json!({ "rules": rules })).unwrap()
    }

    #[test]
    fn completed_indexes_are_compressed_into_runs() {
        let set: BTreeSet<i32> = [0, 1, 2, 4, 6, 7].into();
        assert_eq!(compress(&set), "0-2,4,6-7");
        assert_eq!(compress(&BTreeSet::new()), "");
        assert_eq!(compress(&[5].into()), "5");
    }

    #[test]
    fn stamped_pods_carry_their_index_everywhere() {
        let mut p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "x"},
            "spec": {"containers": [{"name": "a", "image": "i"}], "initContainers": [{"name": "b", "image": "i"}]},
        }))
        .unwrap();
        stamp_index(&mut p, "work", 3);
        assert_eq!(index_of(&p), Some(3));
        assert_eq!(p.metadata.labels.as_ref().unwrap()[INDEX_KEY], "3");
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("work-3"));
        for c in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            let env = c.env.as_ref().unwrap();
            let e = env.iter().find(|e| e.name == INDEX_ENV).unwrap();
            let path = &e
                .value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path;
            assert_eq!(
                path,
                "metadata.annotations['batch.kubernetes.io/job-completion-index']"
            );
        }
    }

    #[test]
    fn failure_policy_rules_match_in_order() {
        let pol = policy(json!([
            {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [1]}},
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [0, 1, 42]}},
        ]));
        assert_eq!(verdict(Some(&pol), &failed_pod("main", 1)), Verdict::Ignore);
        assert_eq!(
            verdict(Some(&pol), &failed_pod("main", 42)),
            Verdict::FailJob(
                "Container main for pod default/j-0-abc failed with exit code 42 matching FailJob rule at index 1"
                    .into()
            )
        );
        // The FailJob rule names another container: no match, falls through to Count.
        assert_eq!(verdict(Some(&pol), &failed_pod("side", 42)), Verdict::Count);
        assert_eq!(verdict(Some(&pol), &failed_pod("main", 7)), Verdict::Count);
        assert_eq!(verdict(None, &failed_pod("main", 42)), Verdict::Count);
    }

    #[test]
    fn failure_policy_matches_pod_conditions() {
        let pol = policy(json!([
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]));
        let mut p = failed_pod("main", 137);
        assert_eq!(verdict(Some(&pol), &p), Verdict::Count);
        p.status.as_mut().unwrap().conditions = Some(vec![
            serde_json::from_value(json!({"type": "DisruptionTarget", "status": "True"})).unwrap(),
        ]);
        assert_eq!(verdict(Some(&pol), &p), Verdict::Ignore);
    }
}
