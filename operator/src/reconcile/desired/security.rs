//! TLS and bearer tokens of the model-server pods: the Secrets named in the spec become
//! volumes (whole directories, never `subPath`, which Kubernetes never updates, so a renewed
//! certificate or an edited token list reaches the running server), and the server is told
//! the files' paths. No key material passes through the operator: it never reads the Secrets.

use iris_model::env;
use k8s_openapi::api::core::v1::{EnvVar, Volume, VolumeMount};

use super::env_var;
use super::volume::{mount, secret_volume};
use crate::reconcile::resolve::Resolved;

/// Volume of the `spec.tls.secretName` Secret.
pub(crate) const TLS_VOLUME: &str = "tls";
/// Where it is mounted.
pub(crate) const TLS_DIR: &str = "/etc/model-server/tls";
/// Keys of a `kubernetes.io/tls` Secret.
pub(crate) const TLS_CERT_KEY: &str = "tls.crt";
pub(crate) const TLS_KEY_KEY: &str = "tls.key";
/// Volume of the `spec.auth.secretName` Secret.
pub(crate) const AUTH_VOLUME: &str = "auth";
/// Where it is mounted.
pub(crate) const AUTH_DIR: &str = "/etc/model-server/auth";
/// The file the tokens key becomes.
pub(crate) const TOKENS_FILE: &str = "tokens";

/// The spec field naming the Secret of a volume, for the status of a pod that cannot mount it.
pub(crate) fn spec_field_of_volume(volume: &str) -> Option<&'static str> {
    match volume {
        TLS_VOLUME => Some("spec.tls.secretName"),
        AUTH_VOLUME => Some("spec.auth.secretName"),
        super::logging::HEADERS_VOLUME => Some("spec.logging.headersSecretRef.name"),
        _ => None,
    }
}

/// Whether the pods mount a Secret (and so need the fsGroup to read it).
pub(crate) fn mounts_secrets(resolved: &Resolved) -> bool {
    resolved.tls_secret.is_some()
        || resolved.auth.is_some()
        || super::logging::mounts_secret(resolved)
}

/// The Secret volumes and their read-only mounts.
pub(crate) fn volumes(resolved: &Resolved) -> (Vec<Volume>, Vec<VolumeMount>) {
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    if let Some(secret) = &resolved.tls_secret {
        volumes.push(secret_volume(
            TLS_VOLUME,
            secret,
            &[(TLS_CERT_KEY, TLS_CERT_KEY), (TLS_KEY_KEY, TLS_KEY_KEY)],
        ));
        mounts.push(mount(TLS_VOLUME, TLS_DIR));
    }
    if let Some(auth) = &resolved.auth {
        // Only the one key, under a fixed file name, so the path does not depend on it.
        volumes.push(secret_volume(
            AUTH_VOLUME,
            &auth.secret_name,
            &[(auth.key.as_str(), TOKENS_FILE)],
        ));
        mounts.push(mount(AUTH_VOLUME, AUTH_DIR));
    }
    if let Some((volume, mount)) = super::logging::volumes(resolved) {
        volumes.push(volume);
        mounts.push(mount);
    }
    (volumes, mounts)
}

/// The model server's TLS and auth settings: file paths only, never their content. Variables
/// that do not apply are left out (the server refuses an empty one).
pub(crate) fn env(resolved: &Resolved) -> Vec<EnvVar> {
    let mut env = Vec::new();
    if resolved.tls_secret.is_some() {
        env.push(env_var(
            env::TLS_CERT_FILE,
            format!("{TLS_DIR}/{TLS_CERT_KEY}"),
        ));
        env.push(env_var(
            env::TLS_KEY_FILE,
            format!("{TLS_DIR}/{TLS_KEY_KEY}"),
        ));
    }
    if let Some(auth) = &resolved.auth {
        env.push(env_var(
            env::AUTH_TOKENS_FILE,
            format!("{AUTH_DIR}/{TOKENS_FILE}"),
        ));
        if auth.protect_metrics {
            env.push(env_var(env::AUTH_METRICS, "true"));
        }
    }
    env
}

/// The scheme of the pods' HTTP port, for their probes.
pub(crate) fn http_scheme(resolved: &Resolved) -> &'static str {
    if resolved.tls_secret.is_some() {
        "HTTPS"
    } else {
        "HTTP"
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use serde_json::json;

    use super::*;
    use crate::artifact::BuiltinCache;
    use crate::context::Settings;
    use crate::crd::AuthSpec;
    use crate::fixtures::model;
    use crate::reconcile::desired::{deployment, service};
    use crate::reconcile::resolve::resolve;

    fn secured(tls: bool, auth: Option<AuthSpec>) -> Resolved {
        let mut model = model("iris", 1);
        if tls {
            model.spec.tls = Some(crate::crd::TlsSpec {
                secret_name: "iris-tls".into(),
            });
        }
        model.spec.auth = auth;
        resolve(&model, &Settings::default(), None, &BuiltinCache::default()).expect("resolves")
    }

    fn tokens(protect_metrics: bool) -> Option<AuthSpec> {
        Some(AuthSpec {
            secret_name: "iris-tokens".into(),
            key: "list".into(),
            protect_metrics,
        })
    }

    fn pod(deployment: &Deployment) -> (&PodSpec, &Container) {
        let pod = deployment
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod spec");
        (pod, &pod.containers[0])
    }

    fn env_of(container: &Container) -> Vec<(String, String)> {
        container
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
            .collect()
    }

    #[test]
    fn tls_and_tokens_are_mounted_secret_volumes_and_only_paths_reach_the_env() {
        let resolved = secured(true, tokens(true));
        assert_eq!(
            resolved.endpoint,
            "https://iris.testns.svc.cluster.local:5001"
        );
        let built = deployment::build(&resolved);
        let (pod, container) = pod(&built);
        assert_eq!(
            serde_json::to_value(&pod.volumes).expect("json"),
            json!([
                {"name": "tls", "secret": {"secretName": "iris-tls", "defaultMode": 0o440,
                    "optional": false, "items": [
                        {"key": "tls.crt", "path": "tls.crt"},
                        {"key": "tls.key", "path": "tls.key"}]}},
                {"name": "auth", "secret": {"secretName": "iris-tokens", "defaultMode": 0o440,
                    "optional": false, "items": [{"key": "list", "path": "tokens"}]}}
            ])
        );
        let mounts = serde_json::to_value(&container.volume_mounts).expect("json");
        assert_eq!(
            mounts,
            json!([
                {"name": "tls", "mountPath": "/etc/model-server/tls", "readOnly": true},
                {"name": "auth", "mountPath": "/etc/model-server/auth", "readOnly": true}
            ]),
            "whole directories, never subPath"
        );
        let env = env_of(container);
        for expected in [
            (
                "MODEL_SERVER_TLS_CERT_FILE",
                "/etc/model-server/tls/tls.crt",
            ),
            ("MODEL_SERVER_TLS_KEY_FILE", "/etc/model-server/tls/tls.key"),
            (
                "MODEL_SERVER_AUTH_TOKENS_FILE",
                "/etc/model-server/auth/tokens",
            ),
            ("MODEL_SERVER_AUTH_METRICS", "true"),
        ] {
            assert!(
                env.contains(&(expected.0.to_string(), expected.1.to_string())),
                "{expected:?} in {env:?}"
            );
        }
        assert!(
            container.env.iter().flatten().all(|e| e
                .value_from
                .as_ref()
                .is_none_or(|v| v.secret_key_ref.is_none())),
            "no Secret value in the env"
        );
        assert_eq!(
            pod.security_context.as_ref().and_then(|s| s.fs_group),
            Some(65532)
        );
        for probe in [&container.liveness_probe, &container.readiness_probe] {
            let get = probe
                .as_ref()
                .and_then(|p| p.http_get.as_ref())
                .expect("get");
            assert_eq!(get.scheme.as_deref(), Some("HTTPS"));
        }
        let svc = service::build(&resolved);
        let ports = svc.spec.and_then(|s| s.ports).expect("ports");
        assert_eq!(ports[0].app_protocol.as_deref(), Some("https"));
        assert_eq!(ports[1].app_protocol.as_deref(), Some("grpc"));
        assert_eq!(scrape_scheme(&built), Some("https".to_string()));
    }

    /// The pods' `prometheus.io/scheme` annotation.
    fn scrape_scheme(deployment: &Deployment) -> Option<String> {
        let template = deployment.spec.as_ref()?.template.metadata.as_ref()?;
        template
            .annotations
            .as_ref()?
            .get("prometheus.io/scheme")
            .cloned()
    }

    #[test]
    fn tokens_alone_leave_the_ports_plain_and_metrics_open() {
        let resolved = secured(false, tokens(false));
        assert!(resolved.endpoint.starts_with("http://"));
        let built = deployment::build(&resolved);
        let (pod, container) = pod(&built);
        let env = env_of(container);
        assert!(env
            .iter()
            .all(|(k, _)| !k.starts_with("MODEL_SERVER_TLS") && k != "MODEL_SERVER_AUTH_METRICS"));
        assert_eq!(pod.volumes.as_ref().map(Vec::len), Some(1));
        let get = container
            .readiness_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref());
        assert_eq!(get.and_then(|g| g.scheme.as_deref()), Some("HTTP"));
        assert_eq!(
            scrape_scheme(&built),
            None,
            "plain HTTP: no scheme annotation"
        );
    }

    #[test]
    fn without_either_the_pods_are_unchanged() {
        let resolved = secured(false, None);
        let built = deployment::build(&resolved);
        let (pod, container) = pod(&built);
        assert_eq!(pod.volumes, None);
        assert_eq!(container.volume_mounts, None);
        assert_eq!(pod.security_context.as_ref().and_then(|s| s.fs_group), None);
    }

    #[test]
    fn protected_metrics_with_a_canary_is_refused_naming_both_fields() {
        let mut model = model("iris", 1);
        model.spec.auth = tokens(true);
        model.spec.rollout = Some(crate::crd::RolloutSpec {
            strategy: crate::crd::RolloutStrategy::Canary,
            ..Default::default()
        });
        let err = resolve(&model, &Settings::default(), None, &BuiltinCache::default())
            .expect_err("refused");
        assert_eq!(err.category(), "InvalidSpec");
        let text = err.to_string();
        assert!(
            text.contains("spec.auth.protectMetrics") && text.contains("Canary"),
            "{text}"
        );
    }

    #[test]
    fn volumes_name_their_spec_field() {
        assert_eq!(spec_field_of_volume("tls"), Some("spec.tls.secretName"));
        assert_eq!(spec_field_of_volume("auth"), Some("spec.auth.secretName"));
        assert_eq!(spec_field_of_volume("model"), None);
        assert_eq!(
            spec_field_of_volume(super::super::logging::HEADERS_VOLUME),
            Some("spec.logging.headersSecretRef.name")
        );
    }
}
