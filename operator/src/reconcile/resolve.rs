//! The validate step: turns an IrisModel (and the ConfigMap it names, if any) into everything
//! the builders need, or into a user error that says what to fix.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ConfigMap, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};

use crate::artifact::{check_artifact, content_hash, BuiltinCache, ModelFacts};
use crate::context::{ActivatorSettings, Settings};
use crate::crd::{
    AuthSpec, AutoscalingSpec, ConfigMapSource, IrisClass, IrisModel, IrisModelSpec, LoggingSpec,
    ModelStatus, RolloutStrategy, ServiceSpec, Task, TrainingSpec,
};
use crate::error::Error;

/// Where the pods get the model from.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ResolvedSource {
    /// Trained at start-up with these hyper-parameters.
    Builtin(TrainingSpec),
    /// An artifact in a ConfigMap, mounted as a file.
    ConfigMap {
        name: String,
        key: String,
        /// sha256 of the artifact bytes: part of the pod-template hash.
        content_hash: String,
    },
    /// An artifact inside the image.
    File(String),
}

/// A validated IrisModel, ready for the builders.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Resolved {
    pub(crate) name: String,
    pub(crate) namespace: String,
    /// metadata.generation, copied into status.observedGeneration and the conditions.
    pub(crate) generation: Option<i64>,
    /// Reference to the IrisModel (made a controller reference on each child).
    pub(crate) owner: OwnerReference,
    pub(crate) image: String,
    /// Names of the image pull Secrets of the pods: spec.imagePullSecrets, else the default.
    pub(crate) image_pull_secrets: Vec<String>,
    pub(crate) port: i32,
    pub(crate) grpc_port: i32,
    pub(crate) task: Task,
    pub(crate) positive_class: Option<IrisClass>,
    pub(crate) source: ResolvedSource,
    /// Replicas of the Deployment; None when an autoscaler owns the count.
    pub(crate) replicas: Option<i32>,
    pub(crate) autoscaling: Option<AutoscalingSpec>,
    pub(crate) service: ServiceSpec,
    pub(crate) resources: ResourceRequirements,
    pub(crate) node_selector: Option<BTreeMap<String, String>>,
    pub(crate) tolerations: Option<Vec<Toleration>>,
    pub(crate) affinity: Option<Affinity>,
    /// What status.model reports.
    pub(crate) model_status: ModelStatus,
    /// status.endpoint.
    pub(crate) endpoint: String,
    /// The `kubernetes.io/tls` Secret mounted for HTTPS (spec.tls.secretName), if any.
    pub(crate) tls_secret: Option<String>,
    /// The bearer-token Secret mounted for authentication (spec.auth), if any.
    pub(crate) auth: Option<AuthSpec>,
    /// Payload logging (spec.logging), if any.
    pub(crate) logging: Option<LoggingSpec>,
    /// How the activator runs, for a model that scales to zero (`minReplicas: 0`).
    pub(crate) activator: Option<ActivatorSettings>,
}

impl Resolved {
    /// Pods the IrisModel asks for at least: the replicas, or the autoscaler's minimum.
    pub(crate) fn min_replicas(&self) -> i32 {
        match (&self.autoscaling, self.replicas) {
            (Some(autoscaling), _) => autoscaling.min_replicas,
            (None, Some(replicas)) => replicas,
            (None, None) => 1,
        }
    }
}

/// Name and namespace of an IrisModel, or the error saying which is missing.
pub(crate) fn name_and_namespace(model: &IrisModel) -> Result<(String, String), Error> {
    let name = model
        .meta()
        .name
        .clone()
        .ok_or(Error::MissingMetadata("name"))?;
    let namespace = model
        .namespace()
        .ok_or(Error::MissingMetadata("namespace"))?;
    Ok((name, namespace))
}

/// The rules between fields that the CRD's schema does not hold.
fn check_spec(spec: &IrisModelSpec) -> Result<(), Error> {
    let task = spec.model.task;
    if task == Task::Multiclass && spec.model.positive_class.is_some() {
        return Err(Error::InvalidSpec(
            "spec.model.positiveClass is only allowed when spec.model.task is binary".into(),
        ));
    }

    let protects_metrics = spec.auth.as_ref().is_some_and(|a| a.protect_metrics);
    let canary = spec
        .rollout
        .as_ref()
        .is_some_and(|r| r.strategy == RolloutStrategy::Canary);
    if protects_metrics && canary {
        return Err(Error::InvalidSpec(
            "spec.auth.protectMetrics cannot be used with spec.rollout.strategy Canary: the \
             canary analysis reads the pods' /metrics and the operator holds no token"
                .into(),
        ));
    }
    Ok(())
}

/// The model's source, as the pods will load it, with its digest and accuracy when the operator
/// can know them (a builtin model, trained once per parameter set; a ConfigMap artifact,
/// validated as the server validates it).
fn model_source(
    model: &IrisModel,
    config_map: Option<&ConfigMap>,
    builtin: &BuiltinCache,
    namespace: &str,
) -> Result<(ResolvedSource, String, Option<ModelFacts>), Error> {
    let spec = &model.spec;
    let task = spec.model.task;
    let source = &spec.model.source;
    let set = [
        source.builtin.is_some(),
        source.config_map.is_some(),
        source.file.is_some(),
    ];
    if set.iter().filter(|s| **s).count() != 1 {
        return Err(Error::InvalidSpec(
            "set exactly one of spec.model.source.builtin, configMap or file".into(),
        ));
    }

    if let Some(cm_source) = &source.config_map {
        return config_map_source(model, cm_source, config_map, namespace);
    }
    if let Some(path) = &source.file {
        if !path.starts_with('/') {
            return Err(Error::InvalidSpec(
                "spec.model.source.file must be an absolute path".into(),
            ));
        }
        return Ok((
            ResolvedSource::File(path.clone()),
            format!("file:{path}"),
            None,
        ));
    }
    let training = &spec.model.training;
    let facts = builtin
        .facts(task, model.positive_class(), training)
        .map_err(Error::TrainingFailed)?;
    Ok((
        ResolvedSource::Builtin(training.clone()),
        "builtin".to_string(),
        Some(facts),
    ))
}

/// A ConfigMap source: the artifact under its key, validated as the server validates it.
fn config_map_source(
    model: &IrisModel,
    cm_source: &ConfigMapSource,
    config_map: Option<&ConfigMap>,
    namespace: &str,
) -> Result<(ResolvedSource, String, Option<ModelFacts>), Error> {
    let (task, namespace) = (model.spec.model.task, namespace.to_string());

    let cm = config_map.ok_or_else(|| Error::ConfigMapNotFound {
        namespace: namespace.clone(),
        name: cm_source.name.clone(),
    })?;
    let content =
        config_map_value(cm, &cm_source.key).ok_or_else(|| Error::ConfigMapKeyNotFound {
            namespace: namespace.clone(),
            name: cm_source.name.clone(),
            key: cm_source.key.clone(),
        })?;
    let facts = std::str::from_utf8(&content)
        .map_err(|_| "it is not UTF-8 text".to_string())
        .and_then(|text| check_artifact(text, task, model.spec.model.positive_class))
        .map_err(|reason| Error::InvalidArtifact {
            namespace: namespace.clone(),
            name: cm_source.name.clone(),
            key: cm_source.key.clone(),
            reason,
        })?;
    Ok((
        ResolvedSource::ConfigMap {
            name: cm_source.name.clone(),
            key: cm_source.key.clone(),
            content_hash: content_hash(&content),
        },
        format!("configMap:{}/{}", cm_source.name, cm_source.key),
        Some(facts),
    ))
}

/// Validates the IrisModel against what only the operator can check.
///
/// `config_map` is the ConfigMap named by a configMap source as read from the API (None when it
/// does not exist); it is ignored for the other sources.
pub(crate) fn resolve(
    model: &IrisModel,
    settings: &Settings,
    config_map: Option<&ConfigMap>,
    builtin: &BuiltinCache,
) -> Result<Resolved, Error> {
    let (name, namespace) = name_and_namespace(model)?;
    let owner = model
        .controller_owner_ref(&())
        .ok_or(Error::MissingMetadata("uid"))?;
    let spec = &model.spec;
    let task = spec.model.task;
    let positive_class = model.positive_class();
    check_spec(spec)?;
    let (resolved_source, source_name, facts) =
        model_source(model, config_map, builtin, &namespace)?;

    let tls_secret = spec.tls.as_ref().map(|t| t.secret_name.clone());

    let image = match spec.image.as_deref().map(str::trim) {
        Some(image) if !image.is_empty() => image.to_string(),
        _ => settings.default_image.clone(),
    };
    let image_pull_secrets = match &spec.image_pull_secrets {
        Some(secrets) => secrets.iter().map(|s| s.name.clone()).collect(),
        None => settings.default_image_pull_secrets.clone(),
    };
    let endpoint = endpoint(
        &name,
        &namespace,
        spec.port,
        &settings.cluster_domain,
        tls_secret.is_some(),
    );
    let (digest, accuracy) = match facts {
        Some(ModelFacts { digest, accuracy }) => (Some(digest), Some(accuracy)),
        None => (None, None),
    };

    Ok(Resolved {
        generation: model.meta().generation,
        owner,
        image,
        image_pull_secrets,
        port: spec.port,
        grpc_port: spec.grpc_port,
        task,
        positive_class,
        source: resolved_source,
        replicas: match spec.autoscaling {
            Some(_) => None,
            None => Some(spec.replicas),
        },
        autoscaling: spec.autoscaling.clone(),
        activator: spec
            .autoscaling
            .as_ref()
            .filter(|a| a.scales_to_zero())
            .map(|_| settings.activator.clone()),
        service: spec.service.clone(),
        resources: resources_or_default(spec.resources.as_ref()),
        node_selector: spec.node_selector.clone().filter(|m| !m.is_empty()),
        tolerations: spec.tolerations.clone().filter(|t| !t.is_empty()),
        affinity: spec.affinity.clone(),
        model_status: ModelStatus {
            task: task.as_str().to_string(),
            source: source_name,
            digest,
            accuracy,
        },
        endpoint,
        tls_secret,
        auth: spec.auth.clone(),
        logging: spec.logging.clone(),
        name,
        namespace,
    })
}

/// The bytes under `key` in `data` or `binaryData`.
fn config_map_value(cm: &ConfigMap, key: &str) -> Option<Vec<u8>> {
    if let Some(text) = cm.data.as_ref().and_then(|d| d.get(key)) {
        return Some(text.as_bytes().to_vec());
    }
    cm.binary_data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|bytes| bytes.0.clone())
}

/// The user's resources, or small defaults when none are given: the server holds a model of a
/// few hundred bytes and answers in microseconds.
pub(crate) fn resources_or_default(
    resources: Option<&ResourceRequirements>,
) -> ResourceRequirements {
    let empty = |r: &&ResourceRequirements| {
        r.requests.as_ref().is_none_or(BTreeMap::is_empty)
            && r.limits.as_ref().is_none_or(BTreeMap::is_empty)
            && r.claims.as_ref().is_none_or(Vec::is_empty)
    };
    match resources.filter(|r| !empty(r)) {
        Some(resources) => resources.clone(),
        None => ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity("50m".to_string())),
                ("memory".to_string(), Quantity("32Mi".to_string())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".to_string(),
                Quantity("128Mi".to_string()),
            )])),
            claims: None,
        },
    }
}

/// The pods' URL inside the cluster (`https://` with TLS).
pub(crate) fn endpoint(
    name: &str,
    namespace: &str,
    port: i32,
    cluster_domain: &str,
    tls: bool,
) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{name}.{namespace}.svc.{cluster_domain}:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{AutoscalingSpec, BuiltinSource, ModelSource};
    use crate::fixtures::{artifact, config_map, configmap_model, model};

    fn settings() -> Settings {
        Settings::default()
    }

    #[test]
    fn builtin_model_digest_is_the_servers() {
        let resolved = resolve(
            &model("iris", 1),
            &settings(),
            None,
            &BuiltinCache::default(),
        )
        .expect("resolves");
        let expected = iris_model::train(&iris_model::TrainingParams::default()).expect("trains");
        assert_eq!(
            resolved.model_status.digest.as_deref(),
            Some(expected.digest())
        );
        assert_eq!(resolved.model_status.accuracy, Some(expected.accuracy()));
        assert_eq!(resolved.model_status.source, "builtin");
        assert_eq!(resolved.model_status.task, "binary");
        assert_eq!(resolved.positive_class, Some(IrisClass::Setosa));
        assert_eq!(resolved.image, "iris-operator/model-server:0.1.0");
        assert_eq!(resolved.replicas, Some(1));
        assert_eq!(
            resolved.endpoint,
            "http://iris.testns.svc.cluster.local:5001"
        );
    }

    #[test]
    fn missing_configmap_key_and_bad_artifact_are_user_errors() {
        let model = configmap_model("iris", "iris-model", Task::Binary);
        let cache = BuiltinCache::default();
        let err = resolve(&model, &settings(), None, &cache).expect_err("no ConfigMap");
        assert_eq!(err.category(), "ConfigMapNotFound");
        assert!(err.to_string().contains("testns/iris-model"), "{err}");

        let wrong_key = config_map("iris-model", "other.json", "{}");
        let err = resolve(&model, &settings(), Some(&wrong_key), &cache).expect_err("no key");
        assert_eq!(err.category(), "ConfigMapKeyNotFound");

        let corrupt = config_map("iris-model", "model.json", "{\"not\": \"a model\"}");
        let err = resolve(&model, &settings(), Some(&corrupt), &cache).expect_err("corrupt");
        assert_eq!(err.category(), "InvalidArtifact");
        assert!(err.is_user_error());

        let multiclass = config_map(
            "iris-model",
            "model.json",
            &artifact(Task::Multiclass, None),
        );
        let err = resolve(&model, &settings(), Some(&multiclass), &cache).expect_err("task");
        assert!(err.to_string().contains("multiclass"), "{err}");
    }

    #[test]
    fn configmap_artifact_is_checked_and_hashed() {
        let model = configmap_model("iris", "iris-model", Task::Binary);
        let content = artifact(Task::Binary, Some(IrisClass::Virginica));
        let cm = config_map("iris-model", "model.json", &content);
        let resolved = resolve(&model, &settings(), Some(&cm), &BuiltinCache::default())
            .expect("valid artifact");
        let parsed = iris_model::ModelArtifact::from_json(&content).expect("parses");
        assert_eq!(
            resolved.model_status.digest.as_deref(),
            Some(parsed.digest())
        );
        assert_eq!(
            resolved.model_status.source,
            "configMap:iris-model/model.json"
        );
        assert_eq!(
            resolved.source,
            ResolvedSource::ConfigMap {
                name: "iris-model".into(),
                key: "model.json".into(),
                content_hash: crate::artifact::content_hash(content.as_bytes()),
            }
        );

        // A positive class in the spec must match the artifact's.
        let mut setosa = model.clone();
        setosa.spec.model.positive_class = Some(IrisClass::Setosa);
        let err = resolve(&setosa, &settings(), Some(&cm), &BuiltinCache::default())
            .expect_err("class mismatch");
        assert_eq!(err.category(), "InvalidArtifact");
    }

    #[test]
    fn rules_the_crd_should_have_enforced_are_checked_again() {
        let mut two_sources = model("iris", 1);
        two_sources.spec.model.source = ModelSource {
            builtin: Some(BuiltinSource {}),
            config_map: None,
            file: Some("/m.json".into()),
        };
        let err = resolve(&two_sources, &settings(), None, &BuiltinCache::default())
            .expect_err("two sources");
        assert_eq!(err.category(), "InvalidSpec");

        let mut multiclass = model("iris", 1);
        multiclass.spec.model.task = Task::Multiclass;
        multiclass.spec.model.positive_class = Some(IrisClass::Setosa);
        let err = resolve(&multiclass, &settings(), None, &BuiltinCache::default())
            .expect_err("positive class with multiclass");
        assert_eq!(err.category(), "InvalidSpec");
    }

    #[test]
    fn pull_secrets_are_the_specs_else_the_installations_default() {
        let defaults = Settings {
            default_image_pull_secrets: vec!["org-cred".into()],
            ..Settings::default()
        };
        let cache = BuiltinCache::default();
        let mut model = model("iris", 1);
        let resolved = resolve(&model, &defaults, None, &cache).expect("resolves");
        assert_eq!(resolved.image_pull_secrets, ["org-cred"]);
        model.spec.image_pull_secrets = Some(vec![crate::crd::PullSecretRef {
            name: "team-cred".into(),
        }]);
        let resolved = resolve(&model, &defaults, None, &cache).expect("resolves");
        assert_eq!(resolved.image_pull_secrets, ["team-cred"]);
        // An empty list opts out of the default.
        model.spec.image_pull_secrets = Some(vec![]);
        let resolved = resolve(&model, &defaults, None, &cache).expect("resolves");
        assert!(resolved.image_pull_secrets.is_empty());
    }

    #[test]
    fn file_source_image_and_autoscaling() {
        let mut model = model("iris", 1);
        model.spec.model.source = ModelSource {
            builtin: None,
            config_map: None,
            file: Some("/opt/iris.json".into()),
        };
        model.spec.image = Some("example.com/custom:1".into());
        model.spec.autoscaling = Some(AutoscalingSpec {
            min_replicas: 2,
            max_replicas: 4,
            target_cpu_utilization_percentage: 60,
            scale_down_stabilization_seconds: None,
            idle_seconds: None,
            target_requests_per_second: None,
        });
        let resolved =
            resolve(&model, &settings(), None, &BuiltinCache::default()).expect("resolves");
        assert_eq!(
            resolved.source,
            ResolvedSource::File("/opt/iris.json".into())
        );
        assert_eq!(resolved.model_status.source, "file:/opt/iris.json");
        assert_eq!(resolved.model_status.digest, None);
        assert_eq!(resolved.image, "example.com/custom:1");
        assert_eq!(resolved.replicas, None);
        assert_eq!(resolved.min_replicas(), 2);
    }

    #[test]
    fn explicit_resources_are_kept_and_empty_ones_get_defaults() {
        let empty = ResourceRequirements::default();
        assert_eq!(
            resources_or_default(Some(&empty)),
            resources_or_default(None)
        );
        let custom = ResourceRequirements {
            limits: Some(BTreeMap::from([("cpu".into(), Quantity("1".into()))])),
            ..ResourceRequirements::default()
        };
        assert_eq!(resources_or_default(Some(&custom)), custom);
    }
}
