//! The observe step: every read of a reconcile, once, into [`Observed`]. The children come
//! from the Controllers' watch caches ([`ChildCache`]), so an unchanged reconcile sends no GET;
//! the ConfigMap a model names is read by GET (its content is not cached: the ConfigMap watch is
//! metadata only). Once the desired children are known ([`rest`]): each one the cache lacks is
//! looked up by GET before it is created (the cache holds only objects with the operator's
//! label, and an object of someone else's with the child's name must be seen, and refused, not
//! taken over), with the activator's RBAC when it is to be written or deleted; then, when
//! something needs them, the pods (one list), the Warning Events of the few that are not ready,
//! and the ready pods' `/metrics` pages (one scrape of each, at most
//! [`crate::scrape::MAX_PODS_PER_RECONCILE`]; [`pages`]), read into the canary's traffic and
//! the scaler's sample.

use std::fmt::Debug;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;

use crate::cache::ChildCache;
use crate::crd::{IrisModel, RolloutStrategy};
use crate::error::Error;
use crate::names::{activator_name, canary_name, selector_string, TRACK_CANARY, TRACK_LABEL};
use crate::rate::Sample;
use crate::reconcile::analysis::Traffic;
use crate::reconcile::compare::{contains, stamp};
use crate::reconcile::desired::Desired;
use crate::reconcile::owned::{self, ours};
use crate::reconcile::progress::{self, template_hash};
use crate::reconcile::resolve::Resolved;
use crate::reconcile::rollout::CanaryFacts;
use crate::reconcile::rootcause::{self, PodEvents};
use crate::reconcile::{image, scaler};
use crate::scrape::Scrape;
use pages::{rate_sample, read_page, ready_by_name, scrape, sink_failing, traffic_of, Unread};

mod pages;

/// The objects an IrisModel names or owns, and what its pods say, as read by this reconcile.
pub(crate) struct Observed {
    /// The ConfigMap of a `configMap` source, None when absent or not named.
    pub(crate) config_map: Option<ConfigMap>,
    pub(crate) deployment: Option<Deployment>,
    /// The canary Deployment (`<name>-canary`) of this IrisModel, while a canary runs.
    pub(crate) canary: Option<Deployment>,
    /// What holds the canary's name when a canary may start and none of ours runs: a write
    /// there is checked against it (None: the name is free).
    pub(crate) canary_name: Option<Deployment>,
    /// The activator Deployment (`<name>-activator`) of a model that scales to zero.
    pub(crate) activator: Option<Deployment>,
    /// The activator's ServiceAccount, Role and RoleBinding, read only when the activator is
    /// to be written or deleted.
    pub(crate) activator_rbac: Option<ActivatorRbac>,
    pub(crate) service: Option<Service>,
    pub(crate) hpa: Option<HorizontalPodAutoscaler>,
    pub(crate) pdb: Option<PodDisruptionBudget>,
    /// The pods and what they say (empty until [`rest`]).
    pub(crate) live: Live,
}

/// What holds the names of the activator's RBAC objects.
#[derive(Default)]
pub(crate) struct ActivatorRbac {
    pub(crate) account: Option<ServiceAccount>,
    pub(crate) role: Option<Role>,
    pub(crate) binding: Option<RoleBinding>,
}

/// The pods of an IrisModel and what they say, read when something needs them.
#[derive(Default)]
pub(crate) struct Live {
    /// The model's pods (stable and canary); empty when they were not listed.
    pub(crate) pods: Vec<Pod>,
    /// Whether the pods were listed.
    pub(crate) pods_read: bool,
    /// The Warning Events of the few stable pods that are not ready.
    pub(crate) events: PodEvents,
    /// While a canary runs: its pods' and the stable pods' traffic, and why a canary pod
    /// fails.
    pub(crate) canary: CanaryFacts,
    /// For a model autoscaled on its request rate: its ready pods' counters.
    pub(crate) sample: Option<Sample>,
    /// For a model with `spec.logging`: a pod whose payload log keeps failing, and how.
    pub(crate) sink_failing: Option<String>,
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
        canary_name: None,
        activator: ours(cache.deployments.get(namespace, &activator_name(name))),
        activator_rbac: None,
        service: cache.services.get(namespace, name),
        hpa: cache.hpas.get(namespace, name),
        pdb: cache.pdbs.get(namespace, name),
        live: Live::default(),
    })
}

/// The reads that depend on what is desired: the children the cache lacks, then the pods and
/// what they say when the rollout, the status or the scaler needs them.
pub(crate) async fn rest(
    client: &Client,
    scraper: &dyn Scrape,
    observed: &mut Observed,
    (model, resolved, desired): (&IrisModel, &Resolved, &Desired),
    now: &Time,
) -> Result<(), Error> {
    unseen(client, observed, (model, resolved, desired)).await?;
    refuse_foreign(resolved, observed)?;
    let live = live(client, scraper, observed, (model, resolved, desired), now).await?;
    observed.live = live;
    Ok(())
}

/// Looks up, by GET, each desired child the cache does not hold: one about to be created, or
/// a name taken by an object without the operator's label. Costs nothing once the children
/// exist.
async fn unseen(
    client: &Client,
    observed: &mut Observed,
    (model, resolved, desired): (&IrisModel, &Resolved, &Desired),
) -> Result<(), Error> {
    let (name, namespace) = (resolved.name.as_str(), resolved.namespace.as_str());
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
    if may_start_canary(model, desired, observed) {
        observed.canary_name = get(client, namespace, &canary_name(name)).await?;
    }
    if activator_changes(desired, observed.activator.as_ref())? {
        let rbac = activator_name(name);
        observed.activator_rbac = Some(ActivatorRbac {
            account: get(client, namespace, &rbac).await?,
            role: get(client, namespace, &rbac).await?,
            binding: get(client, namespace, &rbac).await?,
        });
    }
    Ok(())
}

/// A child under the model's own name (Deployment, Service, HPA, PDB) or the activator's (and
/// its RBAC, when read) that this IrisModel does not control stops the reconcile before anything else is read or
/// written (a ResourceConflict names it; each write checks again).
fn refuse_foreign(resolved: &Resolved, observed: &Observed) -> Result<(), Error> {
    let owner = &resolved.owner;
    owned::claim(observed.deployment.as_ref(), owner)?;
    owned::claim(observed.service.as_ref(), owner)?;
    owned::claim(observed.hpa.as_ref(), owner)?;
    owned::claim(observed.pdb.as_ref(), owner)?;
    owned::claim(observed.activator.as_ref(), owner)?;
    if let Some(rbac) = &observed.activator_rbac {
        owned::claim(rbac.account.as_ref(), owner)?;
        owned::claim(rbac.role.as_ref(), owner)?;
        owned::claim(rbac.binding.as_ref(), owner)?;
    }
    Ok(())
}

/// Whether a canary of this change may start while none of ours runs: its name is then
/// looked up, since the cache hides (or lacks) what holds it.
fn may_start_canary(model: &IrisModel, desired: &Desired, observed: &Observed) -> bool {
    by_canary(model)
        && observed.canary.is_none()
        && observed
            .deployment
            .as_ref()
            .is_some_and(|d| template_hash(d) != template_hash(&desired.deployment))
}

/// Whether the model's changes roll out through a canary.
fn by_canary(model: &IrisModel) -> bool {
    model
        .spec
        .rollout
        .as_ref()
        .is_some_and(|r| r.strategy == RolloutStrategy::Canary)
}

/// Whether the activator is to be written (wanted, and not as desired) or deleted (not wanted,
/// and running): its RBAC is then read, for the ownership rule.
fn activator_changes(desired: &Desired, observed: Option<&Deployment>) -> Result<bool, Error> {
    Ok(match (&desired.activator, observed) {
        (Some(activator), Some(observed)) => !contains(
            Some(&serde_json::to_value(observed)?),
            &serde_json::to_value(stamp(activator.deployment.clone())?)?,
        ),
        (Some(_), None) => true,
        (None, observed) => observed.is_some(),
    })
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

/// What needs the pods: the status while the stable rollout is incomplete (to explain why) or
/// while status.image does not know the running image; a canary's analysis; the scaler.
struct Needs {
    explain: bool,
    canary: bool,
    rate: bool,
    /// The payload log's sink, read from the pods' pages.
    logging: bool,
}

impl Needs {
    fn of(model: &IrisModel, resolved: &Resolved, observed: &Observed) -> Needs {
        let previous_image = model.status.as_ref().and_then(|s| s.image.as_ref());
        let image_unknown = image::needs_pods(previous_image, &resolved.image);
        let explain = observed.deployment.as_ref().is_some_and(|d| {
            let rollout = progress::rollout(d);
            !rollout.complete || (image_unknown && rollout.desired > 0)
        });
        Needs {
            explain,
            canary: observed.canary.is_some() && by_canary(model),
            rate: observed.deployment.is_some() && scaler::on_request_rate(model),
            logging: observed.deployment.is_some() && model.spec.logging.is_some(),
        }
    }
}

/// The pods and what they say, for whichever of the status, the canary and the scaler needs
/// them: one pod list, the Warning Events of a few not-ready pods, one scrape.
async fn live(
    client: &Client,
    scraper: &dyn Scrape,
    observed: &Observed,
    (model, resolved, _desired): (&IrisModel, &Resolved, &Desired),
    now: &Time,
) -> Result<Live, Error> {
    let needs = Needs::of(model, resolved, observed);
    if !(needs.explain || needs.canary || needs.rate || needs.logging) {
        return Ok(Live::default());
    }
    let namespace = resolved.namespace.as_str();
    let pods = list_pods(client, &resolved.name, namespace).await?;
    let events = match observed.deployment.as_ref().and_then(template_hash) {
        Some(hash) if needs.explain => pod_events(client, namespace, &pods, hash).await?,
        _ => PodEvents::new(),
    };
    let mut live = Live {
        pods,
        pods_read: true,
        events,
        ..Live::default()
    };
    if !(needs.canary || needs.rate || needs.logging) {
        return Ok(live);
    }
    let (canary_pods, stable_pods): (Vec<Pod>, Vec<Pod>) =
        live.pods.iter().cloned().partition(is_canary);
    if let Some(hash) = observed.canary.as_ref().and_then(template_hash) {
        if needs.canary {
            let events = pod_events(client, namespace, &canary_pods, hash).await?;
            live.canary.failure = rootcause::pod_failure(&canary_pods, hash, &events, now)
                .map(|(reason, message)| format!("{reason}: {message}"));
        }
    }
    // One scrape of both sides, the canary's pods first (they win the cap); the answers come
    // back in that order.
    let mut ready = ready_by_name(canary_pods);
    let split = ready.len();
    ready.extend(ready_by_name(stable_pods));
    let pages = scrape(scraper, &ready, resolved).await;
    let unscraped = ready.len().saturating_sub(pages.len());
    let read: Vec<(&Pod, Result<Traffic, Unread>)> = ready
        .iter()
        .zip(pages)
        .map(|(pod, page)| (pod, read_page(pod, page)))
        .collect();
    if needs.canary {
        live.canary.canary = traffic_of(read.iter().take(split));
        live.canary.stable = traffic_of(read.iter().skip(split)).unwrap_or_default();
    }
    if needs.rate {
        let deployment = observed.deployment.as_ref();
        live.sample = Some(rate_sample(&read, unscraped, deployment, now));
    }
    if let Some(logging) = model.spec.logging.as_ref().filter(|_| needs.logging) {
        live.sink_failing = sink_failing(&read, &logging.url);
    }
    Ok(live)
}

fn is_canary(pod: &Pod) -> bool {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(TRACK_LABEL))
        .is_some_and(|t| t == TRACK_CANARY)
}

/// The pods of an IrisModel (stable and canary), from the API server's watch cache.
async fn list_pods(client: &Client, name: &str, namespace: &str) -> Result<Vec<Pod>, Error> {
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use futures::future::BoxFuture;
    use serde_json::json;

    use super::*;
    use crate::artifact::BuiltinCache;
    use crate::context::Settings;
    use crate::fixtures::model;
    use crate::reconcile::resolve::resolve;
    use crate::scrape::{CONCURRENT_SCRAPES, MAX_PODS_PER_RECONCILE};

    /// Answers each IP with itself after a while, counting the scrapes in flight.
    #[derive(Default)]
    struct Slow {
        in_flight: Arc<AtomicUsize>,
        most: Arc<AtomicUsize>,
    }

    impl Scrape for Slow {
        fn metrics(&self, ip: &str, _: i32, _: bool) -> BoxFuture<'static, Result<String, Unread>> {
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
        assert_eq!(pages[4], Err(Unread::Failed("no pod IP yet".to_string())));
        assert_eq!(pages[15], Ok("10.0.0.14".to_string()));
        assert_eq!(scraper.most.load(Ordering::SeqCst), CONCURRENT_SCRAPES);
    }

    #[test]
    fn a_pods_unusable_page_is_told_apart_from_a_failed_scrape() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "iris-1", "uid": "u1"}
        }))
        .expect("pod");
        assert_eq!(
            read_page(&pod, Err(Unread::Failed("refused".into()))),
            Err(Unread::Failed("refused".into()))
        );
        assert_eq!(
            read_page(&pod, Ok("}{\n".into())),
            Err(Unread::Unusable(
                "metrics page unusable: line 1 is not a sample of the Prometheus text format"
                    .into()
            ))
        );
        let nan = "model_server_http_requests_total{route=\"/predict_iris\",code=\"200\"} NaN\n";
        assert_eq!(
            read_page(&pod, Ok(nan.into())),
            Err(Unread::Unusable(
                "metrics page unusable: counter model_server_http_requests_total is NaN".into()
            ))
        );
    }
}
