//! The controller's watch caches of the children (reflector stores), which the observe step
//! reads instead of sending GETs: an unchanged reconcile of 5,000 models then costs the API
//! server nothing. One store per child kind and watched scope (a namespace, or the cluster);
//! the Controllers of [`crate::run`] fill them, and install a new set each time they start
//! (after a restart or a new leadership term).

use std::sync::Arc;

use futures::FutureExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Resource;

/// The stores of one child kind, one per watched scope.
pub(crate) struct Stores<K: Resource<DynamicType = ()> + Clone + 'static> {
    stores: Vec<Store<K>>,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Default for Stores<K> {
    fn default() -> Self {
        Self { stores: Vec::new() }
    }
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Clone for Stores<K> {
    fn clone(&self) -> Self {
        Self {
            stores: self.stores.clone(),
        }
    }
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Stores<K> {
    pub(crate) fn push(&mut self, store: Store<K>) {
        self.stores.push(store);
    }

    /// The object as the watch last saw it, None when no store holds it.
    pub(crate) fn get(&self, namespace: &str, name: &str) -> Option<K> {
        let key = ObjectRef::new(name).within(namespace);
        self.stores
            .iter()
            .find_map(|store| store.get(&key))
            .map(Arc::unwrap_or_clone)
    }

    /// Whether every store has had its first complete list (a store that has not may lack
    /// objects that exist).
    fn synced(&self) -> bool {
        !self.stores.is_empty()
            && self
                .stores
                .iter()
                .all(|store| store.wait_until_ready().now_or_never().is_some())
    }
}

/// The watch caches of every child kind.
#[derive(Clone, Default)]
pub(crate) struct ChildCache {
    pub(crate) deployments: Stores<Deployment>,
    pub(crate) services: Stores<Service>,
    pub(crate) hpas: Stores<HorizontalPodAutoscaler>,
    pub(crate) pdbs: Stores<PodDisruptionBudget>,
}

impl ChildCache {
    /// Whether every store has been filled once: until then a reconcile waits, since a child
    /// missing from an unsynced cache may well exist.
    pub(crate) fn synced(&self) -> bool {
        self.deployments.synced()
            && self.services.synced()
            && self.hpas.synced()
            && self.pdbs.synced()
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Caches that hold given objects, as a synced watch would.

    use kube::runtime::reflector::store;
    use kube::runtime::watcher::Event;

    use super::*;

    fn filled<K: Resource<DynamicType = ()> + Clone + 'static>(objects: Vec<K>) -> Stores<K> {
        let (reader, mut writer) = store();
        writer.apply_watcher_event(&Event::Init);
        for object in objects {
            writer.apply_watcher_event(&Event::InitApply(object));
        }
        writer.apply_watcher_event(&Event::InitDone);
        Stores {
            stores: vec![reader],
        }
    }

    /// A synced cache holding these children.
    pub(crate) fn holding(
        deployments: Vec<Deployment>,
        services: Vec<Service>,
        hpas: Vec<HorizontalPodAutoscaler>,
        pdbs: Vec<PodDisruptionBudget>,
    ) -> ChildCache {
        ChildCache {
            deployments: filled(deployments),
            services: filled(services),
            hpas: filled(hpas),
            pdbs: filled(pdbs),
        }
    }

    #[test]
    fn a_cache_is_synced_only_once_every_store_has_listed() {
        assert!(!ChildCache::default().synced());
        assert!(holding(vec![], vec![], vec![], vec![]).synced());
        let (unsynced, _writer) = store::<Deployment>();
        let mut cache = holding(vec![], vec![], vec![], vec![]);
        cache.deployments.push(unsynced);
        assert!(!cache.synced());
    }
}
