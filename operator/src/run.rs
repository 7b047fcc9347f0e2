//! Wires the reconcile into kube-runtime Controllers: one per watched namespace (or one for the
//! whole cluster), each owning the children and watching the ConfigMaps models name.

use std::sync::Arc;
use std::time::Duration;

use futures::{stream, Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ObjectMeta};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{predicates, reflector, watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::{debug, warn};

use crate::cache::{ChildCache, Stores};
use crate::context::Context;
use crate::crd::IrisModel;
use crate::metrics::ModelMetrics;
use crate::names::{MANAGED_SELECTOR, MANAGER};
use crate::reconcile::rollout::ACTION_ANNOTATION;
use crate::reconcile::{error_policy, reconcile};
use crate::shutdown::{stopped, Stop};
use std::hash::{Hash, Hasher};

/// Reconciles running at once; bounds the burst of API requests when many models change.
const CONCURRENCY: u16 = 32;
/// Triggers of one model within this window (a Deployment's status moves in bursts) make one
/// reconcile.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// Runs the controllers until `stop` fires, then lets running reconciles finish.
///
/// `namespaces` empty means all namespaces.
pub async fn run(client: Client, namespaces: &[String], ctx: Arc<Context>, stop: Stop) {
    let scopes: Vec<Option<&str>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.iter().map(|ns| Some(ns.as_str())).collect()
    };
    // Fresh watch caches for this run; reconciles wait until they have listed once.
    let mut cache = ChildCache::default();
    let controllers: Vec<_> = scopes
        .into_iter()
        .map(|namespace| {
            controller(client.clone(), namespace, &mut cache, &ctx.metrics.models)
                .graceful_shutdown_on(stopped(stop.clone()))
                .run(reconcile, error_policy, ctx.clone())
                .boxed()
        })
        .collect();
    ctx.install_children(cache);
    stream::select_all(controllers)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => debug!(irismodel = %object, "reconciled"),
                Err(e) => debug!("controller: {e}"),
            }
        })
        .await;
    // Another replica reports the models from now on (or none, at shutdown).
    ctx.metrics.models.retain(|_, _| false);
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// A watch of one child kind (the operator's label only) that fills a store of the cache on
/// its way to the Controller, which it triggers. Managed fields are dropped but the
/// operator's own (the replicas hand-off reads them): they are most of an object's size.
fn cached<K>(
    client: &Client,
    namespace: Option<&str>,
    stores: &mut Stores<K>,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    stores.push(reader);
    watcher(
        api::<K>(client, namespace),
        watcher::Config::default().labels(MANAGED_SELECTOR),
    )
    .default_backoff()
    .modify(|object| trim_managed_fields(object.meta_mut()))
    .reflect(writer)
    .touched_objects()
}

/// What the caches keep of an object's managed fields: only whether the operator's own apply
/// owns `spec.replicas` (the replicas hand-off reads that, nothing else reads them). The field
/// sets are most of a cached object's size: 33 of a Deployment's 52 KiB were the operator's
/// own entry, so 5,000 models cost 160 MiB of them.
fn trim_managed_fields(meta: &mut ObjectMeta) {
    let entries = meta.managed_fields.get_or_insert_with(Vec::new);
    entries.retain(|entry| entry.manager.as_deref() == Some(MANAGER));
    for entry in entries.iter_mut() {
        let replicas = entry
            .fields_v1
            .as_ref()
            .and_then(|f| f.0.get("f:spec"))
            .and_then(|spec| spec.get("f:replicas"))
            .is_some();
        entry.fields_v1 = replicas.then(|| FieldsV1(json!({"f:spec": {"f:replicas": {}}})));
    }
}

/// What the IrisModel cache keeps of metadata the reconcile never reads: no managed fields and
/// no `kubectl apply` copy of the last applied object (each about the size of the spec).
fn trim_model(model: &mut IrisModel) {
    model.metadata.managed_fields = None;
    if let Some(annotations) = model.metadata.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// The annotation `kubectl apply` (client-side) keeps the whole applied object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn controller(
    client: Client,
    namespace: Option<&str>,
    cache: &mut ChildCache,
    model_metrics: &ModelMetrics,
) -> Controller<IrisModel> {
    // Reconcile on spec changes only: the operator's own status writes (and label edits) would
    // otherwise each trigger a reconcile that has nothing to do.
    let (reader, writer) = reflector::store();
    let forget = forget_vanished(model_metrics.clone(), reader.clone(), namespace);
    let models = watcher(
        api::<IrisModel>(&client, namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(trim_model)
    .reflect(writer)
    .inspect_ok(forget)
    .applied_objects()
    .predicate_filter(spec_or_action, Default::default());
    let controller = Controller::for_stream(models, reader)
        .with_config(
            ControllerConfig::default()
                .concurrency(CONCURRENCY)
                .debounce(DEBOUNCE),
        )
        .owns_stream(cached::<Deployment>(
            &client,
            namespace,
            &mut cache.deployments,
        ))
        .owns_stream(cached::<Service>(&client, namespace, &mut cache.services))
        .owns_stream(cached::<HorizontalPodAutoscaler>(
            &client,
            namespace,
            &mut cache.hpas,
        ))
        .owns_stream(cached::<PodDisruptionBudget>(
            &client,
            namespace,
            &mut cache.pdbs,
        ));

    // ConfigMaps are watched as metadata only (their content can be large and is read with a
    // GET when a model names them); any change re-reconciles the models that use them.
    let store = controller.store();
    let config_maps = watcher(
        api::<PartialObjectMeta<ConfigMap>>(&client, namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .touched_objects()
    .inspect_err(|e| warn!("ConfigMap watch: {e}"));
    controller.watches_stream(config_maps, move |cm| {
        let models = store.state();
        models_using_config_map(
            models.iter().map(|m| m.as_ref()),
            cm.namespace().as_deref(),
            cm.metadata.name.as_deref(),
        )
    })
}

/// Removes the metrics series of models that are gone: deleted ones (their reconcile stops
/// before they vanish from the cache), and after a re-list of the scope, those not in the
/// cache any more (deleted while the watch was down: no Delete event for them).
fn forget_vanished(
    metrics: ModelMetrics,
    store: reflector::Store<IrisModel>,
    scope: Option<&str>,
) -> impl Fn(&watcher::Event<IrisModel>) {
    let scope = scope.map(str::to_string);
    move |event| match event {
        watcher::Event::Delete(model) => {
            let namespace = model.namespace().unwrap_or_default();
            metrics.forget(&namespace, &model.name_any());
        }
        watcher::Event::InitDone => metrics.retain(|namespace, name| {
            let ours = scope.as_deref().is_none_or(|s| s == namespace);
            !ours || store.get(&ObjectRef::new(name).within(namespace)).is_some()
        }),
        _ => {}
    }
}

/// Reconcile on a spec change (the generation) or a by-hand rollout action (an annotation
/// that leaves the generation as it is).
fn spec_or_action(model: &IrisModel) -> Option<u64> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    predicates::generation(model).hash(&mut hasher);
    model.annotations().get(ACTION_ANNOTATION).hash(&mut hasher);
    Some(hasher.finish())
}

/// The IrisModels in the ConfigMap's namespace whose source names it: what a ConfigMap change
/// must reconcile.
fn models_using_config_map<'a>(
    models: impl IntoIterator<Item = &'a IrisModel>,
    namespace: Option<&str>,
    name: Option<&str>,
) -> Vec<kube::runtime::reflector::ObjectRef<IrisModel>> {
    models
        .into_iter()
        .filter(|m| m.namespace().as_deref() == namespace)
        .filter(|m| {
            m.spec
                .model
                .source
                .config_map
                .as_ref()
                .is_some_and(|s| Some(s.name.as_str()) == name)
        })
        .map(kube::runtime::reflector::ObjectRef::from_obj)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::apply::owns_replicas;

    fn deployment(managed: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({"metadata": {"name": "iris", "managedFields": managed}}))
            .expect("a Deployment")
    }

    #[test]
    fn the_cache_keeps_only_whether_the_operator_owns_replicas() {
        let big = json!({"f:metadata": {"f:labels": {"f:a": {}}},
            "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {}}}}});
        let mut owning = deployment(json!([
            {"manager": MANAGER, "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": big},
            {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {}}}
        ]));
        assert!(owns_replicas(&owning, MANAGER));
        trim_managed_fields(&mut owning.metadata);
        let entries = owning
            .metadata
            .managed_fields
            .as_deref()
            .unwrap_or_default();
        assert_eq!(entries.len(), 1);
        assert_eq!(
            entries[0].fields_v1.as_ref().map(|f| &f.0),
            Some(&json!({"f:spec": {"f:replicas": {}}}))
        );
        assert!(owns_replicas(&owning, MANAGER));

        let mut autoscaled = deployment(json!([
            {"manager": MANAGER, "operation": "Apply", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:spec": {"f:template": {}}}}
        ]));
        trim_managed_fields(&mut autoscaled.metadata);
        assert!(!owns_replicas(&autoscaled, MANAGER));
        let entries = autoscaled
            .metadata
            .managed_fields
            .as_deref()
            .unwrap_or_default();
        assert_eq!(entries[0].fields_v1, None);
    }

    #[test]
    fn the_model_cache_drops_managed_fields_and_the_last_applied_copy_only() {
        let mut model: IrisModel = serde_json::from_value(json!({
            "apiVersion": "serving.iris.dev/v1alpha1", "kind": "IrisModel",
            "metadata": {"name": "iris", "annotations": {
                LAST_APPLIED: "{\"spec\": {}}", ACTION_ANNOTATION: "promote"},
                "managedFields": [{"manager": "kubectl-client-side-apply", "operation": "Update"}]},
            "spec": {"model": {"task": "multiclass", "source": {"builtin": {}}}}
        }))
        .expect("an IrisModel");
        trim_model(&mut model);
        assert_eq!(model.metadata.managed_fields, None);
        let annotations = model.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(annotations.len(), 1);
        assert_eq!(
            annotations.get(ACTION_ANNOTATION).map(String::as_str),
            Some("promote")
        );
    }
}
