//! Leader election through a `coordination.k8s.io/v1` Lease, as client-go's leaderelection
//! does it: the holder renews `renewTime`; a candidate takes the lease over once it has not been
//! renewed for `leaseDurationSeconds`. Writes carry the lease's resourceVersion, so two
//! candidates cannot both win.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};

/// One candidate for one lease.
#[derive(Clone)]
pub struct LeaderElection {
    api: Api<Lease>,
    name: String,
    identity: String,
    lease_duration: Duration,
    renew_period: Duration,
}

impl LeaderElection {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_period: Duration::from_secs(2),
        }
    }

    /// Run `work` whenever this candidate leads; stop it when leadership is lost, then try again.
    pub async fn run<F, Fut>(self, mut work: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ()>,
    {
        loop {
            self.acquire().await;
            tracing::info!(lease = %self.name, identity = %self.identity, "became leader");
            tokio::select! {
                () = work() => return,
                () = self.keep() => {
                    tracing::warn!(lease = %self.name, "lost leadership; stopping");
                }
            }
        }
    }

    async fn acquire(&self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => {
                    tracing::debug!(lease = %self.name, error = %e, "leader election attempt failed")
                }
            }
            tokio::time::sleep(self.renew_period).await;
        }
    }

    /// Renew until that fails for longer than the lease duration.
    async fn keep(&self) {
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.renew_period).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_ok = tokio::time::Instant::now(),
                Ok(false) => return,
                Err(e) => {
                    tracing::debug!(lease = %self.name, error = %e, "lease renewal failed");
                    if last_ok.elapsed() > self.lease_duration {
                        return;
                    }
                }
            }
        }
    }

    /// Ok(true) when we hold the lease after this call.
    async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = MicroTime(jiff::Timestamp::now());
        let secs = i32::try_from(self.lease_duration.as_secs()).unwrap_or(15);
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(secs),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let ours = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        if !ours {
            let held_for = i64::from(spec.lease_duration_seconds.unwrap_or(secs));
            let expired = spec
                .renew_time
                .as_ref()
                .is_none_or(|t| now.0.as_second() - t.0.as_second() > held_for)
                || spec.holder_identity.as_deref().is_none_or(str::is_empty);
            if !expired {
                return Ok(false);
            }
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.lease_duration_seconds = Some(secs);
        spec.renew_time = Some(now);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}
