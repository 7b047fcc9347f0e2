//! Writing the replica count the request-rate scaler decided to the Deployment's scale
//! subresource, with the Events that tell it.

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use serde_json::json;

use crate::context::Context;
use crate::crd::IrisModel;
use crate::error::Error;
use crate::metrics::{Operation, Written};
use crate::names::{ChildKind, MANAGER};
use crate::reconcile::apply::report::publish_event;
use crate::reconcile::resolve::Resolved;
use crate::reconcile::scaler::{Scale, REASON_WOKEN};

/// Tells a wake (an Event), then writes the new replica count, if any, and tells it.
pub(crate) async fn scale(
    ctx: &Context,
    model: &IrisModel,
    resolved: &Resolved,
    scale: &Scale,
) -> Result<(), Error> {
    let key = format!("{}/{}", resolved.namespace, resolved.name);
    if let Some(note) = &scale.woke {
        tracing::info!(irismodel = %key, "woken from zero pods: {note}");
        publish_event(model, ctx, EventType::Normal, REASON_WOKEN, note.clone()).await;
    }
    let Some((replicas, reason, note)) = &scale.write else {
        return Ok(());
    };
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &resolved.namespace);
    api.patch_scale(
        &resolved.name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": replicas}})),
    )
    .await
    .map_err(Error::kube("scale the deployment"))?;
    ctx.metrics
        .write(Written::Child(ChildKind::Deployment), Operation::Scale);
    tracing::info!(irismodel = %key, manager = MANAGER, "scaled on the request rate: {note}");
    publish_event(model, ctx, EventType::Normal, reason, note.clone()).await;
    Ok(())
}
