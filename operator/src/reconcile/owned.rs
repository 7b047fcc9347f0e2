//! The one ownership rule every child goes through, whatever its kind (Deployment, canary,
//! Service, HPA, PDB, the activator and its ServiceAccount, Role and RoleBinding):
//!
//! - a child is written only when it is absent or controlled by this IrisModel (an owner
//!   reference with `controller: true` and this IrisModel's uid); a foreign object in the way is
//!   never changed, and the reconcile fails with `ResourceConflict` naming it;
//! - a child is deleted only when it is controlled by this IrisModel, with a uid precondition,
//!   so the delete cannot reach an object re-created under the same name meanwhile; a foreign
//!   object under the name of a child no longer wanted is left alone (the writes and deletes
//!   are in [`crate::reconcile::apply`], the reads in [`crate::reconcile::observe`]).
//!
//! Names derived from the model's (`<name>-canary`, `<name>-activator`) cannot collide with
//! another IrisModel's children: the CRD refuses model names with those suffixes.

use std::fmt::Debug;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, GetParams};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::error::Error;

/// Whether the object is controlled by the owner (same uid).
pub(crate) fn controlled_by<K: Resource>(obj: &K, owner: &OwnerReference) -> bool {
    obj.owner_references()
        .iter()
        .any(|r| r.controller == Some(true) && r.uid == owner.uid)
}

/// The object read under a child's name, kept only when it is ours: a foreign one is hidden
/// from the rest of the reconcile (never analysed, scaled or deleted). A write under its name
/// still finds it, since every write looks the name up first ([`claim`]).
pub(crate) fn ours<K: Resource>(found: Option<K>, owner: &OwnerReference) -> Option<K> {
    found.filter(|object| controlled_by(object, owner))
}

/// Refuses a write over an object this IrisModel does not control. `observed` is what a read
/// of the child's name found (the watch cache, or a GET when the cache lacks it).
pub(crate) fn claim<K>(observed: Option<&K>, owner: &OwnerReference) -> Result<(), Error>
where
    K: Resource<DynamicType = ()>,
{
    match observed {
        Some(object) if !controlled_by(object, owner) => Err(conflict(object)),
        _ => Ok(()),
    }
}

/// The error for a foreign object in a child's way, naming it.
pub(crate) fn conflict<K: Resource<DynamicType = ()>>(object: &K) -> Error {
    Error::ChildConflict {
        kind: K::kind(&()).to_string(),
        namespace: object.namespace().unwrap_or_default(),
        name: object.name_any(),
    }
}

/// Reads a child by name for a write or a delete: what the rule is checked against. None when
/// it does not exist. From the API server's watch cache (resourceVersion "0"), as the
/// operator's watches are.
pub(crate) async fn read<K>(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<K>, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match api.get_with(name, &GetParams::any()).await {
        Ok(object) => Ok(Some(object)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(e) => Err(Error::kube("get")(e)),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::rbac::v1::Role;
    use kube::api::ObjectMeta;

    use super::*;

    fn owner(uid: &str) -> OwnerReference {
        OwnerReference {
            api_version: "serving.iris.dev/v1alpha1".into(),
            kind: "IrisModel".into(),
            name: "foo".into(),
            uid: uid.into(),
            controller: Some(true),
            ..OwnerReference::default()
        }
    }

    fn owned_by(refs: Option<Vec<OwnerReference>>) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("foo-canary".into()),
                namespace: Some("team-a".into()),
                owner_references: refs,
                ..ObjectMeta::default()
            },
            ..Deployment::default()
        }
    }

    #[test]
    fn only_a_controller_reference_with_our_uid_makes_an_object_ours() {
        let ours_ = owner("uid-foo");
        assert!(controlled_by(&owned_by(Some(vec![ours_.clone()])), &ours_));
        // Another model's child (same kind of reference, another uid).
        assert!(!controlled_by(
            &owned_by(Some(vec![owner("uid-foo-canary")])),
            &ours_
        ));
        // Our uid, but not as the controller.
        let mut plain = ours_.clone();
        plain.controller = None;
        assert!(!controlled_by(&owned_by(Some(vec![plain])), &ours_));
        assert!(!controlled_by(&owned_by(None), &ours_));
    }

    #[test]
    fn a_foreign_object_is_hidden_and_refused_by_name() {
        let ours_ = owner("uid-foo");
        let foreign = owned_by(Some(vec![owner("uid-other")]));
        assert!(ours(Some(foreign.clone()), &ours_).is_none());
        let err = claim(Some(&foreign), &ours_).expect_err("refused");
        assert_eq!(err.category(), "ResourceConflict");
        assert!(
            err.to_string().starts_with("Deployment team-a/foo-canary "),
            "{err}"
        );
        assert!(claim::<Deployment>(None, &ours_).is_ok());
        let mine = owned_by(Some(vec![ours_.clone()]));
        assert!(claim(Some(&mine), &ours_).is_ok());
        let role = Role {
            metadata: ObjectMeta {
                name: Some("x-activator".into()),
                namespace: Some("team-b".into()),
                ..ObjectMeta::default()
            },
            ..Role::default()
        };
        assert!(conflict(&role)
            .to_string()
            .starts_with("Role team-b/x-activator "));
    }
}
