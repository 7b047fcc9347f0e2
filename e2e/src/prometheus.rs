//! A real Prometheus in the test cluster: the server built from its Go module with Kubernetes
//! service discovery (`build-tools.sh prometheus`), in a FROM-scratch image that
//! `e2e/run-suite.sh` loads, configured with `e2e/monitoring/prometheus.yml` (the scrape job
//! of docs/monitoring.md) and the chart's `alerts.yaml`. Queried through `kubectl port-forward`.
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cluster::repo_root;
use crate::kubectl;
use crate::portforward::PortForward;
use crate::serving::http;

/// `PROMETHEUS_IMAGE`, or the name run-suite.sh gives the image of the pinned version.
pub fn image() -> String {
    std::env::var("PROMETHEUS_IMAGE").unwrap_or_else(|_| {
        let versions = std::fs::read_to_string(repo_root().join("e2e/tools/versions.env"))
            .expect("read e2e/tools/versions.env");
        let version = versions
            .lines()
            .find_map(|l| l.strip_prefix("PROMETHEUS_VERSION="))
            .expect("PROMETHEUS_VERSION in versions.env");
        format!("iris-e2e/prometheus:{version}")
    })
}

/// The chart's alert rules with every `for:` set to `hold`, so a test waits seconds for an
/// alert whose expression is exactly the shipped one.
pub fn rules_with_for(hold: &str) -> String {
    let rules = std::fs::read_to_string(repo_root().join("charts/iris-operator/files/alerts.yaml"))
        .expect("read charts/iris-operator/files/alerts.yaml");
    rules
        .lines()
        .map(|l| match l.trim_start().strip_prefix("for: ") {
            Some(_) => format!("{}for: {hold}", &l[..l.len() - l.trim_start().len()]),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The test configuration (e2e/monitoring/prometheus.yml).
pub fn config() -> String {
    std::fs::read_to_string(repo_root().join("e2e/monitoring/prometheus.yml"))
        .expect("read e2e/monitoring/prometheus.yml")
}

/// The scrape and evaluation interval of that configuration.
pub const INTERVAL: Duration = Duration::from_secs(5);

/// A Prometheus Deployment in `ns` that can list pods cluster-wide; its cluster-scoped RBAC is
/// deleted on drop (the namespace goes with the test).
pub struct Prometheus {
    ns: String,
    cluster_name: String,
    forward: Option<PortForward>,
}

impl Prometheus {
    /// Applies the objects and waits until the server answers /-/ready.
    pub fn start(ns: &str, rules: &str) -> Prometheus {
        let cluster_name = format!("e2e-prometheus-{ns}");
        let this = Prometheus {
            ns: ns.to_string(),
            cluster_name: cluster_name.clone(),
            forward: None,
        };
        let objects = objects(ns, &cluster_name, &image(), &config(), rules);
        let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
        kubectl::apply(ns, &list.to_string()).expect("apply the Prometheus objects");
        let out = kubectl::run(
            &[
                "rollout",
                "status",
                "-n",
                ns,
                "deployment/prometheus",
                "--timeout=120s",
            ],
            None,
        );
        assert!(
            out.status.success(),
            "Prometheus did not become ready: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        this
    }

    /// The server's base URL, through a port-forward started on first use.
    pub fn url(&mut self) -> String {
        let ns = self.ns.clone();
        self.forward
            .get_or_insert_with(|| PortForward::start(&ns, "deployment/prometheus", 9090))
            .url()
    }

    /// `GET /api/v1/<path>` with `params`, the `data` of a successful answer.
    pub async fn api(&mut self, path: &str, params: &[(&str, &str)]) -> Value {
        let url = format!("{}/api/v1/{path}", self.url());
        let resp = http()
            .get(&url)
            .query(params)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = resp.status();
        let body: Value = resp
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"));
        assert!(
            status.is_success() && body["status"] == "success",
            "GET {url} {params:?}: {status}: {body}"
        );
        body["data"].clone()
    }

    /// The samples of an instant query: (labels, value).
    pub async fn query(&mut self, promql: &str) -> Vec<(Value, f64)> {
        let data = self.api("query", &[("query", promql)]).await;
        data["result"]
            .as_array()
            .map(|r| {
                r.iter()
                    .map(|s| {
                        let v = s["value"][1].as_str().and_then(|v| v.parse().ok());
                        (s["metric"].clone(), v.unwrap_or(f64::NAN))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Polls `promql` every 250 ms until `done` holds for its samples, at most `timeout`;
    /// returns when it held. Panics with the last samples otherwise.
    pub async fn wait_query(
        &mut self,
        promql: &str,
        timeout: Duration,
        done: impl Fn(&[(Value, f64)]) -> bool,
    ) -> Instant {
        let deadline = Instant::now() + timeout;
        loop {
            let samples = self.query(promql).await;
            if done(&samples) {
                return Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "{promql}: not as expected within {timeout:?}; last result: {samples:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The active scrape targets: (labels, health, last error).
    pub async fn targets(&mut self) -> Vec<(Value, String, String)> {
        let data = self.api("targets", &[("state", "active")]).await;
        data["activeTargets"]
            .as_array()
            .map(|t| {
                t.iter()
                    .map(|t| {
                        (
                            t["labels"].clone(),
                            t["health"].as_str().unwrap_or("").to_string(),
                            t["lastError"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.forward = None;
        let name = self.cluster_name.as_str();
        let _ = kubectl::run(
            &[
                "delete",
                "--ignore-not-found",
                "--wait=false",
                &format!("clusterrolebinding/{name}"),
                &format!("clusterrole/{name}"),
            ],
            None,
        );
    }
}

/// The objects: ServiceAccount, ClusterRole (pods: get, list, watch) and its binding, the
/// ConfigMap of configuration and rules, and a restricted one-replica Deployment.
fn objects(ns: &str, cluster_name: &str, image: &str, config: &str, rules: &str) -> Vec<Value> {
    let labels =
        json!({"app.kubernetes.io/name": "prometheus", "app.kubernetes.io/part-of": "iris-e2e"});
    vec![
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "prometheus"}}),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": cluster_name},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": cluster_name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_name},
            "subjects": [{"kind": "ServiceAccount", "name": "prometheus", "namespace": ns}]
        }),
        json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "prometheus"},
            "data": {"prometheus.yml": config, "alerts.yaml": rules}
        }),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "prometheus", "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": "prometheus",
                        "securityContext": {"runAsNonRoot": true, "runAsUser": 65534, "runAsGroup": 65534,
                                            "fsGroup": 65534, "seccompProfile": {"type": "RuntimeDefault"}},
                        "containers": [{
                            "name": "prometheus",
                            "image": image,
                            "imagePullPolicy": "IfNotPresent",
                            "args": ["--config.file=/etc/prometheus/prometheus.yml",
                                     "--storage.tsdb.path=/data",
                                     "--storage.tsdb.retention.time=1h",
                                     "--web.listen-address=:9090"],
                            "ports": [{"name": "web", "containerPort": 9090}],
                            "readinessProbe": {"httpGet": {"path": "/-/ready", "port": "web"}, "periodSeconds": 2},
                            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}},
                            "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                                                "capabilities": {"drop": ["ALL"]}},
                            "volumeMounts": [{"name": "config", "mountPath": "/etc/prometheus"},
                                             {"name": "data", "mountPath": "/data"}]
                        }],
                        "volumes": [{"name": "config", "configMap": {"name": "prometheus"}},
                                    {"name": "data", "emptyDir": {}}]
                    }
                }
            }
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_for_of_the_shipped_rules_is_replaced_and_nothing_else() {
        let shipped =
            std::fs::read_to_string(repo_root().join("charts/iris-operator/files/alerts.yaml"))
                .unwrap();
        let short = rules_with_for("20s");
        assert!(shipped.contains("for: 10m"));
        assert!(!short.contains("for: 10m") && !short.contains("for: 5m"));
        let fors = |s: &str| {
            s.lines()
                .filter(|l| l.trim_start().starts_with("for: "))
                .count()
        };
        assert_eq!(fors(&shipped), fors(&short));
        assert_eq!(shipped.lines().count(), short.lines().count());
        let yaml: serde_yaml::Value = serde_yaml::from_str(&short).expect("still YAML");
        assert!(yaml["groups"].as_sequence().is_some_and(|g| !g.is_empty()));
    }

    #[test]
    fn the_monitoring_doc_shows_the_scrape_config_the_e2e_prometheus_runs() {
        let config = config();
        let start = config
            .find("scrape_configs:")
            .expect("scrape_configs in prometheus.yml");
        let doc = std::fs::read_to_string(repo_root().join("docs/monitoring.md")).unwrap();
        assert!(
            doc.contains(config[start..].trim_end()),
            "docs/monitoring.md must show e2e/monitoring/prometheus.yml's scrape_configs as they are"
        );
    }
}
