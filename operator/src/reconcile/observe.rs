//! The observe step: what the cluster holds, read once. The children come from the
//! Controllers' watch caches ([`ChildCache`]), so an unchanged reconcile sends no GET; the
//! ConfigMap a model names is read by GET (its content is not cached: the ConfigMap watch is
//! metadata only). A desired child the cache lacks is looked up by GET before it is created
//! ([`unseen`]): the cache holds only objects with the operator's label, and an object of
//! someone else's with the child's name must be seen, and refused, not taken over. The pods
//! and their Warning Events are read after the apply, since which of them matter depends on
//! the Deployment as applied.

use std::fmt::Debug;

use futures::StreamExt;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tracing::debug;

use crate::cache::ChildCache;
use crate::crd::IrisModel;
use crate::error::Error;
use crate::names::{activator_name, canary_name, selector_string, TRACK_CANARY, TRACK_LABEL};
use crate::reconcile::analysis::Traffic;
use crate::reconcile::apply::owned::{self, ours};
use crate::reconcile::desired::Desired;
use crate::reconcile::resolve::Resolved;
use crate::reconcile::rollout::CanaryFacts;
use crate::reconcile::rootcause::{self, PodEvents};
use crate::reconcile::status;
use crate::scrape::{Scrape, CONCURRENT_SCRAPES, MAX_PODS_PER_RECONCILE};

/// The objects an IrisModel names or owns, as read at the start of the reconcile.
pub(crate) struct Observed {
    /// The ConfigMap of a `configMap` source, None when absent or not named.
    pub(crate) config_map: Option<ConfigMap>,
    pub(crate) deployment: Option<Deployment>,
    /// The canary Deployment (`<name>-canary`), while a canary runs.
    pub(crate) canary: Option<Deployment>,
    /// The activator Deployment (`<name>-activator`) of a model that scales to zero.
    pub(crate) activator: Option<Deployment>,
    pub(crate) service: Option<Service>,
    pub(crate) hpa: Option<HorizontalPodAutoscaler>,
    pub(crate) pdb: Option<PodDisruptionBudget>,
}

/// Reads the ConfigMap the model names (if any) by GET, and the children from the cache.
pub(crate) async fn children(
    client: &Client,
    cache: &ChildCache,
    model: &IrisModel,
    name: &str,
    namespace: &str,
) -> Result<Observed, Error> {
    let config_map = match &model.spec.model.source.config_map {
        Some(source) => get(client, namespace, &source.name).await?,
        None => None,
    };
    // The canary's and the activator's names are derived from the model's: an object under
    // either that this IrisModel does not control is someone else's, hidden from the rest of
    // the reconcile (never analysed, scaled or deleted); a write under its name finds it again.
    let owner = model.controller_owner_ref(&());
    let ours = |found: Option<Deployment>| owner.as_ref().and_then(|o| ours(found, o));
    Ok(Observed {
        config_map,
        deployment: cache.deployments.get(namespace, name),
        canary: ours(cache.deployments.get(namespace, &canary_name(name))),
        activator: ours(cache.deployments.get(namespace, &activator_name(name))),
        service: cache.services.get(namespace, name),
        hpa: cache.hpas.get(namespace, name),
        pdb: cache.pdbs.get(namespace, name),
    })
}

/// Looks up, by GET, each desired child the cache does not hold: one about to be created, or
/// a name taken by an object without the operator's label. Costs nothing once the children
/// exist.
pub(crate) async fn unseen(
    client: &Client,
    observed: &mut Observed,
    desired: &Desired,
    name: &str,
    namespace: &str,
) -> Result<(), Error> {
    if observed.deployment.is_none() {
        observed.deployment = get(client, namespace, name).await?;
    }
    if observed.service.is_none() {
        observed.service = get(client, namespace, name).await?;
    }
    if desired.hpa.is_some() && observed.hpa.is_none() {
        observed.hpa = get(client, namespace, name).await?;
    }
    if desired.pdb.is_some() && observed.pdb.is_none() {
        observed.pdb = get(client, namespace, name).await?;
    }
    if desired.activator.is_some() && observed.activator.is_none() {
        observed.activator = get(client, namespace, &activator_name(name)).await?;
    }
    Ok(())
}

/// Reads an object, None when it does not exist, from the API server's watch cache
/// (resourceVersion "0"): the operator reacts to watch events, which come from that same cache.
pub(crate) async fn get<K>(client: &Client, namespace: &str, name: &str) -> Result<Option<K>, Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned,
{
    owned::read(client, namespace, name).await
}

/// The pods of an IrisModel and the Warning Events of the few that are not ready.
#[derive(Default)]
pub(crate) struct Pods {
    pub(crate) pods: Vec<Pod>,
    pub(crate) events: PodEvents,
    /// Whether the pods were listed (`pods` is empty otherwise, whatever runs).
    pub(crate) read: bool,
}

/// Pods are listed while the rollout of the applied Deployment is incomplete, to explain why,
/// and then the Warning Events of the few that are not ready; and once it is complete when
/// `image_unknown` (status.image has no image ID of the current image yet) and pods should run.
pub(crate) async fn pods(
    client: &Client,
    deployment: &Deployment,
    name: &str,
    namespace: &str,
    image_unknown: bool,
) -> Result<Pods, Error> {
    let rollout = status::rollout(deployment);
    if rollout.complete && !(image_unknown && rollout.desired > 0) {
        return Ok(Pods::default());
    }
    let pods = list_pods(client, name, namespace).await?;
    let events = match status::template_hash(deployment) {
        Some(hash) => pod_events(client, namespace, &pods, hash).await?,
        None => PodEvents::new(),
    };
    Ok(Pods {
        pods,
        events,
        read: true,
    })
}

/// The pods of an IrisModel (stable and canary), from the API server's watch cache.
pub(crate) async fn list_pods(
    client: &Client,
    name: &str,
    namespace: &str,
) -> Result<Vec<Pod>, Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    Ok(api
        .list(
            &ListParams::default()
                .labels(&selector_string(name))
                .match_any(),
        )
        .await
        .map_err(Error::kube("list pods"))?
        .items)
}

/// The Warning Events of the not-ready pods of the current version (a few of them): one list
/// per pod, by field selector and with a limit (which the watch cache would ignore, so these
/// are read from etcd). No watch.
async fn pod_events(
    client: &Client,
    namespace: &str,
    pods: &[Pod],
    current_hash: &str,
) -> Result<PodEvents, Error> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    let mut events = PodEvents::new();
    for pod in rootcause::pods_to_explain(pods, current_hash) {
        let list = api
            .list(
                &ListParams::default()
                    .fields(&rootcause::event_selector(&pod))
                    .limit(rootcause::MAX_EVENTS_PER_POD),
            )
            .await
            .map_err(Error::kube("list pod events"))?;
        events.insert(pod, list.items);
    }
    Ok(events)
}

/// Each pod's `/metrics` page (over HTTPS when the model serves TLS), in the order of `pods`,
/// for the first [`MAX_PODS_PER_RECONCILE`] of them only (the rest are not scraped: the
/// answer is shorter than `pods` then), [`CONCURRENT_SCRAPES`] at a time; a pod without an IP
/// yet, or that does not answer, gives why not.
pub(crate) async fn scrape(
    scraper: &dyn Scrape,
    pods: &[Pod],
    resolved: &Resolved,
) -> Vec<Result<String, String>> {
    let (port, https) = (resolved.port, resolved.tls_secret.is_some());
    // Gathered first: a stream over a closure borrowing the scraper is not provably Send.
    let pages: Vec<_> = pods
        .iter()
        .take(MAX_PODS_PER_RECONCILE)
        .map(|pod| {
            let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
            async move {
                let Some(ip) = ip else {
                    return Err("no pod IP yet".to_string());
                };
                let page = scraper.metrics(&ip, port, https).await;
                if let Err(e) = &page {
                    debug!(pod_ip = %ip, "metrics scrape failed: {e}");
                }
                page
            }
        })
        .collect();
    // `buffered` keeps the pods' order whatever order the answers come in.
    futures::stream::iter(pages)
        .buffered(CONCURRENT_SCRAPES)
        .collect()
        .await
}

/// The ready pods to scrape, in a stable order (by name: the same pods from one reconcile to
/// the next, when there are more than [`MAX_PODS_PER_RECONCILE`]).
pub(crate) fn ready_by_name(pods: Vec<Pod>) -> Vec<Pod> {
    let mut ready: Vec<Pod> = pods.into_iter().filter(rootcause::is_ready).collect();
    ready.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    ready
}

/// A pod's prediction traffic from its page; a page that is unusable gives none, and why.
fn traffic(pod: &Pod, page: String) -> Traffic {
    Traffic::read(&page).unwrap_or_else(|why| {
        let pod = pod.metadata.name.as_deref().unwrap_or("?");
        debug!(pod, "{why}");
        Traffic::unusable(format!("pod {pod}: {why}"))
    })
}

/// While a canary runs: the canary pods' and the stable pods' prediction traffic, read from
/// each ready pod's own /metrics, and why a canary pod is not ready (pod status and Warning
/// Events of a few of them). One pod list, one scrape per ready pod, the canary's first (at
/// most [`MAX_PODS_PER_RECONCILE`] in all).
pub(crate) async fn canary(
    client: &Client,
    scraper: &dyn Scrape,
    canary: &Deployment,
    resolved: &Resolved,
    now: &Time,
) -> Result<CanaryFacts, Error> {
    let (name, namespace) = (resolved.name.as_str(), resolved.namespace.as_str());
    let pods = list_pods(client, name, namespace).await?;
    let is_canary = |pod: &Pod| {
        pod.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(TRACK_LABEL))
            .is_some_and(|t| t == TRACK_CANARY)
    };
    let (canary_pods, stable_pods): (Vec<Pod>, Vec<Pod>) =
        pods.into_iter().partition(|pod| is_canary(pod));
    let failure = match status::template_hash(canary) {
        Some(hash) => {
            let events = pod_events(client, namespace, &canary_pods, hash).await?;
            rootcause::pod_failure(&canary_pods, hash, &events, now)
                .map(|(reason, message)| format!("{reason}: {message}"))
        }
        None => None,
    };
    // One scrape of both sides, the canary's pods first (they win the cap); the answers come
    // back in that order.
    let mut ready = ready_by_name(canary_pods);
    let split = ready.len();
    ready.extend(ready_by_name(stable_pods));
    let pages = scrape(scraper, &ready, resolved).await;
    let mut read = ready
        .iter()
        .zip(pages)
        .map(|(pod, page)| page.ok().map(|page| traffic(pod, page)));
    let canary_traffic: Vec<Traffic> = read.by_ref().take(split).flatten().collect();
    let stable_traffic: Vec<Traffic> = read.flatten().collect();
    Ok(CanaryFacts {
        canary: (!canary_traffic.is_empty()).then(|| Traffic::sum(&canary_traffic)),
        stable: Traffic::sum(&stable_traffic),
        failure,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use futures::future::BoxFuture;
    use serde_json::json;

    use super::*;
    use crate::context::Settings;
    use crate::fixtures::model;
    use crate::reconcile::artifact::BuiltinCache;
    use crate::reconcile::resolve::resolve;

    /// Answers each IP with itself after a while, counting the scrapes in flight.
    #[derive(Default)]
    struct Slow {
        in_flight: Arc<AtomicUsize>,
        most: Arc<AtomicUsize>,
    }

    impl Scrape for Slow {
        fn metrics(&self, ip: &str, _: i32, _: bool) -> BoxFuture<'static, Result<String, String>> {
            let (in_flight, most, ip) = (self.in_flight.clone(), self.most.clone(), ip.to_string());
            Box::pin(async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                // Later pods answer sooner: the answers still come back in the pods' order.
                let last: u64 = ip
                    .rsplit('.')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                tokio::time::sleep(std::time::Duration::from_millis(40 - last)).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                Ok(ip)
            })
        }
    }

    fn pod(name: &str, ip: Option<String>, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "status": {"podIP": ip, "phase": "Running",
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        }))
        .expect("pod")
    }

    #[tokio::test]
    async fn at_most_sixteen_pods_are_scraped_four_at_a_time_in_their_order() {
        let resolved = resolve(
            &model("iris", 1),
            &Settings::default(),
            None,
            &BuiltinCache::default(),
        )
        .expect("resolves");
        let mut pods: Vec<Pod> = (0..20)
            .rev()
            .map(|i| pod(&format!("p{i:02}"), Some(format!("10.0.0.{i}")), true))
            .collect();
        pods.push(pod("p99", Some("10.0.0.99".into()), false));
        pods.push(pod("p03a", None, true));
        let ready = ready_by_name(pods);
        assert_eq!(ready.len(), 21);
        assert_eq!(ready[0].metadata.name.as_deref(), Some("p00"));
        assert_eq!(ready[4].metadata.name.as_deref(), Some("p03a"));
        let scraper = Slow::default();
        let pages = scrape(&scraper, &ready, &resolved).await;
        assert_eq!(pages.len(), MAX_PODS_PER_RECONCILE);
        assert_eq!(pages[0], Ok("10.0.0.0".to_string()));
        assert_eq!(pages[4], Err("no pod IP yet".to_string()));
        assert_eq!(pages[15], Ok("10.0.0.14".to_string()));
        assert_eq!(scraper.most.load(Ordering::SeqCst), CONCURRENT_SCRAPES);
    }
}
