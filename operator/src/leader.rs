//! Leader election on a coordination.k8s.io/v1 Lease, so two replicas can run with one active.
//!
//! The protocol follows client-go's: a candidate takes the Lease when it is free or when its
//! record has not changed for a whole lease duration (measured on the candidate's own clock,
//! so clock skew between nodes does not matter); every write carries the resourceVersion read
//! before it, so two candidates cannot both win. The leader renews every retry period and
//! gives up when it could not renew within the renew deadline.
//!
//! No attempt can outlive its claim: each attempt to acquire or renew is bounded by the time
//! left before the renew deadline (as client-go bounds it with a context), so a stalled API
//! server cannot keep a leader waiting past its lease. When leadership is lost the controller
//! is told to stop, and is cancelled if it has not stopped within [`LeaseConfig::stop_grace`],
//! which ends before a standby may take the Lease over.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::Client;
use tokio::sync::{oneshot, watch};

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

    /// How long a controller that lost leadership may take to stop by itself before it is
    /// cancelled: half the margin between the renew deadline and the lease duration, so it has
    /// stopped before a standby can see the Lease expire (2.5 s with the defaults).
    pub(crate) fn stop_grace(&self) -> Duration {
        self.lease_duration.saturating_sub(self.renew_deadline) / 2
    }
}

/// Why an attempt on the Lease failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LeaseError {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("the API server did not answer within {0:?}")]
    TimedOut(Duration),
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

    /// One attempt, given up (and counted as failed) when it has not finished within `limit`.
    pub(crate) async fn attempt(&mut self, limit: Duration) -> Result<bool, LeaseError> {
        match tokio::time::timeout(limit, self.try_acquire_or_renew()).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(LeaseError::TimedOut(limit)),
        }
    }

    /// Waits until this candidate holds the Lease, and returns when the winning attempt
    /// started, or None when `stop` fires. Each attempt is bounded by the renew deadline: a
    /// write that lands late must not make a leader that believes its term started long ago.
    pub(crate) async fn acquire(&mut self, stop: &Stop) -> Option<Instant> {
        loop {
            if *stop.borrow() {
                return None;
            }
            let started = Instant::now();
            let attempt = self.attempt(self.config.renew_deadline);
            let result = tokio::select! {
                result = attempt => result,
                _ = stopped(stop.clone()) => return None,
            };
            match result {
                Ok(true) => return Some(started),
                Ok(false) => {}
                Err(e) => warn!(lease = %self.config.name, "could not acquire lease: {e}"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.retry_period) => {}
                _ = stopped(stop.clone()) => return None,
            }
        }
    }

    /// Renews the Lease until `stop` fires (true) or renewal failed for longer than the renew
    /// deadline (false: leadership is lost). `acquired` is when the attempt that won the Lease
    /// started. The deadline counts from the start of the last successful attempt (the record
    /// it wrote is no older than that), and no attempt runs past it.
    pub(crate) async fn hold(&mut self, stop: &Stop, acquired: Instant) -> bool {
        let mut renewed = acquired;
        loop {
            let deadline = renewed + self.config.renew_deadline;
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::select! {
                _ = tokio::time::sleep(self.config.retry_period.min(left)) => {}
                _ = stopped(stop.clone()) => return true,
            }
            let started = Instant::now();
            let left = deadline.saturating_duration_since(started);
            if left.is_zero() {
                warn!(lease = %self.config.name, "lease not renewed within the deadline");
                return false;
            }
            let attempt = self.attempt(left);
            let result = tokio::select! {
                result = attempt => result,
                _ = stopped(stop.clone()) => return true,
            };
            match result {
                Ok(true) => renewed = started,
                Ok(false) => {
                    warn!(lease = %self.config.name, "lease taken by another replica");
                    return false;
                }
                Err(e) => warn!(lease = %self.config.name, "could not renew lease: {e}"),
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
        // The term counts from the start of the winning attempt, not from the answer.
        let Some(acquired) = elector.acquire(&shutdown).await else {
            break;
        };
        info!(lease = %elector.config().name, "leading: starting the controller");
        on_change(true);
        let grace = elector.config().stop_grace();
        let lease_name = elector.config().name.clone();
        let (stop_tx, stop_rx) = watch::channel(false);
        let (lost_tx, lost_rx) = oneshot::channel::<()>();
        let holding = async {
            let kept = elector.hold(&shutdown, acquired).await;
            if !kept {
                let _ = lost_tx.send(());
            }
            // Stops the term whether leadership was lost or shutdown was asked for.
            let _ = stop_tx.send(true);
            kept
        };
        let running = async {
            let term = term(stop_rx);
            tokio::pin!(term);
            tokio::select! {
                () = &mut term => {}
                // Leadership lost: a controller stuck in a call may not go on writing once a
                // standby can take over, so it is dropped when it has not stopped in time.
                Ok(()) = lost_rx => {
                    if tokio::time::timeout(grace, &mut term).await.is_err() {
                        warn!(lease = %lease_name, "controller did not stop within {grace:?}: cancelled");
                    }
                }
            }
        };
        let (kept, ()) = tokio::join!(holding, running);
        on_change(false);
        if *shutdown.borrow() || kept {
            // Bounded too: a silent API server must not hold the shutdown up.
            let limit = elector.config().renew_deadline;
            match tokio::time::timeout(limit, elector.release()).await {
                Ok(Ok(())) => info!(lease = %lease_name, "lease released"),
                Ok(Err(e)) => warn!(lease = %lease_name, "could not release lease: {e}"),
                Err(_) => warn!(lease = %lease_name, "could not release lease within {limit:?}"),
            }
            break;
        }
        warn!(lease = %lease_name, "leadership lost: controller stopped");
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

    /// The Lease held by pod-a, then an API server that takes every request and never answers.
    fn held_then_silent(server: crate::mock::ApiServer) -> tokio::task::JoinHandle<Vec<Value>> {
        let mine = lease(Some("pod-a"), "2030-01-01T00:00:00.000000Z", 1);
        let mut scenario = vec![
            Expect::get(LEASE, Reply::Json(mine)),
            Expect::put(LEASE, Reply::Echo),
        ];
        // A renewal, then (in run_elected) attempts to take the Lease again: none answered.
        scenario.extend((0..8).map(|_| Expect::get(LEASE, Reply::Never)));
        server.run_within(scenario, Duration::from_secs(3600))
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_whose_renewal_never_answers_steps_down_by_the_renew_deadline() {
        let (client, server) = client();
        let server = held_then_silent(server);
        let mut e = elector(client, "pod-a");
        let (_keep, stop) = watch::channel(false);
        let acquired = e.acquire(&stop).await.expect("acquired");
        let config = e.config().clone();
        // Without a bound on the attempt, hold() would wait for the answer for ever.
        let kept = tokio::time::timeout(config.lease_duration, e.hold(&stop, acquired))
            .await
            .expect("hold() gave up before the lease could expire");
        let held_for = acquired.elapsed();
        assert!(!kept, "leadership is lost");
        assert!(
            held_for <= config.renew_deadline,
            "stepped down after {held_for:?}, the renew deadline is {:?}",
            config.renew_deadline
        );
        assert!(
            held_for >= config.renew_deadline - config.retry_period,
            "stepped down after {held_for:?}: too early, it kept trying until the deadline"
        );
        server.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_controller_that_ignores_the_stop_is_cancelled_before_the_lease_expires() {
        use std::sync::{Arc, Mutex};
        let (client, server) = client();
        let server = held_then_silent(server);
        let changes: Arc<Mutex<Vec<(bool, Instant)>>> = Arc::default();
        let seen = changes.clone();
        let (_keep, shutdown) = watch::channel(false);
        let started = Instant::now();
        let elected = tokio::spawn(run_elected(
            elector(client, "pod-a"),
            shutdown,
            move |leading| seen.lock().expect("lock").push((leading, Instant::now())),
            // A controller stuck in a call that never returns, deaf to the stop signal.
            |_stop| std::future::pending::<()>(),
        ));
        let config = LeaseConfig::new("leader".into(), "ops".into(), "pod-a".into());
        let lost = loop {
            if let Some((_, at)) = changes.lock().expect("lock").iter().find(|(l, _)| !l) {
                break *at;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the controller was never stopped"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let led_for = lost - started;
        assert!(
            led_for < config.lease_duration,
            "the controller ran {led_for:?} while the lease lasts {:?}",
            config.lease_duration
        );
        assert!(led_for <= config.renew_deadline + config.stop_grace());
        elected.abort();
        server.abort();
    }
}
