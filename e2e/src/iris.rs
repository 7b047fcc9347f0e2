//! IrisModel objects seen through the dynamic API (the suite needs no Rust types of the
//! operator's, so it tests the API as any client sees it), their conditions, and waits.
use std::time::Duration;

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Api, Client};
use serde_json::Value;

/// The IrisModel resource: serving.iris.dev/v1alpha1, plural irismodels.
pub fn resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("serving.iris.dev", "v1alpha1", "IrisModel"),
        "irismodels",
    )
}

/// IrisModels in `ns`.
pub fn api(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &resource())
}

/// `.status` of an IrisModel (Null when absent).
pub fn status(obj: &DynamicObject) -> &Value {
    obj.data.get("status").unwrap_or(&Value::Null)
}

/// The condition of `type_` in `.status.conditions`.
pub fn condition<'a>(obj: &'a DynamicObject, type_: &str) -> Option<&'a Value> {
    status(obj)["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// The generation the API server gave the object.
pub fn generation(obj: &DynamicObject) -> i64 {
    obj.metadata.generation.unwrap_or_default()
}

/// Ready=True for the current generation: status.observedGeneration and the condition's
/// observedGeneration both equal metadata.generation.
pub fn is_ready_now(obj: &DynamicObject) -> bool {
    let gen = generation(obj);
    condition(obj, "Ready").is_some_and(|c| c["status"] == "True" && c["observedGeneration"] == gen)
        && status(obj)["observedGeneration"] == gen
}

/// Ready=False for the current generation with `reason`.
pub fn is_not_ready_because(obj: &DynamicObject, reason: &str) -> bool {
    let gen = generation(obj);
    condition(obj, "Ready").is_some_and(|c| {
        c["status"] == "False" && c["reason"] == reason && c["observedGeneration"] == gen
    })
}

/// `.status.model.digest`.
pub fn digest(obj: &DynamicObject) -> Option<String> {
    status(obj)["model"]["digest"].as_str().map(str::to_string)
}

/// Waits until the IrisModel `name` exists and satisfies `cond`, at most `timeout`; panics with
/// its last status and `what` otherwise.
pub async fn wait_for(
    api: &Api<DynamicObject>,
    name: &str,
    timeout: Duration,
    what: &str,
    cond: impl Fn(&DynamicObject) -> bool,
) -> DynamicObject {
    crate::cluster::wait_until(api, name, timeout, what, move |o| o.is_some_and(&cond))
        .await
        .unwrap_or_else(|| panic!("irismodel/{name} disappeared while waiting until {what}"))
}

/// Waits until the IrisModel is Ready=True for its current generation.
pub async fn wait_ready(api: &Api<DynamicObject>, name: &str, timeout: Duration) -> DynamicObject {
    wait_for(
        api,
        name,
        timeout,
        "Ready for its current generation",
        is_ready_now,
    )
    .await
}
