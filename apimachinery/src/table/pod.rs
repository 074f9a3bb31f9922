//! The pod row: READY counts, the STATUS reason logic (init containers, sidecars, waiting and
//! terminated reasons, deletion), RESTARTS with the time of the last restart, and the row
//! condition that marks finished pods.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::obj::{Obj, since};
use super::printers::{age, s};

/// Whether an init container is a sidecar (`restartPolicy: Always`).
fn restartable(spec: Obj<'_>, name: &str) -> bool {
    spec.items(&["initContainers"])
        .find(|c| c.str(&["name"]) == name)
        .is_some_and(|c| c.str(&["restartPolicy"]) == "Always")
}

fn latest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// `Signal:N` or `ExitCode:N` for a terminated state without a reason.
fn exit_reason(terminated: Obj<'_>) -> String {
    match terminated.int(&["signal"]) {
        0 => format!("ExitCode:{}", terminated.int(&["exitCode"])),
        signal => format!("Signal:{signal}"),
    }
}

/// The cells of a pod row and its row conditions (for pods that have finished).
pub(super) fn pod(o: Obj<'_>, now: Timestamp) -> (Vec<Value>, Option<Value>) {
    let spec = o.obj(&["spec"]).unwrap_or(Obj(&Value::Null));
    let phase = o.str(&["status", "phase"]);
    let mut reason = match o.str(&["status", "reason"]) {
        "" => phase.to_string(),
        r => r.to_string(),
    };
    if o.items(&["status", "conditions"])
        .any(|c| c.str(&["type"]) == "PodScheduled" && c.str(&["reason"]) == "SchedulingGated")
    {
        reason = "SchedulingGated".into();
    }
    let conditions = match phase {
        "Succeeded" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "Succeeded",
            "message": "The pod has completed successfully."}]),
        ),
        "Failed" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "Failed",
            "message": "The pod failed."}]),
        ),
        _ => None,
    };

    let init_specs = spec.list(&["initContainers"]);
    let sidecars = spec
        .items(&["initContainers"])
        .filter(|c| c.str(&["restartPolicy"]) == "Always")
        .count();
    let total = spec.len(&["containers"]) + sidecars;
    let mut ready = 0usize;
    let mut restarts = 0i64;
    let mut sidecar_restarts = 0i64;
    let mut last_restart: Option<Timestamp> = None;
    let mut last_sidecar_restart: Option<Timestamp> = None;

    let mut initializing = false;
    for (i, c) in o.items(&["status", "initContainerStatuses"]).enumerate() {
        let finished = c.time(&["lastState", "terminated", "finishedAt"]);
        restarts += c.int(&["restartCount"]);
        last_restart = latest(last_restart, finished);
        let sidecar = restartable(spec, c.str(&["name"]));
        if sidecar {
            sidecar_restarts += c.int(&["restartCount"]);
            last_sidecar_restart = latest(last_sidecar_restart, finished);
        }
        let terminated = c.obj(&["state", "terminated"]);
        let waiting_reason = c.str(&["state", "waiting", "reason"]);
        match terminated {
            Some(t) if t.int(&["exitCode"]) == 0 => continue,
            _ if sidecar && c.bool(&["started"]) => {
                if c.bool(&["ready"]) {
                    ready += 1;
                }
                continue;
            }
            Some(t) => {
                reason = match t.str(&["reason"]) {
                    "" => format!("Init:{}", exit_reason(t)),
                    r => format!("Init:{r}"),
                };
            }
            None if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" => {
                reason = format!("Init:{waiting_reason}");
            }
            None => reason = format!("Init:{i}/{}", init_specs.len()),
        }
        initializing = true;
        break;
    }

    if !initializing || o.condition("Initialized") == "True" {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for c in o
            .list(&["status", "containerStatuses"])
            .iter()
            .rev()
            .map(Obj)
        {
            restarts += c.int(&["restartCount"]);
            last_restart = latest(
                last_restart,
                c.time(&["lastState", "terminated", "finishedAt"]),
            );
            let waiting = c.str(&["state", "waiting", "reason"]);
            let terminated = c.obj(&["state", "terminated"]);
            if !waiting.is_empty() {
                reason = waiting.into();
            } else if let Some(t) = terminated {
                reason = match t.str(&["reason"]) {
                    "" => exit_reason(t),
                    r => r.into(),
                };
            } else if c.bool(&["ready"]) && c.has(&["state", "running"]) {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if o.condition("Ready") == "True" {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }

    if o.deleting() && o.str(&["status", "reason"]) == "NodeLost" {
        reason = "Unknown".into();
    } else if o.deleting() && phase != "Failed" && phase != "Succeeded" {
        reason = "Terminating".into();
    }

    let restarts_text = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(t), now)),
        _ => restarts.to_string(),
    };

    let ip = o
        .items(&["status", "podIPs"])
        .next()
        .map_or("", |p| p.str(&["ip"]));
    let or_none = |v: &str| {
        if v.is_empty() {
            "<none>".to_string()
        } else {
            v.to_string()
        }
    };
    let gates = spec.items(&["readinessGates"]).count();
    let readiness_gates = if gates == 0 {
        "<none>".to_string()
    } else {
        let passed = spec
            .items(&["readinessGates"])
            .filter(|g| o.condition(g.str(&["conditionType"])) == "True")
            .count();
        format!("{passed}/{gates}")
    };
    let cells = vec![
        s(o.name()),
        s(format!("{ready}/{total}")),
        s(reason),
        s(restarts_text),
        age(o, now),
        s(or_none(ip)),
        s(or_none(spec.str(&["nodeName"]))),
        s(or_none(o.str(&["status", "nominatedNodeName"]))),
        s(readiness_gates),
    ];
    (cells, conditions)
}
