//! Leader election on a coordination.k8s.io/v1 Lease, so two replicas can run with one active.
//!
//! The protocol follows client-go's: a candidate takes the Lease when it is free or when its
//! record has not changed for a whole lease duration (measured on the candidate's own clock,
//! so clock skew between nodes does not matter); every write carries the resourceVersion read
//! before it, so two candidates cannot both win. The leader renews every retry period and
//! gives up when it could not renew within the renew deadline.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::Client;
use tokio::sync::watch;

use crate::shutdown::{stopped, Stop};
use tokio::time::Instant;
use tracing::{info, warn};

/// Timing and identity of a candidate.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub(crate) name: String,
    pub(crate) namespace: String,
    pub(crate) identity: String,
    /// How long a lease is valid without renewal.
    pub(crate) lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up leadership.
    pub(crate) renew_deadline: Duration,
    /// Pause between attempts to acquire or renew.
    pub(crate) retry_period: Duration,
}

impl LeaseConfig {
    /// client-go's defaults: 15s lease, 10s renew deadline, 2s retry period.
    pub fn new(name: String, namespace: String, identity: String) -> Self {
        Self {
            name,
            namespace,
            identity,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// One candidate for the Lease.
pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    /// The last lease record seen (holder and renew time) and when this candidate saw it change.
    observed: Option<(String, Instant)>,
}

impl Elector {
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
        }
    }

    pub(crate) fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// One attempt to take or renew the Lease. Ok(true) when this candidate holds it now.
    pub(crate) async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let duration_secs = i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(15);
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.config.identity.clone()),
                    lease_duration_seconds: Some(duration_secs),
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

        let mut spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let record = format!("{holder}|{:?}", spec.renew_time.as_ref().map(|t| t.0));
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|(seen, _)| *seen != record);
        if changed {
            self.observed = Some((record, Instant::now()));
        }
        let held_by_other = !holder.is_empty() && holder != self.config.identity;
        if held_by_other {
            let valid_for = spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs)
                .unwrap_or(self.config.lease_duration);
            let seen_at = self.observed.as_ref().map(|(_, at)| *at);
            if seen_at.is_some_and(|at| at.elapsed() < valid_for) {
                return Ok(false);
            }
        }

        if holder != self.config.identity {
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
            spec.holder_identity = Some(self.config.identity.clone());
        }
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(duration_secs);
        lease.spec = Some(spec);
        // `replace` sends the resourceVersion read above: a concurrent writer makes it fail
        // with 409 Conflict instead of both candidates winning.
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up so a standby takes over at once instead of after a lease duration.
    pub(crate) async fn release(&mut self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            return Ok(());
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        lease.spec = Some(spec);
        self.api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await?;
        Ok(())
    }

    /// Waits until this candidate holds the Lease (true) or `stop` fires (false).
    pub(crate) async fn acquire(&mut self, stop: &Stop) -> bool {
        loop {
            if *stop.borrow() {
                return false;
            }
            match self.try_acquire_or_renew().await {
                Ok(true) => return true,
                Ok(false) => {}
                Err(e) => warn!(lease = %self.config.name, "could not acquire lease: {e}"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.retry_period) => {}
                _ = stopped(stop.clone()) => return false,
            }
        }
    }

    /// Renews the Lease until `stop` fires (true) or renewal failed for longer than the renew
    /// deadline (false: leadership is lost).
    pub(crate) async fn hold(&mut self, stop: &Stop) -> bool {
        let mut last_renewal = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.config.retry_period) => {}
                _ = stopped(stop.clone()) => return true,
            }
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewal = Instant::now(),
                Ok(false) => {
                    warn!(lease = %self.config.name, "lease taken by another replica");
                    return false;
                }
                Err(e) => warn!(lease = %self.config.name, "could not renew lease: {e}"),
            }
            if last_renewal.elapsed() > self.config.renew_deadline {
                warn!(lease = %self.config.name, "lease not renewed within the deadline");
                return false;
            }
        }
    }
}

/// Runs `term` whenever this replica leads: waits as a standby, runs `term(stop)` while it
/// holds the Lease, stops it when leadership is lost (then waits again), and releases the
/// Lease on shutdown. `on_change` is told when leadership starts and ends.
pub async fn run_elected<T, Fut>(
    mut elector: Elector,
    shutdown: Stop,
    mut on_change: impl FnMut(bool),
    mut term: T,
) where
    T: FnMut(Stop) -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        info!(
            lease = %elector.config().name,
            identity = %elector.config().identity,
            "waiting to lead (standby)"
        );
        if !elector.acquire(&shutdown).await {
            break;
        }
        info!(lease = %elector.config().name, "leading: starting the controller");
        on_change(true);
        let (stop_tx, stop_rx) = watch::channel(false);
        let lost = async {
            let kept = elector.hold(&shutdown).await;
            // Stops the term whether leadership was lost or shutdown was asked for.
            let _ = stop_tx.send(true);
            kept
        };
        let (kept, ()) = tokio::join!(lost, term(stop_rx));
        on_change(false);
        if *shutdown.borrow() || kept {
            if let Err(e) = elector.release().await {
                warn!(lease = %elector.config().name, "could not release lease: {e}");
            } else {
                info!(lease = %elector.config().name, "lease released");
            }
            break;
        }
        warn!(lease = %elector.config().name, "leadership lost: controller stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::{client, finished, Expect, Reply};
    use serde_json::{json, Value};

    const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases";
    const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/leader";

    fn elector(client: Client, identity: &str) -> Elector {
        Elector::new(
            client,
            LeaseConfig::new("leader".into(), "ops".into(), identity.into()),
        )
    }

    fn lease(holder: Option<&str>, renewed: &str, transitions: i32) -> Value {
        json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "leader", "namespace": "ops", "resourceVersion": "7"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                     "renewTime": renewed, "leaseTransitions": transitions}
        })
    }

    #[tokio::test]
    async fn a_missing_lease_is_created_and_held() {
        let (client, server) = client();
        let server = server.run(vec![
            Expect::get(LEASE, Reply::NotFound),
            Expect::post(LEASES, Reply::Echo).checking(|body| {
                assert_eq!(body["spec"]["holderIdentity"], json!("pod-a"));
                assert_eq!(body["spec"]["leaseDurationSeconds"], json!(15));
            }),
        ]);
        let mut e = elector(client, "pod-a");
        assert_eq!(e.try_acquire_or_renew().await.ok(), Some(true));
        finished(server).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_held_by_another_is_taken_only_once_it_expires() {
        let held = lease(Some("pod-b"), "2030-01-01T00:00:00.000000Z", 3);
        let (client, server) = client();
        let patient = Duration::from_secs(3600);
        let server = server.run_within(
            vec![
                Expect::get(LEASE, Reply::Json(held.clone())),
                Expect::get(LEASE, Reply::Json(held.clone())),
                Expect::put(LEASE, Reply::Echo).checking(|body| {
                    // Optimistic concurrency: the write carries the version that was read.
                    assert_eq!(body["metadata"]["resourceVersion"], json!("7"));
                    assert_eq!(body["spec"]["holderIdentity"], json!("pod-a"));
                    assert_eq!(body["spec"]["leaseTransitions"], json!(4));
                }),
            ],
            patient,
        );
        let mut e = elector(client, "pod-a");
        assert_eq!(e.try_acquire_or_renew().await.ok(), Some(false), "standby");
        // The record did not change for a whole lease duration (on this candidate's clock).
        tokio::time::advance(Duration::from_secs(16)).await;
        assert_eq!(
            e.try_acquire_or_renew().await.ok(),
            Some(true),
            "taken over"
        );
        finished(server).await;
    }

    #[tokio::test]
    async fn renewal_keeps_the_lease_and_a_conflict_loses_the_race() {
        let mine = lease(Some("pod-a"), "2030-01-01T00:00:00.000000Z", 1);
        let (client, server) = client();
        let server = server.run(vec![
            Expect::get(LEASE, Reply::Json(mine.clone())),
            Expect::put(LEASE, Reply::Echo).checking(|body| {
                assert_eq!(body["spec"]["holderIdentity"], json!("pod-a"));
                assert_eq!(body["spec"]["leaseTransitions"], json!(1), "a renewal");
            }),
            Expect::get(LEASE, Reply::Json(mine)),
            Expect::put(LEASE, Reply::Conflict),
        ]);
        let mut e = elector(client, "pod-a");
        assert_eq!(e.try_acquire_or_renew().await.ok(), Some(true));
        assert_eq!(e.try_acquire_or_renew().await.ok(), Some(false));
        finished(server).await;
    }

    #[tokio::test]
    async fn release_gives_the_lease_up() {
        let mine = lease(Some("pod-a"), "2030-01-01T00:00:00.000000Z", 1);
        let (client, server) = client();
        let server = server.run(vec![
            Expect::get(LEASE, Reply::Json(mine)),
            Expect::put(LEASE, Reply::Echo).checking(|body| {
                assert!(body["spec"]
                    .get("holderIdentity")
                    .is_none_or(Value::is_null));
                assert_eq!(body["spec"]["leaseDurationSeconds"], json!(1));
            }),
        ]);
        let mut e = elector(client, "pod-a");
        e.release().await.expect("released");
        finished(server).await;
    }
}
