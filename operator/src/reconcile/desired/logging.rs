//! Payload logging (spec.logging) on the model-server pods: the sink and sampling as
//! environment variables, and the optional headers Secret key as a mounted file (a whole
//! directory, never `subPath`), whose path only the server is told. The operator never reads
//! the Secret.

use iris_model::env;
use k8s_openapi::api::core::v1::{EnvVar, Volume, VolumeMount};

use super::env_var;
use super::volume::{mount, secret_volume};
use crate::reconcile::resolve::Resolved;

/// Volume of the `spec.logging.headersSecretRef` Secret.
pub(crate) const HEADERS_VOLUME: &str = "payload-log";
/// Where it is mounted.
pub(crate) const HEADERS_DIR: &str = "/etc/model-server/payload-log";
/// The file the key becomes.
pub(crate) const HEADERS_FILE: &str = "headers";

/// Whether the pods mount the headers Secret.
pub(crate) fn mounts_secret(resolved: &Resolved) -> bool {
    resolved
        .logging
        .as_ref()
        .is_some_and(|l| l.headers_secret_ref.is_some())
}

/// The headers Secret's volume and read-only mount, if any.
pub(crate) fn volumes(resolved: &Resolved) -> Option<(Volume, VolumeMount)> {
    let secret = resolved.logging.as_ref()?.headers_secret_ref.as_ref()?;
    Some((
        secret_volume(
            HEADERS_VOLUME,
            &secret.name,
            &[(secret.key.as_str(), HEADERS_FILE)],
        ),
        mount(HEADERS_VOLUME, HEADERS_DIR),
    ))
}

/// The server's payload-log settings; none without spec.logging.
pub(crate) fn env(resolved: &Resolved) -> Vec<EnvVar> {
    let Some(logging) = &resolved.logging else {
        return Vec::new();
    };
    let mut env = vec![
        env_var(env::PAYLOAD_LOG_URL, logging.url.clone()),
        env_var(env::PAYLOAD_LOG_MODE, logging.mode.as_str()),
        env_var(
            env::PAYLOAD_LOG_SAMPLE_PERCENT,
            logging.sample_percent.to_string(),
        ),
    ];
    if logging.headers_secret_ref.is_some() {
        env.push(env_var(
            env::PAYLOAD_LOG_HEADERS_FILE,
            format!("{HEADERS_DIR}/{HEADERS_FILE}"),
        ));
    }
    env
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::artifact::BuiltinCache;
    use crate::context::Settings;
    use crate::crd::{LoggingMode, LoggingSpec, SecretKeyRef};
    use crate::fixtures::model;
    use crate::reconcile::desired::deployment;
    use crate::reconcile::resolve::resolve;

    fn resolved(logging: Option<LoggingSpec>) -> Resolved {
        let mut model = model("iris", 1);
        model.spec.logging = logging;
        resolve(&model, &Settings::default(), None, &BuiltinCache::default()).expect("resolves")
    }

    fn pod_json(resolved: &Resolved) -> serde_json::Value {
        let built = deployment::build(resolved);
        serde_json::to_value(built.spec.expect("spec").template.spec.expect("pod")).expect("json")
    }

    fn payload_env(pod: &serde_json::Value) -> Vec<serde_json::Value> {
        pod["containers"][0]["env"]
            .as_array()
            .expect("env")
            .iter()
            .filter(|e| {
                e["name"]
                    .as_str()
                    .is_some_and(|n| n.contains("PAYLOAD_LOG"))
            })
            .cloned()
            .collect()
    }

    #[test]
    fn the_sink_and_sampling_become_env_and_the_headers_secret_a_mounted_file() {
        let r = resolved(Some(LoggingSpec {
            url: "http://sink.ml.svc:8080/events".into(),
            mode: LoggingMode::Response,
            sample_percent: 25,
            headers_secret_ref: Some(SecretKeyRef {
                name: "sink-headers".into(),
                key: "h.txt".into(),
            }),
        }));
        let pod = pod_json(&r);
        assert_eq!(
            payload_env(&pod),
            [
                json!({"name": "MODEL_SERVER_PAYLOAD_LOG_URL", "value": "http://sink.ml.svc:8080/events"}),
                json!({"name": "MODEL_SERVER_PAYLOAD_LOG_MODE", "value": "response"}),
                json!({"name": "MODEL_SERVER_PAYLOAD_LOG_SAMPLE_PERCENT", "value": "25"}),
                json!({"name": "MODEL_SERVER_PAYLOAD_LOG_HEADERS_FILE", "value": "/etc/model-server/payload-log/headers"}),
            ]
        );
        assert_eq!(
            pod["volumes"],
            json!([{"name": "payload-log", "secret": {"secretName": "sink-headers",
                "defaultMode": 0o440, "optional": false,
                "items": [{"key": "h.txt", "path": "headers"}]}}])
        );
        assert_eq!(
            pod["containers"][0]["volumeMounts"],
            json!([{"name": "payload-log", "mountPath": "/etc/model-server/payload-log", "readOnly": true}])
        );
        // The server reads the 0440 file as the group the fsGroup gives it.
        assert!(pod["securityContext"]["fsGroup"].is_number(), "{pod}");
    }

    #[test]
    fn without_headers_no_volume_and_without_logging_nothing() {
        let r = resolved(Some(LoggingSpec {
            url: "http://sink/".into(),
            mode: LoggingMode::All,
            sample_percent: 100,
            headers_secret_ref: None,
        }));
        let pod = pod_json(&r);
        assert_eq!(payload_env(&pod).len(), 3);
        assert!(pod["volumes"].is_null(), "{pod}");
        assert!(pod["securityContext"]["fsGroup"].is_null(), "{pod}");
        let pod = pod_json(&resolved(None));
        assert!(payload_env(&pod).is_empty());
    }
}
