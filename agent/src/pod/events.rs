//! Events about pods, posted as the kubelet posts them (`source.component: kubelet`).
//! A repeat of an event (same pod, container, reason and message) bumps `count` and
//! `lastTimestamp` of the one already posted, as client-go's event correlator does, so a
//! failing probe or a crash loop does not pile up thousands of objects.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

/// How many distinct events the correlator remembers before it starts afresh.
const SEEN_MAX: usize = 4096;

/// Which events were posted already: key → (event name, count).
#[derive(Debug, Default)]
struct Correlator {
    seen: HashMap<String, (String, i32)>,
}

impl Correlator {
    /// Record one occurrence of `key`; `fresh` names a new event. Returns the event's name,
    /// its count so far, and whether it is a repeat (to patch rather than create).
    fn observe(&mut self, key: String, fresh: String) -> (String, i32, bool) {
        if let Some((name, count)) = self.seen.get_mut(&key) {
            *count = count.saturating_add(1);
            return (name.clone(), *count, true);
        }
        if self.seen.len() >= SEEN_MAX {
            self.seen.clear();
        }
        self.seen.insert(key, (fresh.clone(), 1));
        (fresh, 1, false)
    }

    /// Forget `key` (its event is gone from the API).
    fn forget(&mut self, key: &str) {
        self.seen.remove(key);
    }
}

/// Posts events for one node.
#[derive(Clone)]
pub struct Recorder {
    pub client: kube::Client,
    pub node: String,
    seen: Arc<Mutex<Correlator>>,
}

impl Recorder {
    pub fn new(client: kube::Client, node: String) -> Self {
        Self {
            client,
            node,
            seen: Arc::new(Mutex::new(Correlator::default())),
        }
    }

    /// Record an event about `pod` (and its container `container`, if any); fire and forget.
    pub fn record(
        &self,
        pod: &Pod,
        container: Option<&str>,
        warning: bool,
        reason: &str,
        message: String,
    ) {
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = pod.metadata.name.clone().unwrap_or_default();
        let now = jiff::Timestamp::now();
        let key = format!(
            "{}\0{}\0{reason}\0{message}\0{warning}",
            pod.metadata.uid.as_deref().unwrap_or_default(),
            container.unwrap_or_default()
        );
        let (event_name, count, repeat) = match self.seen.lock() {
            Ok(mut seen) => seen.observe(key.clone(), format!("{name}.{:x}", now.as_nanosecond())),
            Err(_) => (format!("{name}.{:x}", now.as_nanosecond()), 1, false),
        };
        let field_path = container.map(|c| {
            let init = pod
                .spec
                .as_ref()
                .and_then(|s| s.init_containers.as_ref())
                .is_some_and(|ics| ics.iter().any(|ic| ic.name == c));
            if init {
                format!("spec.initContainers{{{c}}}")
            } else {
                format!("spec.containers{{{c}}}")
            }
        });
        let ts = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let ev = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": event_name, "namespace": ns},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": name,
                "namespace": ns,
                "uid": pod.metadata.uid,
                "fieldPath": field_path,
            },
            "reason": reason,
            "message": message,
            "type": if warning { "Warning" } else { "Normal" },
            "source": {"component": "kubelet", "host": self.node},
            "reportingComponent": "kubelet",
            "reportingInstance": self.node,
            "firstTimestamp": ts,
            "lastTimestamp": ts,
            "count": 1,
        });
        let Ok(ev) = serde_json::from_value::<Event>(ev) else {
            return;
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let seen = self.seen.clone();
        tokio::spawn(async move {
            if repeat {
                let patch = json!({"count": count, "lastTimestamp": ts});
                match api
                    .patch(&event_name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => return,
                    Err(e) => {
                        // Gone (expired or deleted): post it anew below.
                        tracing::debug!(error = %e, "update event");
                        if let Ok(mut s) = seen.lock() {
                            s.forget(&key);
                        }
                    }
                }
            }
            if let Err(e) = api.create(&PostParams::default(), &ev).await {
                tracing::debug!(error = %e, "post event");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_bump_the_first_event() {
        let mut c = Correlator::default();
        assert_eq!(
            c.observe("a".into(), "p.1".into()),
            ("p.1".into(), 1, false)
        );
        assert_eq!(
            c.observe("b".into(), "p.2".into()),
            ("p.2".into(), 1, false)
        );
        assert_eq!(c.observe("a".into(), "p.3".into()), ("p.1".into(), 2, true));
        assert_eq!(c.observe("a".into(), "p.4".into()), ("p.1".into(), 3, true));
        c.forget("a");
        assert_eq!(
            c.observe("a".into(), "p.5".into()),
            ("p.5".into(), 1, false)
        );
    }

    #[test]
    fn memory_is_bounded() {
        let mut c = Correlator::default();
        for i in 0..SEEN_MAX + 10 {
            c.observe(i.to_string(), i.to_string());
        }
        assert!(c.seen.len() <= SEEN_MAX);
    }
}
