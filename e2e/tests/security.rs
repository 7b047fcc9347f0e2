//! HTTPS and bearer tokens on a model (issue 14), as a user sets them up: a CA and a server
//! certificate made here, `kubectl create secret tls`, a tokens Secret, `spec.tls` and
//! `spec.auth`, then requests through `kubectl port-forward svc/iris` (traffic to 127.0.0.1
//! only). Covers: the right answer with the right token and 401 otherwise, no plain HTTP, a
//! client not trusting the CA refused at the handshake, `https://` in status.endpoint;
//! certificate rotation and token removal with no failed request and no restart; a missing
//! Secret or key reported by name; the operator unable to read Secrets; and neither the tokens
//! nor the private key in the pod spec, the IrisModel, the Events, the logs or /metrics.
//!
//! Every loop is bounded in count and time; no test sleeps without a bound.
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use e2e::cluster::{with_temp_ns, OPERATOR_NAMESPACE, OPERATOR_SELECTOR, RELEASE};
use e2e::portforward::PortForward;
use e2e::tls::{self, Pki};
use e2e::{iris, kubectl};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DynamicObject, ListParams};
use kube::{Api, Client};
use serde_json::{json, Value};

const READY_WITHIN: Duration = Duration::from_secs(180);
/// The server reads its files every 10 s; the kubelet updates a Secret volume within its sync
/// period (about a minute) plus its cache's TTL.
const ROTATED_WITHIN: Duration = Duration::from_secs(120);
const CAUSE_WITHIN: Duration = Duration::from_secs(75);
/// The kubelet retries a failed mount with an exponential back-off (up to about 2 minutes).
const MOUNTED_WITHIN: Duration = Duration::from_secs(180);
const SELECTOR: &str = "app.kubernetes.io/instance=iris,app.kubernetes.io/name=model-server";
const SETOSA: [f64; 4] = [5.1, 3.5, 1.4, 0.2];

fn manifest(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: serving.iris.dev/v1alpha1\nkind: IrisModel\nmetadata: {{name: {name}}}\nspec:\n{spec}\n"
    )
}

/// A token nobody could guess, different in each run.
fn token(label: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("e2e-{label}-{nanos:x}-{:x}", std::process::id())
}

async fn predict(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
) -> Result<reqwest::Response, reqwest::Error> {
    let mut request = client
        .post(format!("{base}/predict_iris"))
        .json(&json!({ "features": SETOSA }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await
}

/// The one model-server pod: its name and restart count.
async fn the_pod(client: &Client, ns: &str) -> (String, i32) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(SELECTOR))
        .await
        .expect("list pods");
    let live: Vec<&Pod> = list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    assert_eq!(live.len(), 1, "one model-server pod");
    let restarts = live[0]
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).sum())
        .unwrap_or_default();
    (live[0].metadata.name.clone().unwrap_or_default(), restarts)
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one story told in order: HTTPS, tokens, both rotated
async fn https_and_tokens_rotation_and_no_secret_in_sight() {
    with_temp_ns("security", &[], |client, ns| async move {
        let names = tls::service_names("iris", &ns);
        let first = Pki::new("first", &names);
        let second = Pki::new("second", &names);
        let (token_a, token_b) = (token("a"), token("b"));
        tls::put_secret(&ns, &tls::tls_secret_yaml(&ns, "iris-tls", &first), false);
        tls::put_secret(
            &ns,
            &tls::tokens_secret_yaml(&ns, "iris-tokens", &[&token_a, &token_b]),
            false,
        );
        let spec = "  tls: {secretName: iris-tls}\n  auth: {secretName: iris-tokens}";
        kubectl::apply(&ns, &manifest("iris", spec)).expect("the manifest is valid");
        let api = iris::api(&client, &ns);
        let obj = iris::wait_ready(&api, "iris", READY_WITHIN).await;
        let endpoint = iris::status(&obj)["endpoint"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(
            endpoint.starts_with(&format!("https://iris.{ns}.svc")),
            "status.endpoint: {endpoint}"
        );

        let forward = PortForward::start(&ns, "svc/iris", 5001);
        let local = SocketAddr::from(([127, 0, 0, 1], forward.port));
        let base = format!("https://iris:{}", forward.port);
        let trusting_first = tls::https_client(&[&first.ca], "iris", local);

        // The right answer with a right token, through a client that trusts the CA.
        let response = predict(&trusting_first, &base, Some(&token_a))
            .await
            .expect("HTTPS request");
        assert_eq!(response.status(), 200);
        assert_eq!(
            tls::peer_certificate(&response).as_deref(),
            Some(first.leaf.as_ref())
        );
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["label"], "setosa", "{body}");

        // The OIP clients users run, over TLS with the token: tritonclient `ssl=True`, REST
        // and gRPC, every answer the model's.
        let grpc_forward = PortForward::start(&ns, "svc/iris", 8081);
        let ca_file = std::env::temp_dir().join(format!("iris-e2e-ca-{ns}.pem"));
        std::fs::write(&ca_file, tls::pem(&first.ca)).expect("write the CA");
        let (http_addr, grpc_addr) = (
            format!("127.0.0.1:{}", forward.port),
            format!("127.0.0.1:{}", grpc_forward.port),
        );
        let (ca, token) = (ca_file.clone(), token_a.clone());
        tokio::task::spawn_blocking(move || {
            e2e::clients::check_tls(
                &http_addr,
                &grpc_addr,
                "iris",
                &e2e::serving::params_binary("setosa", 42),
                &ca,
                &token,
            )
        })
        .await
        .expect("tritonclient over TLS");
        let _ = std::fs::remove_file(&ca_file);
        drop(grpc_forward);

        // 401 without a token or with a wrong one, saying how to authenticate.
        for presented in [None, Some("not-a-token")] {
            let response = predict(&trusting_first, &base, presented)
                .await
                .expect("HTTPS request");
            assert_eq!(response.status(), 401, "token {presented:?}");
            let challenge = response.headers().get("www-authenticate");
            assert!(
                challenge.is_some_and(|c| c.to_str().unwrap_or("").starts_with("Bearer")),
                "{challenge:?}"
            );
        }
        // Health stays open (the probes use it).
        let live = trusting_first
            .get(format!("{base}/v2/health/live"))
            .send()
            .await
            .expect("health");
        assert_eq!(live.status(), 200);

        // Plain HTTP to the same port gets no HTTP answer.
        let plain = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        let answer = plain
            .get(format!("http://127.0.0.1:{}/v2/health/live", forward.port))
            .send()
            .await;
        assert!(
            answer.as_ref().map_or(true, |r| !r.status().is_success()),
            "plain HTTP answered: {answer:?}"
        );
        // A client trusting another CA fails the handshake.
        let trusting_second = tls::https_client(&[&second.ca], "iris", local);
        let refused = predict(&trusting_second, &base, Some(&token_a)).await;
        assert!(
            refused.is_err(),
            "untrusted certificate accepted: {refused:?}"
        );

        // Rotation: the Secret gets a certificate of the second CA while a client trusting
        // both keeps asking, each request on a new connection.
        let (pod_before, restarts_before) = the_pod(&client, &ns).await;
        assert_eq!(restarts_before, 0);
        let trusting_both = tls::https_client(&[&first.ca, &second.ca], "iris", local);
        let looping = {
            let (client, base, token) = (trusting_both.clone(), base.clone(), token_a.clone());
            let second_leaf = second.leaf.to_vec();
            tokio::spawn(async move {
                let (mut ok, mut failures, mut rotated_after) = (0u32, Vec::new(), None);
                let started = Instant::now();
                for _ in 0..2000 {
                    if started.elapsed() > ROTATED_WITHIN + Duration::from_secs(30) {
                        break;
                    }
                    match predict(&client, &base, Some(&token)).await {
                        Ok(r) if r.status() == 200 => {
                            ok += 1;
                            if tls::peer_certificate(&r).as_deref() == Some(second_leaf.as_slice())
                                && rotated_after.is_none()
                            {
                                rotated_after = Some(started.elapsed());
                            }
                        }
                        Ok(r) => failures.push(format!("HTTP {}", r.status())),
                        Err(e) => failures.push(e.to_string()),
                    }
                    if rotated_after.is_some_and(|t| started.elapsed() > t + Duration::from_secs(5))
                    {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                (ok, failures, rotated_after)
            })
        };
        tls::put_secret(&ns, &tls::tls_secret_yaml(&ns, "iris-tls", &second), true);
        let (ok, failures, rotated_after) = looping.await.expect("client loop");
        eprintln!("rotation: {ok} requests, new certificate after {rotated_after:?}");
        assert!(
            failures.is_empty(),
            "failed requests during rotation: {failures:?}"
        );
        let rotated_after = rotated_after.expect("the new certificate within 120 s");
        assert!(
            rotated_after <= ROTATED_WITHIN,
            "rotated after {rotated_after:?}"
        );
        // A client trusting only the first CA is now refused; one trusting the second is not.
        assert!(predict(&trusting_first, &base, Some(&token_a))
            .await
            .is_err());
        let response = predict(&trusting_second, &base, Some(&token_a))
            .await
            .expect("new CA");
        assert_eq!(response.status(), 200);

        // Token removal: token_a is dropped from the Secret; within 120 s it gets 401 while
        // token_b still works.
        tls::put_secret(
            &ns,
            &tls::tokens_secret_yaml(&ns, "iris-tokens", &[&token_b]),
            true,
        );
        let started = Instant::now();
        let mut refused_after = None;
        for _ in 0..240 {
            let status = predict(&trusting_second, &base, Some(&token_a))
                .await
                .expect("HTTPS request")
                .status();
            if status == 401 {
                refused_after = Some(started.elapsed());
                break;
            }
            assert_eq!(status, 200, "before the removal lands, token_a still works");
            if started.elapsed() > ROTATED_WITHIN {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let refused_after = refused_after.expect("the removed token refused within 120 s");
        eprintln!("token removed after {refused_after:?}");
        let kept = predict(&trusting_second, &base, Some(&token_b))
            .await
            .expect("request");
        assert_eq!(kept.status(), 200);
        let (pod_after, restarts_after) = the_pod(&client, &ns).await;
        assert_eq!(pod_after, pod_before, "the pod was replaced");
        assert_eq!(restarts_after, 0, "the server restarted");

        // /metrics is open (protectMetrics false) and carries no token.
        let metrics = trusting_second
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("metrics");
        assert_eq!(metrics.status(), 200);
        let metrics = metrics.text().await.expect("metrics text");
        drop(forward);

        // The operator cannot read Secrets.
        let account = format!("system:serviceaccount:{OPERATOR_NAMESPACE}:{RELEASE}");
        for verb in ["get", "list", "watch"] {
            let out = kubectl::run(
                &[
                    "auth",
                    "can-i",
                    verb,
                    "secrets",
                    "-n",
                    &ns,
                    &format!("--as={account}"),
                ],
                None,
            );
            let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
            assert_eq!(answer, "no", "{account} can {verb} secrets");
        }

        // No token and no private key anywhere they do not belong.
        let mut needles: Vec<String> = vec![token_a.clone(), token_b.clone()];
        for pki in [&first, &second] {
            needles.extend(pki.key_body_lines());
            let encoded = tls::base64(pki.key_pem.as_bytes());
            needles.push(encoded[20..80].to_string());
        }
        needles.push(tls::base64(token_a.as_bytes()));
        let places = [
            (
                "pods",
                kubectl::ok(&["get", "pods", "-n", &ns, "-o", "yaml"]),
            ),
            (
                "deployments",
                kubectl::ok(&["get", "deployments", "-n", &ns, "-o", "yaml"]),
            ),
            (
                "the IrisModel",
                kubectl::ok(&["get", "irismodel", "iris", "-n", &ns, "-o", "yaml"]),
            ),
            (
                "events",
                kubectl::ok(&["get", "events", "-n", &ns, "-o", "yaml"]),
            ),
            (
                "operator logs",
                kubectl::ok(&[
                    "logs",
                    "-n",
                    OPERATOR_NAMESPACE,
                    "-l",
                    OPERATOR_SELECTOR,
                    "--tail=-1",
                    "--prefix",
                ]),
            ),
            (
                "model-server logs",
                kubectl::ok(&["logs", "-n", &ns, "-l", SELECTOR, "--tail=-1"]),
            ),
            ("/metrics", metrics),
        ];
        for (place, text) in &places {
            assert!(
                !text.is_empty() || *place == "model-server logs",
                "{place} is empty"
            );
            for needle in &needles {
                assert!(
                    !text.contains(needle.as_str()),
                    "{place} contains a secret ({} chars of it)",
                    needle.len()
                );
            }
        }
    })
    .await;
}

fn degraded_because(obj: &DynamicObject, reason: &str) -> bool {
    iris::is_not_ready_because(obj, reason)
        && iris::condition(obj, "Degraded")
            .is_some_and(|c| c["status"] == "True" && c["reason"] == reason)
}

fn degraded_message(obj: &DynamicObject) -> String {
    iris::condition(obj, "Degraded")
        .and_then(|c| c["message"].as_str())
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
async fn a_missing_secret_or_key_is_named_and_creating_it_makes_the_model_ready() {
    with_temp_ns("secret-missing", &[], |client, ns| async move {
        let api = iris::api(&client, &ns);
        // The TLS Secret does not exist yet; the tokens Secret lacks its key.
        kubectl::apply(&ns, &manifest("iris", "  tls: {secretName: iris-tls}"))
            .expect("the manifest is valid");
        tls::put_secret(
            &ns,
            &kubectl::ok(&[
                "create",
                "secret",
                "generic",
                "wrong-key",
                "-n",
                &ns,
                "--from-literal=other=x",
                "--dry-run=client",
                "-o",
                "yaml",
            ]),
            false,
        );
        kubectl::apply(
            &ns,
            &manifest("keyless", "  auth: {secretName: wrong-key, key: tokens}"),
        )
        .expect("the manifest is valid");

        let obj = iris::wait_for(&api, "iris", CAUSE_WITHIN, "Degraded SecretNotFound", |o| {
            degraded_because(o, "SecretNotFound")
        })
        .await;
        let message = degraded_message(&obj);
        eprintln!("SecretNotFound: {message}");
        assert!(
            message.contains("Secret iris-tls named in spec.tls.secretName does not exist"),
            "{message}"
        );
        let obj = iris::wait_for(
            &api,
            "keyless",
            CAUSE_WITHIN,
            "Degraded SecretKeyNotFound",
            |o| degraded_because(o, "SecretKeyNotFound"),
        )
        .await;
        let message = degraded_message(&obj);
        eprintln!("SecretKeyNotFound: {message}");
        assert!(
            message.contains("Secret wrong-key named in spec.auth.secretName has no key tokens"),
            "{message}"
        );
        // The transition is an Event too.
        let events = kubectl::ok(&["get", "events", "-n", &ns, "-o", "json"]);
        assert!(events.contains("SecretNotFound"), "no SecretNotFound Event");

        let pki = Pki::new("late", &tls::service_names("iris", &ns));
        tls::put_secret(&ns, &tls::tls_secret_yaml(&ns, "iris-tls", &pki), false);
        iris::wait_ready(&api, "iris", MOUNTED_WITHIN).await;

        // Protected metrics with a canary are refused at apply, saying why.
        let refused = kubectl::apply(
            &ns,
            &manifest(
                "canary",
                "  auth: {secretName: t, protectMetrics: true}\n  rollout: {strategy: Canary}",
            ),
        )
        .expect_err("refused");
        assert!(
            refused.contains(
                "spec.auth.protectMetrics cannot be used with spec.rollout.strategy Canary"
            ),
            "{refused}"
        );
    })
    .await;
}
