//! Image garbage collection under disk pressure, as the kubelet's image GC and eviction
//! manager do it: the image store's filesystem is checked periodically; above the high-water
//! mark (`--image-gc-high-threshold`, 85% used) unused images are removed, least recently used
//! first, until usage is back at the low mark (80%); if that is not possible and free space is
//! below the eviction threshold (15% available, the kubelet's `imagefs.available`), the node
//! reports DiskPressure. Outcomes are posted as events on the Node.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::json;

use super::reference::ImageRef;
use super::service::ImageService;
use super::store::GcReport;

/// Thresholds, in percent of the filesystem holding the image store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcPolicy {
    /// Collect when more than this much is used.
    pub high_percent: u8,
    /// Collect down to this much used.
    pub low_percent: u8,
    /// DiskPressure when less than this much is available after collecting.
    pub eviction_available_percent: u8,
    /// How often the filesystem is checked.
    pub period: Duration,
}

impl Default for GcPolicy {
    fn default() -> Self {
        Self {
            high_percent: 85,
            low_percent: 80,
            eviction_available_percent: 15,
            period: Duration::from_secs(10),
        }
    }
}

/// Size and free space of a filesystem, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsStats {
    pub capacity: u64,
    pub available: u64,
}

impl FsStats {
    /// `statvfs` of the filesystem holding `path`.
    pub fn of(path: &Path) -> std::io::Result<Self> {
        let s = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
        let frag = s.fragment_size();
        Ok(Self {
            capacity: s.blocks().saturating_mul(frag),
            available: s.blocks_available().saturating_mul(frag),
        })
    }

    fn used(&self) -> u64 {
        self.capacity.saturating_sub(self.available)
    }

    /// Whether more than `percent` of the filesystem is used.
    fn used_above(&self, percent: u8) -> bool {
        u128::from(self.used()) * 100 > u128::from(self.capacity) * u128::from(percent)
    }
}

impl GcPolicy {
    /// Bytes to free now, if the filesystem is above the high mark: down to the low mark.
    pub fn bytes_to_free(&self, fs: FsStats) -> Option<u64> {
        if fs.capacity == 0 || !fs.used_above(self.high_percent) {
            return None;
        }
        let low = u128::from(fs.capacity) * u128::from(self.low_percent) / 100;
        let excess = u128::from(fs.used()).saturating_sub(low);
        Some(u64::try_from(excess).unwrap_or(u64::MAX))
    }

    /// Whether free space is under the eviction threshold.
    pub fn under_pressure(&self, fs: FsStats) -> bool {
        fs.capacity > 0
            && u128::from(fs.available) * 100
                < u128::from(fs.capacity) * u128::from(self.eviction_available_percent)
    }
}

/// What one check did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Bytes the policy asked for (None: under the high mark, nothing done).
    pub wanted: Option<u64>,
    pub report: Option<GcReport>,
    /// DiskPressure after the check.
    pub pressure: bool,
}

impl Outcome {
    fn freed(&self) -> u64 {
        self.report
            .as_ref()
            .map_or(0, |r| r.bytes_before.saturating_sub(r.bytes_after))
    }
}

/// One check: stat the filesystem, collect if above the high mark, stat again.
pub async fn check(
    images: &ImageService,
    policy: &GcPolicy,
    stat: &(dyn Fn() -> std::io::Result<FsStats> + Send + Sync),
    in_use: &HashSet<String>,
) -> std::io::Result<Outcome> {
    let before = stat()?;
    let Some(wanted) = policy.bytes_to_free(before) else {
        return Ok(Outcome {
            wanted: None,
            report: None,
            pressure: policy.under_pressure(before),
        });
    };
    let usage = images
        .usage_bytes()
        .map_err(|e| std::io::Error::other(e.message()))?;
    let report = images
        .gc(in_use, usage.saturating_sub(wanted))
        .await
        .map_err(|e| std::io::Error::other(e.message()))?;
    let after = stat()?;
    Ok(Outcome {
        wanted: Some(wanted),
        report: Some(report),
        pressure: policy.under_pressure(after),
    })
}

/// Every image the pods bound to `node` name (spec and status), in every form the store may
/// know it by.
async fn images_in_use(client: &kube::Client, node: &str) -> Result<HashSet<String>, kube::Error> {
    let pods: Api<Pod> = Api::all(client.clone());
    let list = pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await?;
    let mut out = HashSet::new();
    for pod in list.items {
        let spec_images = pod.spec.iter().flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
                .filter_map(|c| c.image.clone())
        });
        let status_images = pod.status.iter().flat_map(|s| {
            s.container_statuses
                .iter()
                .flatten()
                .chain(s.init_container_statuses.iter().flatten())
                .flat_map(|c| [c.image.clone(), c.image_id.clone()])
        });
        for image in spec_images.chain(status_images).filter(|i| !i.is_empty()) {
            if let Ok(r) = ImageRef::parse(&image) {
                out.insert(r.to_string());
            }
            out.insert(image);
        }
    }
    Ok(out)
}

/// Post an event about the node (kubelet style: the node's name is its uid here).
async fn node_event(
    client: &kube::Client,
    node: &str,
    warning: bool,
    reason: &str,
    message: String,
) {
    let now = jiff::Timestamp::now();
    let ts = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let ev = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{node}.{:x}", now.as_nanosecond()), "namespace": "default"},
        "involvedObject": {"kind": "Node", "name": node, "uid": node},
        "reason": reason,
        "message": message,
        "type": if warning { "Warning" } else { "Normal" },
        "source": {"component": "kubelet", "host": node},
        "reportingComponent": "kubelet",
        "reportingInstance": node,
        "firstTimestamp": ts,
        "lastTimestamp": ts,
        "count": 1,
    });
    let Ok(ev) = serde_json::from_value::<Event>(ev) else {
        return;
    };
    let api: Api<Event> = Api::namespaced(client.clone(), "default");
    if let Err(e) = api.create(&PostParams::default(), &ev).await {
        tracing::debug!(error = %e, "post node event");
    }
}

/// The event an outcome deserves, if any: (warning, reason, message).
fn event_for(o: &Outcome) -> Option<(bool, &'static str, String)> {
    let wanted = o.wanted?;
    let report = o.report.as_ref()?;
    let freed = o.freed();
    if freed < wanted {
        return Some((
            true,
            "FreeDiskSpaceFailed",
            format!(
                "Failed to garbage collect required amount of images. Attempted to free {wanted} bytes, but only found {freed} bytes eligible to free."
            ),
        ));
    }
    Some((
        false,
        "ImageGCSucceeded",
        format!(
            "Removed {} unused images ({}), freeing {freed} bytes",
            report.removed.len(),
            report.removed.join(", ")
        ),
    ))
}

/// Check forever; `pressure` carries DiskPressure to the node status loop.
pub async fn gc_loop(
    images: Arc<ImageService>,
    client: kube::Client,
    node: String,
    policy: GcPolicy,
    pressure: Arc<AtomicBool>,
) {
    let root = images.root().to_path_buf();
    let stat = move || FsStats::of(&root);
    let mut last_failure_event: Option<Instant> = None;
    loop {
        tokio::time::sleep(policy.period).await;
        let in_use = match images_in_use(&client, &node).await {
            Ok(set) => set,
            Err(e) => {
                // Without knowing what is in use nothing may be removed.
                tracing::debug!(error = %e, "image GC: cannot list the node's pods");
                continue;
            }
        };
        let outcome = match check(&images, &policy, &stat, &in_use).await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "image GC failed");
                continue;
            }
        };
        pressure.store(outcome.pressure, Ordering::Relaxed);
        if let Some((warning, reason, message)) = event_for(&outcome) {
            tracing::info!(%reason, %message, "image GC");
            // A filesystem that stays full would post a failure every period: once per 5 min.
            let quiet = warning
                && last_failure_event.is_some_and(|t| t.elapsed() < Duration::from_secs(300));
            if !quiet {
                if warning {
                    last_failure_event = Some(Instant::now());
                }
                node_event(&client, &node, warning, reason, message).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn fs(capacity: u64, available: u64) -> FsStats {
        FsStats {
            capacity,
            available,
        }
    }

    #[test]
    fn collects_only_above_the_high_mark_down_to_the_low_mark() {
        let p = GcPolicy::default();
        assert_eq!(p.bytes_to_free(fs(100 * GIB, 20 * GIB)), None); // 80% used
        assert_eq!(p.bytes_to_free(fs(100 * GIB, 15 * GIB)), None); // exactly 85%
        // 90% used: free 10% to get to 80%.
        assert_eq!(p.bytes_to_free(fs(100 * GIB, 10 * GIB)), Some(10 * GIB));
        assert_eq!(p.bytes_to_free(fs(0, 0)), None);
        let custom = GcPolicy {
            high_percent: 50,
            low_percent: 40,
            ..GcPolicy::default()
        };
        assert_eq!(custom.bytes_to_free(fs(100, 40)), Some(20));
    }

    #[test]
    fn pressure_below_the_eviction_threshold() {
        let p = GcPolicy::default();
        assert!(!p.under_pressure(fs(100 * GIB, 20 * GIB)));
        assert!(!p.under_pressure(fs(100 * GIB, 15 * GIB)));
        assert!(p.under_pressure(fs(100 * GIB, 14 * GIB)));
        assert!(!p.under_pressure(fs(0, 0)));
    }

    fn sha(b: u8) -> String {
        format!("sha256:{}", hex::encode([b; 32]))
    }

    /// A store with two unused images of 1 MiB each (old, then new) and one in use.
    fn service(dir: &Path) -> ImageService {
        let svc = ImageService::open(dir, Vec::new()).unwrap();
        for (name, b, used) in [("old", 1u8, 10), ("new", 2, 20), ("busy", 3, 5)] {
            svc.put_test_image(
                &format!("docker.io/library/{name}:1"),
                &sha(b),
                used,
                1 << 20,
            );
        }
        svc
    }

    fn in_use() -> HashSet<String> {
        ["docker.io/library/busy:1".to_string()].into()
    }

    #[tokio::test]
    async fn frees_oldest_unused_images_and_reports_success() {
        let d = tempfile::tempdir().unwrap();
        let svc = service(d.path());
        let p = GcPolicy::default();
        // A 16 MiB filesystem, 13.7 MiB used (85.6%) of which the store is part: 0.9 MiB must
        // go to get back to 80%.
        const MIB: u64 = 1 << 20;
        let other = 137 * MIB / 10 - svc.usage_bytes().unwrap();
        let stat = || {
            let used = other + svc.usage_bytes().unwrap();
            Ok(fs(16 * MIB, 16 * MIB - used))
        };
        let o = check(&svc, &p, &stat, &in_use()).await.unwrap();
        // The oldest unused image is enough.
        assert_eq!(o.wanted, Some(137 * MIB / 10 - 128 * MIB / 10));
        assert_eq!(
            o.report.as_ref().unwrap().removed,
            vec!["docker.io/library/old:1"]
        );
        assert!(!o.pressure);
        let (warning, reason, _) = event_for(&o).unwrap();
        assert!(!warning);
        assert_eq!(reason, "ImageGCSucceeded");
        // Now at 80%: nothing more to do, no event.
        let o = check(&svc, &p, &stat, &in_use()).await.unwrap();
        assert_eq!(o.wanted, None);
        assert!(event_for(&o).is_none());
    }

    #[tokio::test]
    async fn sets_pressure_when_nothing_can_be_freed() {
        let d = tempfile::tempdir().unwrap();
        let svc = service(d.path());
        let p = GcPolicy::default();
        // 95% used by something other than images: removing every unused image is not enough.
        let stat = || Ok(fs(100 * GIB, 5 * GIB));
        let o = check(&svc, &p, &stat, &in_use()).await.unwrap();
        assert_eq!(o.report.as_ref().unwrap().removed.len(), 2);
        assert!(o.pressure);
        let (warning, reason, message) = event_for(&o).unwrap();
        assert!(warning);
        assert_eq!(reason, "FreeDiskSpaceFailed");
        assert!(message.contains(&format!("Attempted to free {} bytes", 15 * GIB)));
        // The image in use survived.
        assert!(svc.get("docker.io/library/busy:1").unwrap().is_some());
    }
}
