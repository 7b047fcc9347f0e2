//! The ready pods' `/metrics` pages, scraped once, read into the canary's traffic and the
//! request-rate scaler's sample.

use futures::StreamExt;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use tracing::debug;

use crate::rate::{PodCount, Sample};
use crate::reconcile::analysis::Traffic;
use crate::reconcile::resolve::Resolved;
use crate::reconcile::{rootcause, scaler};
pub(crate) use crate::scrape::Unread;
use crate::scrape::{Scrape, CONCURRENT_SCRAPES, MAX_PODS_PER_RECONCILE};

/// A pod's prediction traffic from its page, or why there is none.
pub(crate) fn read_page(pod: &Pod, page: Result<String, Unread>) -> Result<Traffic, Unread> {
    let text = page?;
    Traffic::read(&text).map_err(|why| {
        debug!(pod = pod.name_any(), "{why}");
        Unread::Unusable(why)
    })
}

/// The sum of the traffic of the pods whose page was read (None when none was); an unusable
/// page makes the sum unusable, naming the pod.
pub(crate) fn traffic_of<'a>(
    read: impl Iterator<Item = &'a (&'a Pod, Result<Traffic, Unread>)>,
) -> Option<Traffic> {
    let traffic: Vec<Traffic> = read
        .filter_map(|(pod, page)| match page {
            Ok(traffic) => Some(traffic.clone()),
            Err(Unread::Failed(_)) => None,
            Err(Unread::Unusable(why)) => {
                Some(Traffic::unusable(format!("pod {}: {why}", pod.name_any())))
            }
        })
        .collect();
    (!traffic.is_empty()).then(|| Traffic::sum(&traffic))
}

/// The scaler's sample: each read pod's counter, why the others were not read, and the
/// Deployment's replica count.
pub(crate) fn rate_sample(
    read: &[(&Pod, Result<Traffic, Unread>)],
    unscraped: usize,
    deployment: Option<&k8s_openapi::api::apps::v1::Deployment>,
    now: &Time,
) -> Sample {
    let mut counts = Vec::new();
    let (mut unreadable, mut unusable) = (None, None);
    for (pod, page) in read {
        match page {
            Ok(traffic) => counts.push(PodCount {
                pod: pod.uid().unwrap_or_else(|| pod.name_any()),
                requests: traffic.requests,
                started: pod
                    .status
                    .as_ref()
                    .and_then(|s| s.start_time.as_ref())
                    .map(scaler::seconds),
            }),
            Err(Unread::Failed(e)) => unreadable = Some(format!("pod {}: {e}", pod.name_any())),
            Err(Unread::Unusable(e)) => {
                unusable.get_or_insert_with(|| format!("pod {}: {e}", pod.name_any()));
            }
        }
    }
    let current = deployment
        .and_then(|d| d.spec.as_ref())
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    Sample {
        now: scaler::seconds(now),
        counts,
        unreadable,
        unusable,
        unscraped,
        current,
    }
}

/// Payload-log events given up in a row from which the sink is said to keep failing (each
/// after its retries): a blip is not a failing sink.
pub(crate) const SINK_FAILING_AFTER: u64 = 10;

/// The first pod whose payload log has given up [`SINK_FAILING_AFTER`] events or more in a row,
/// as the status says it.
pub(crate) fn sink_failing<'a>(
    read: impl IntoIterator<Item = &'a (&'a Pod, Result<Traffic, Unread>)>,
    url: &str,
) -> Option<String> {
    read.into_iter().find_map(|(pod, page)| {
        let failing = page.as_ref().ok()?.sink_failing;
        (failing >= SINK_FAILING_AFTER).then(|| {
            format!(
                "pod {}: the payload log's sink {url} keeps failing ({failing} events in a row given up after their retries); predictions are answered, their events are lost",
                pod.name_any()
            )
        })
    })
}

/// Each pod's `/metrics` page (over HTTPS when the model serves TLS), in the order of `pods`,
/// for the first [`MAX_PODS_PER_RECONCILE`] of them only (the rest are not scraped: the
/// answer is shorter than `pods` then), [`CONCURRENT_SCRAPES`] at a time; a pod without an IP
/// yet, or that does not answer, gives why not.
pub(crate) async fn scrape(
    scraper: &dyn Scrape,
    pods: &[Pod],
    resolved: &Resolved,
) -> Vec<Result<String, Unread>> {
    let (port, https) = (resolved.port, resolved.tls_secret.is_some());
    // Gathered first: a stream over a closure borrowing the scraper is not provably Send.
    let pages: Vec<_> = pods
        .iter()
        .take(MAX_PODS_PER_RECONCILE)
        .map(|pod| {
            let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
            async move {
                let Some(ip) = ip else {
                    return Err(Unread::Failed("no pod IP yet".to_string()));
                };
                let page = scraper.metrics(&ip, port, https).await;
                if let Err(e) = &page {
                    debug!(pod_ip = %ip, "metrics scrape failed: {e:?}");
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
