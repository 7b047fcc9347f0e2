//! The cluster under test: a client, the operator's Helm release, temporary namespaces.
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Where the chart installs the operator.
pub const OPERATOR_NAMESPACE: &str = "iris-system";
/// The Helm release name (and so the operator Deployment's name).
pub const RELEASE: &str = "iris-operator";
/// The label selecting the operator's pods.
pub const OPERATOR_SELECTOR: &str = "app.kubernetes.io/name=iris-operator";

/// The repository root (charts/, examples/).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ sits in the repository")
        .to_path_buf()
}

/// A path under examples/.
pub fn example(name: &str) -> PathBuf {
    repo_root().join("examples").join(name)
}

/// A client for the cluster KUBECONFIG points to.
pub async fn client() -> Client {
    Client::try_default()
        .await
        .expect("a kubeconfig for the cluster under test (set KUBECONFIG, or run `make e2e`)")
}

fn image_parts(var: &str, default: &str) -> (String, String) {
    let image = std::env::var(var).unwrap_or_else(|_| default.to_string());
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), tag.to_string()),
        _ => (image, "latest".to_string()),
    }
}

/// The helm binary: $HELM or `helm` on the PATH.
pub fn helm() -> String {
    std::env::var("HELM").unwrap_or_else(|_| "helm".to_string())
}

static INSTALL: OnceLock<Result<(), String>> = OnceLock::new();

/// Installs (or upgrades) charts/iris-operator with our images, once per test binary, and
/// waits until the operator's Deployment is available (`helm --wait`).
pub fn ensure_operator() {
    if let Err(e) = INSTALL.get_or_init(install_operator) {
        panic!("helm install of charts/iris-operator failed: {e}");
    }
}

/// The install itself: what [`ensure_operator`] does once per test binary, and what
/// `src/bin/install-operator.rs` (nextest's setup script, .config/nextest.toml) does once per
/// run. A no-op under `E2E_OPERATOR_READY=1`.
pub fn install_operator() -> Result<(), String> {
    // Tests that run side by side share the release installed before them (nextest's setup
    // script sets E2E_OPERATOR_READY=1 for them): a second helm upgrade would race the first,
    // and the restart below would pull the operator from under the other tests.
    if std::env::var("E2E_OPERATOR_READY").is_ok_and(|v| v == "1") {
        return Ok(());
    }
    let (op_repo, op_tag) = image_parts("OPERATOR_IMAGE", "iris-operator/operator:0.1.0");
    let (ms_repo, ms_tag) = image_parts("MODEL_SERVER_IMAGE", "iris-operator/model-server:0.1.0");
    // The chart from a registry (E2E_CHART=oci://..., set by e2e/registry-setup.sh), or the
    // repository's.
    let registry_chart = std::env::var("E2E_CHART").ok().filter(|c| !c.is_empty());
    let chart = match &registry_chart {
        Some(oci) => std::path::PathBuf::from(oci),
        None => repo_root().join("charts/iris-operator"),
    };
    let from_registry: Vec<String> = match &registry_chart {
        Some(_) => vec![
            "--version".into(),
            std::env::var("E2E_CHART_VERSION").unwrap_or_else(|_| op_tag.clone()),
            // The local registry speaks plain HTTP.
            "--plain-http".into(),
        ],
        None => Vec::new(),
    };
    // The chart's admission policy (on by default) allows the chart's own model-server image;
    // the suite also runs images it must accept: one no node can pull (a registry on the
    // node's loopback), the nodes' pause image, the hostile model of tests/tenants.rs, and the
    // private registry's model server.
    let mut prefixes = vec![
        "127.0.0.1:9/".to_string(),
        "registry.k8s.io/pause:".to_string(),
        // tests/tenants.rs: the suite's hostile model image.
        "iris-e2e/hostile-model:".to_string(),
    ];
    if let Some(host) = std::env::var("E2E_PRIVATE_REGISTRY")
        .ok()
        .filter(|h| !h.is_empty())
    {
        prefixes.push(format!("{host}/"));
    }
    let prefixes = format!(
        "policy.allowedImagePrefixes={}",
        serde_json::Value::from(prefixes)
    );
    // An existing release keeps its pods when the image tag is unchanged: restart them below
    // so the suite always runs the images just loaded.
    let existed = Command::new(helm())
        .args(["status", RELEASE, "--namespace", OPERATOR_NAMESPACE])
        .output()
        .is_ok_and(|o| o.status.success());
    let out = Command::new(helm())
        .args(["upgrade", "--install", RELEASE])
        .arg(chart)
        .args(&from_registry)
        .args(["--namespace", OPERATOR_NAMESPACE, "--create-namespace"])
        .args(["--set", &format!("image.repository={op_repo}")])
        .args(["--set", &format!("image.tag={op_tag}")])
        .args(["--set", &format!("modelServer.image.repository={ms_repo}")])
        .args(["--set", &format!("modelServer.image.tag={ms_tag}")])
        .args(["--set", "logging.format=text"])
        .args(["--set-json", &prefixes])
        .args(["--wait", "--timeout", "180s"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", helm()))?;
    if !out.status.success() {
        return Err(format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    if existed {
        restart_operator()?;
    }
    Ok(())
}

/// Restarts the operator's Deployment and waits for the rollout.
fn restart_operator() -> Result<(), String> {
    let deploy = format!("deployment/{RELEASE}");
    for args in [
        vec![
            "rollout",
            "restart",
            "-n",
            OPERATOR_NAMESPACE,
            deploy.as_str(),
        ],
        vec![
            "rollout",
            "status",
            "-n",
            OPERATOR_NAMESPACE,
            deploy.as_str(),
            "--timeout=180s",
        ],
    ] {
        let out = crate::kubectl::run(&args, None);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
    }
    Ok(())
}

/// Waits (watching, no polling) until the object `name` as seen by `cond` (None: it does not
/// exist) satisfies it, at most `timeout`, and returns it then. Panics otherwise, with `what`
/// and the object's last status (or the whole object when it has none).
pub async fn wait_until<K>(
    api: &Api<K>,
    name: &str,
    timeout: Duration,
    what: &str,
    cond: impl Fn(Option<&K>) -> bool,
) -> Option<K>
where
    K: Resource + Clone + std::fmt::Debug + DeserializeOwned + Serialize + Send + Sync + 'static,
{
    let kind = api
        .resource_url()
        .rsplit('/')
        .next()
        .unwrap_or("object")
        .to_string();
    match tokio::time::timeout(timeout, await_condition(api.clone(), name, cond)).await {
        Ok(Ok(obj)) => obj,
        Ok(Err(e)) => panic!("watch of {kind}/{name} failed while waiting until {what}: {e}"),
        Err(_) => {
            let last = api.get_opt(name).await.ok().flatten();
            let last = serde_json::to_value(&last).unwrap_or_default();
            let shown = last.get("status").unwrap_or(&last);
            panic!(
                "{kind}/{name}: not {what} within {timeout:?}; last seen:\n{}",
                serde_json::to_string_pretty(shown).unwrap_or_default()
            )
        }
    }
}

/// The operator's pods.
pub async fn operator_pod_list(client: &Client) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    pods.list(&ListParams::default().labels(OPERATOR_SELECTOR))
        .await
        .expect("list the operator's pods")
        .items
}

/// The names of the operator's pods.
pub async fn operator_pods(client: &Client) -> Vec<String> {
    operator_pod_list(client)
        .await
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect()
}

/// Runs `test` in a new namespace (named `e2e-<prefix>-xxxxx`, with `labels`), after making
/// sure the operator is installed. When the test panics, prints the namespace's objects,
/// events and pod logs and the operator's logs; the namespace is deleted either way.
pub async fn with_temp_ns<F, Fut>(prefix: &str, labels: &[(&str, &str)], test: F)
where
    F: FnOnce(Client, String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    ensure_operator();
    let client = client().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain([("iris-operator.dev/e2e".to_string(), "true".to_string())])
        .collect();
    let ns = Namespace {
        metadata: ObjectMeta {
            generate_name: Some(format!("e2e-{prefix}-")),
            labels: Some(labels),
            ..Default::default()
        },
        ..Default::default()
    };
    let ns = namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create the test namespace");
    let name = ns.metadata.name.expect("generated name");

    let result = tokio::spawn(test(client.clone(), name.clone())).await;
    if result.is_err() {
        dump_namespace(&name);
    }
    let _ = namespaces.delete(&name, &DeleteParams::background()).await;
    if let Err(e) = result {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
        panic!("test task in {name} failed: {e}");
    }
}

/// Prints what a developer needs to see when a test in `ns` fails.
pub fn dump_namespace(ns: &str) {
    let show = |title: &str, args: &[&str]| {
        let out = crate::kubectl::run(args, None);
        eprintln!(
            "----- {title} -----\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    show(
        &format!("objects in {ns}"),
        &[
            "get",
            "irismodels,deployments,replicasets,pods,services,hpa,pdb,configmaps",
            "-n",
            ns,
            "-o",
            "wide",
        ],
    );
    show(
        &format!("irismodels in {ns}"),
        &["get", "irismodels", "-n", ns, "-o", "yaml"],
    );
    show(
        &format!("events in {ns}"),
        &["get", "events", "-n", ns, "--sort-by=.lastTimestamp"],
    );
    show(
        &format!("pod logs in {ns}"),
        &[
            "logs",
            "-n",
            ns,
            "-l",
            "app.kubernetes.io/managed-by=iris-operator",
            "--tail=50",
            "--prefix",
        ],
    );
    show(
        "operator logs",
        &[
            "logs",
            "-n",
            OPERATOR_NAMESPACE,
            "-l",
            OPERATOR_SELECTOR,
            "--tail=200",
            "--prefix",
        ],
    );
}
