//! Pod status as the kubelet writes it: phase, conditions, IPs, and a status per container
//! (state, lastState, restartCount, ready, started, image, imageID, containerID), so that
//! `kubectl get pods` shows STATUS, READY and RESTARTS exactly as for a real node.

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

/// One container as the worker sees it.
pub struct Ctr<'a> {
    pub name: &'a str,
    pub image: &'a str,
    pub image_id: &'a str,
    pub init: bool,
    pub restarts: u32,
    pub running_since: Option<&'a str>,
    pub container_id: Option<String>,
    pub terminated: Option<Value>,
    pub last: Option<Value>,
    pub waiting: Option<(String, Option<String>)>,
    pub ready: bool,
    pub started: bool,
    pub exit_code: Option<i32>,
    /// Whether a terminated container will be started again.
    pub will_restart: bool,
}

pub struct Input<'a> {
    pub pod: &'a Pod,
    pub ip: Option<&'a str>,
    pub host_ip: &'a str,
    pub start_time: &'a str,
    pub sandbox_ready: bool,
    pub restart_policy: &'a str,
    pub containers: Vec<Ctr<'a>>,
}

fn container_status(c: &Ctr<'_>, blocked_by_init: bool) -> Value {
    let waiting = |reason: &str, message: Option<&String>| {
        let mut w = json!({"reason": reason});
        if let Some(m) = message {
            w["message"] = json!(m);
        }
        json!({"waiting": w})
    };
    let (state, last) = if let Some(since) = c.running_since {
        (json!({"running": {"startedAt": since}}), c.last.clone())
    } else if let Some((reason, msg)) = &c.waiting {
        // Waiting after a run: the run just ended is the last state.
        (
            waiting(reason, msg.as_ref()),
            c.terminated.clone().or_else(|| c.last.clone()),
        )
    } else if let Some(t) = &c.terminated {
        (json!({"terminated": t}), c.last.clone())
    } else if blocked_by_init {
        (waiting("PodInitializing", None), None)
    } else {
        (waiting("ContainerCreating", None), None)
    };
    let mut s = json!({
        "name": c.name,
        "image": c.image,
        "imageID": c.image_id,
        "state": state,
        "lastState": last.map(|t| json!({"terminated": t})).unwrap_or_else(|| json!({})),
        "ready": c.ready,
        "restartCount": c.restarts,
        "started": c.running_since.is_some() && c.started,
    });
    if let Some(id) = &c.container_id {
        s["containerID"] = json!(id);
    }
    s
}

fn condition(pod: &Pod, kind: &str, ok: bool, reason: Option<(&str, String)>, now: &str) -> Value {
    let status = if ok { "True" } else { "False" };
    let old = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == kind));
    let transition = match old {
        Some(o) if o.status == status => o
            .last_transition_time
            .as_ref()
            .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(|| now.to_owned()),
        _ => now.to_owned(),
    };
    let mut c = json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": transition});
    if let (false, Some((r, m))) = (ok, reason) {
        c["reason"] = json!(r);
        c["message"] = json!(m);
    }
    c
}

/// The pod's phase from its containers (the kubelet's rules).
pub fn phase(inp: &Input<'_>) -> &'static str {
    let inits: Vec<&Ctr<'_>> = inp.containers.iter().filter(|c| c.init).collect();
    let mains: Vec<&Ctr<'_>> = inp.containers.iter().filter(|c| !c.init).collect();
    for i in &inits {
        if i.exit_code.is_some_and(|c| c != 0) && !i.will_restart {
            return "Failed";
        }
        if i.exit_code != Some(0) {
            return "Pending";
        }
    }
    if mains.iter().any(|c| c.running_since.is_some()) {
        return "Running";
    }
    let all_done = mains
        .iter()
        .all(|c| c.exit_code.is_some() && !c.will_restart);
    if all_done && !mains.is_empty() {
        return if mains.iter().all(|c| c.exit_code == Some(0)) {
            "Succeeded"
        } else {
            "Failed"
        };
    }
    if mains.iter().any(|c| c.exit_code.is_some()) {
        // Restarting (back-off): still Running as far as the pod is concerned.
        return "Running";
    }
    "Pending"
}

pub fn build(inp: &Input<'_>) -> Value {
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let inits_done = inp
        .containers
        .iter()
        .filter(|c| c.init)
        .all(|c| c.exit_code == Some(0));
    let phase = phase(inp);
    let mut init_statuses = Vec::new();
    let mut statuses = Vec::new();
    for c in &inp.containers {
        if c.init {
            init_statuses.push(container_status(c, false));
        } else {
            statuses.push(container_status(c, !inits_done));
        }
    }
    let unready: Vec<&str> = inp
        .containers
        .iter()
        .filter(|c| !c.init && !c.ready)
        .map(|c| c.name)
        .collect();
    let uninit: Vec<&str> = inp
        .containers
        .iter()
        .filter(|c| c.init && c.exit_code != Some(0))
        .map(|c| c.name)
        .collect();
    let terminal = matches!(phase, "Succeeded" | "Failed");
    let ready = unready.is_empty() && !terminal;
    let unready_reason = if terminal {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    let mut conditions = vec![
        condition(
            inp.pod,
            "PodReadyToStartContainers",
            inp.sandbox_ready && !terminal,
            None,
            &now,
        ),
        condition(
            inp.pod,
            "Initialized",
            uninit.is_empty(),
            Some((
                "ContainersNotInitialized",
                format!("containers with incomplete status: [{}]", uninit.join(" ")),
            )),
            &now,
        ),
        condition(
            inp.pod,
            "Ready",
            ready,
            Some((
                unready_reason,
                format!("containers with unready status: [{}]", unready.join(" ")),
            )),
            &now,
        ),
        condition(
            inp.pod,
            "ContainersReady",
            ready,
            Some((
                unready_reason,
                format!("containers with unready status: [{}]", unready.join(" ")),
            )),
            &now,
        ),
    ];
    conditions.push(condition(inp.pod, "PodScheduled", true, None, &now));
    let mut st = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": inp.host_ip,
        "hostIPs": [{"ip": inp.host_ip}],
        "startTime": inp.start_time,
        "containerStatuses": statuses,
    });
    if !init_statuses.is_empty() {
        st["initContainerStatuses"] = json!(init_statuses);
    }
    if let Some(ip) = inp.ip {
        st["podIP"] = json!(ip);
        st["podIPs"] = json!([{"ip": ip}]);
    }
    if let Some(q) = inp.pod.status.as_ref().and_then(|s| s.qos_class.clone()) {
        st["qosClass"] = json!(q);
    }
    let _ = inp.restart_policy;
    st
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctr<'a>(name: &'a str) -> Ctr<'a> {
        Ctr {
            name,
            image: "busybox",
            image_id: "local://busybox",
            init: false,
            restarts: 0,
            running_since: None,
            container_id: None,
            terminated: None,
            last: None,
            waiting: None,
            ready: false,
            started: false,
            exit_code: None,
            will_restart: false,
        }
    }

    fn input<'a>(pod: &'a Pod, cs: Vec<Ctr<'a>>) -> Input<'a> {
        Input {
            pod,
            ip: Some("10.244.1.2"),
            host_ip: "192.168.1.2",
            start_time: "2024-01-01T00:00:00Z",
            sandbox_ready: true,
            restart_policy: "Always",
            containers: cs,
        }
    }

    #[test]
    fn running_and_ready() {
        let pod = Pod::default();
        let mut c = ctr("web");
        c.running_since = Some("2024-01-01T00:00:01Z");
        c.ready = true;
        c.started = true;
        let st = build(&input(&pod, vec![c]));
        assert_eq!(st["phase"], "Running");
        assert_eq!(st["podIP"], "10.244.1.2");
        assert_eq!(
            st["containerStatuses"][0]["state"]["running"]["startedAt"],
            "2024-01-01T00:00:01Z"
        );
        let ready = st["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["status"], "True");
    }

    #[test]
    fn crash_loop_shows_last_state() {
        let pod = Pod::default();
        let mut c = ctr("app");
        c.restarts = 2;
        c.exit_code = Some(1);
        c.will_restart = true;
        c.terminated = Some(json!({"exitCode": 1, "reason": "Error"}));
        c.waiting = Some(("CrashLoopBackOff".into(), Some("back-off 10s".into())));
        let st = build(&input(&pod, vec![c]));
        assert_eq!(st["phase"], "Running");
        let cs = &st["containerStatuses"][0];
        assert_eq!(cs["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert_eq!(cs["lastState"]["terminated"]["exitCode"], 1);
        assert_eq!(cs["restartCount"], 2);
    }

    #[test]
    fn phases() {
        let pod = Pod::default();
        let mut init = ctr("init");
        init.init = true;
        let main = ctr("main");
        let st = build(&input(&pod, vec![init, main]));
        assert_eq!(st["phase"], "Pending");
        assert_eq!(
            st["containerStatuses"][0]["state"]["waiting"]["reason"],
            "PodInitializing"
        );
        let mut done = ctr("job");
        done.exit_code = Some(0);
        done.terminated = Some(json!({"exitCode": 0, "reason": "Completed"}));
        assert_eq!(
            build(&input(&pod, vec![done])).get("phase").unwrap(),
            "Succeeded"
        );
        let mut failed = ctr("job");
        failed.exit_code = Some(2);
        assert_eq!(phase(&input(&pod, vec![failed])), "Failed");
    }
}
