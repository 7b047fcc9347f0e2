//! Deleting a child no longer wanted, under the ownership rule of [`crate::reconcile::owned`].

use std::fmt::Debug;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::reconcile::owned::controlled_by;

/// The result of bringing one child to its desired state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Already as desired: no request sent.
    Unchanged,
    /// Written with server-side apply.
    Applied,
    /// Removed because it is no longer wanted.
    Deleted,
    /// Neither wanted nor present (or present but someone else's, and left alone).
    Absent,
}

/// Deletes a child that is no longer wanted: only when this IrisModel controls it, and with
/// its uid as a precondition.
pub(crate) async fn delete<K>(
    api: &Api<K>,
    observed: Option<&K>,
    owner: &OwnerReference,
) -> Result<Outcome, Error>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    let Some(observed) = observed.filter(|o| controlled_by(*o, owner)) else {
        return Ok(Outcome::Absent);
    };
    let Some(uid) = observed.uid() else {
        // Every stored object has a uid; without one there is nothing safe to delete.
        return Ok(Outcome::Absent);
    };
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match api.delete(&observed.name_any(), &params).await {
        Ok(_) => Ok(Outcome::Deleted),
        // Gone already, or replaced by another object under the same name (uid precondition).
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
            Ok(Outcome::Absent)
        }
        Err(e) => Err(Error::kube("delete")(e)),
    }
}
