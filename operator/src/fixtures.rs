//! Test fixtures: IrisModels, model artifacts, and objects as the API server returns them.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::Serialize;
use serde_json::Value;

use crate::crd::{
    ConfigMapSource, IrisClass, IrisModel, IrisModelSpec, ModelSource, ModelSpec, Task,
    TrainingSpec,
};

pub const NAMESPACE: &str = "testns";
pub const UID: &str = "uid-iris";

/// An IrisModel as the API server returns it after defaulting: `spec: {}`.
pub fn model(name: &str, generation: i64) -> IrisModel {
    let spec: IrisModelSpec = serde_json::from_value(serde_json::json!({})).expect("defaults");
    let mut model = IrisModel::new(name, spec);
    let meta = model.meta_mut();
    meta.namespace = Some(NAMESPACE.into());
    meta.uid = Some(UID.into());
    meta.generation = Some(generation);
    meta.resource_version = Some("100".into());
    model
}

/// An IrisModel serving the artifact in ConfigMap `cm` under `model.json`.
pub fn configmap_model(name: &str, cm: &str, task: Task) -> IrisModel {
    let mut model = model(name, 1);
    model.spec.model = ModelSpec {
        task,
        positive_class: None,
        source: ModelSource {
            builtin: None,
            config_map: Some(ConfigMapSource {
                name: cm.into(),
                key: "model.json".into(),
            }),
            file: None,
        },
        training: TrainingSpec::default(),
    };
    model
}

/// The JSON artifact `model-server train` writes.
pub fn artifact(task: Task, positive_class: Option<IrisClass>) -> String {
    let params = crate::artifact::training_params(task, positive_class, &TrainingSpec::default());
    iris_model::train(&params)
        .expect("training on the builtin data succeeds")
        .to_json_pretty()
}

/// A ConfigMap holding `content` under `key`.
pub fn config_map(name: &str, key: &str, content: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NAMESPACE.into()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(key.to_string(), content.to_string())])),
        ..ConfigMap::default()
    }
}

/// An object as the API server would store it: identity, version, generation added.
pub fn stored<K: Resource + Clone>(object: &K, generation: i64) -> K {
    let mut object = object.clone();
    let meta = object.meta_mut();
    meta.uid = Some(format!("uid-{}", meta.name.clone().unwrap_or_default()));
    meta.resource_version = Some("1".into());
    meta.generation = Some(generation);
    object
}

/// A Deployment whose rollout of its current generation is complete.
pub fn rolled_out(deployment: &Deployment, generation: i64) -> Deployment {
    let mut deployment = stored(deployment, generation);
    let replicas = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    deployment.status = Some(DeploymentStatus {
        observed_generation: Some(generation),
        replicas: Some(replicas),
        ready_replicas: Some(replicas),
        updated_replicas: Some(replicas),
        available_replicas: Some(replicas),
        ..DeploymentStatus::default()
    });
    deployment
}

/// Serialises for a mocked response.
pub fn to_json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("serialises")
}
