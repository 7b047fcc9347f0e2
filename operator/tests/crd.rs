//! The generated CRD: committed copy up to date, schema structural, validation rules present and
//! doing what they say.

use kube::core::cel::Validator;
use kube::CustomResourceExt;
use operator::crd::{IrisModel, MAX_CANARY_REPLICAS};
use serde_json::{json, Value};

const COMMITTED: &str = include_str!("../../crds/irismodel.yaml");

fn crd_json() -> Value {
    serde_json::to_value(IrisModel::crd()).expect("CRD serialises")
}

fn schema() -> Value {
    crd_json()["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

#[test]
fn committed_crd_is_up_to_date() {
    let generated = serde_yaml::to_string(&IrisModel::crd()).expect("CRD serialises to YAML");
    assert!(
        generated == COMMITTED,
        "crds/irismodel.yaml is stale: run `cargo run -p operator --bin crdgen > crds/irismodel.yaml`"
    );
}

/// Checks the rules of a structural schema
/// (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema)
/// and collects violations with their path.
fn structural_violations(node: &Value, path: &str, out: &mut Vec<String>) {
    let Some(obj) = node.as_object() else {
        out.push(format!("{path}: schema is not an object"));
        return;
    };
    for forbidden in [
        "oneOf",
        "anyOf",
        "allOf",
        "not",
        "$ref",
        "definitions",
        "$defs",
    ] {
        if obj.contains_key(forbidden) {
            out.push(format!("{path}: uses {forbidden}"));
        }
    }
    let int_or_string = obj.get("x-kubernetes-int-or-string") == Some(&json!(true));
    let preserve = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
    match obj.get("type").and_then(Value::as_str) {
        Some("object") => {
            if obj.contains_key("properties") && obj.contains_key("additionalProperties") {
                out.push(format!("{path}: both properties and additionalProperties"));
            }
            if let Some(props) = obj.get("properties").and_then(Value::as_object) {
                for (name, child) in props {
                    structural_violations(child, &format!("{path}.{name}"), out);
                }
            }
            if let Some(extra) = obj.get("additionalProperties") {
                if extra.is_object() {
                    structural_violations(extra, &format!("{path}[*]"), out);
                }
            }
        }
        Some("array") => match obj.get("items") {
            Some(items) => structural_violations(items, &format!("{path}[]"), out),
            None => out.push(format!("{path}: array without items")),
        },
        Some("string" | "integer" | "number" | "boolean") => {}
        Some(other) => out.push(format!("{path}: unknown type {other}")),
        None if int_or_string || preserve => {}
        None => out.push(format!("{path}: no type")),
    }
}

#[test]
fn schema_is_structural() {
    let mut violations = Vec::new();
    structural_violations(&schema(), "", &mut violations);
    assert!(
        violations.is_empty(),
        "not structural:\n{}",
        violations.join("\n")
    );
}

/// Every field of the spec has a description, so `kubectl explain` teaches.
#[test]
fn every_spec_field_is_described() {
    fn walk(node: &Value, path: &str, out: &mut Vec<String>) {
        if let Some(props) = node["properties"].as_object() {
            for (name, child) in props {
                let here = format!("{path}.{name}");
                if child["description"].as_str().is_none_or(str::is_empty) {
                    out.push(here.clone());
                }
                walk(child, &here, out);
            }
        }
    }
    let mut missing = Vec::new();
    for part in ["spec", "status"] {
        walk(&schema()["properties"][part], part, &mut missing);
    }
    assert!(
        missing.is_empty(),
        "fields without description: {missing:?}"
    );
}

fn validations_at(path: &[&str]) -> Vec<String> {
    let mut node = schema();
    for p in path {
        node = node["properties"][*p].clone();
    }
    node["x-kubernetes-validations"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v["rule"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn each_cross_field_rule_is_in_the_schema() {
    let expected: [(&[&str], &str); 16] = [
        (&[], "self.metadata.name.matches("),
        (&[], "!self.metadata.name.endsWith('-canary')"),
        (&[], "size(self.metadata.name) <= 63"),
        (&["spec"], "!= (has(self.grpcPort)"),
        (&["spec", "model"], "self.task == 'binary'"),
        (
            &["spec", "model", "source"],
            "(has(self.builtin) ? 1 : 0) + (has(self.configMap) ? 1 : 0) + (has(self.file) ? 1 : 0) == 1",
        ),
        (&["spec", "model", "source", "file"], "self.startsWith('/')"),
        (
            &["spec", "autoscaling"],
            "self.minReplicas <= self.maxReplicas",
        ),
        (
            &["spec", "autoscaling"],
            "self.minReplicas > 0 || has(self.targetRequestsPerSecond)",
        ),
        (&["spec", "autoscaling"], "!has(self.idleSeconds)"),
        (&["spec", "service"], "self.type == 'NodePort'"),
        (&["spec"], "self.auth.protectMetrics"),
        (&["spec"], "self.rollout.canary.steps.all("),
        (&["spec", "tls", "secretName"], "self.matches("),
        (&["spec", "auth", "secretName"], "self.matches("),
        (&["spec", "auth", "key"], "self.matches("),
    ];
    for (path, rule) in expected {
        let rules = validations_at(path);
        assert!(
            rules.iter().any(|r| r.contains(rule)),
            "{path:?} lacks rule {rule:?}: {rules:?}"
        );
    }
}

#[test]
fn ranges_enums_and_defaults() {
    let s = schema();
    let spec = &s["properties"]["spec"]["properties"];
    assert_eq!(spec["replicas"]["minimum"], json!(0.0));
    assert_eq!(spec["replicas"]["default"], json!(1));
    assert_eq!(spec["port"]["minimum"], json!(1.0));
    assert_eq!(spec["port"]["maximum"], json!(65535.0));
    assert_eq!(spec["port"]["default"], json!(5001));
    assert_eq!(spec["grpcPort"]["minimum"], json!(1.0));
    assert_eq!(spec["grpcPort"]["maximum"], json!(65535.0));
    assert_eq!(spec["grpcPort"]["default"], json!(8081));
    let node_port = &spec["service"]["properties"]["nodePort"];
    assert_eq!(node_port["minimum"], json!(30000.0));
    assert_eq!(node_port["maximum"], json!(32767.0));
    let model = &spec["model"]["properties"];
    assert_eq!(model["task"]["enum"], json!(["binary", "multiclass"]));
    assert_eq!(model["task"]["default"], json!("binary"));
    assert_eq!(
        model["positiveClass"]["enum"],
        json!(["setosa", "versicolor", "virginica"])
    );
    let training = &model["training"]["properties"];
    assert_eq!(training["maxIterations"]["default"], json!(100));
    assert_eq!(training["l2Penalty"]["default"], json!(1.0));
    assert_eq!(training["testFraction"]["default"], json!(0.2));
    assert_eq!(training["testFraction"]["exclusiveMinimum"], json!(true));
    assert_eq!(training["testFraction"]["exclusiveMaximum"], json!(true));
    assert_eq!(training["seed"]["default"], json!(42));
    assert_eq!(
        spec["service"]["properties"]["type"]["enum"],
        json!(["ClusterIP", "NodePort", "LoadBalancer"])
    );
    let rollout = &spec["rollout"]["properties"];
    assert_eq!(rollout["minAccuracy"]["minimum"], json!(0.0));
    assert_eq!(rollout["minAccuracy"]["maximum"], json!(1.0));
    assert_eq!(
        rollout["strategy"]["enum"],
        json!(["RollingUpdate", "Canary"])
    );
    assert_eq!(rollout["strategy"]["default"], json!("RollingUpdate"));
    let canary = &rollout["canary"]["properties"];
    assert_eq!(canary["steps"]["minItems"], json!(1));
    assert_eq!(canary["steps"]["maxItems"], json!(10));
    let step = &canary["steps"]["items"]["properties"];
    assert_eq!(step["weight"]["minimum"], json!(1.0));
    assert_eq!(step["weight"]["maximum"], json!(99.0));
    assert_eq!(step["holdSeconds"]["minimum"], json!(10.0));
    assert_eq!(step["holdSeconds"]["maximum"], json!(3600.0));
    assert_eq!(canary["readyDeadlineSeconds"]["minimum"], json!(10.0));
    assert_eq!(canary["readyDeadlineSeconds"]["default"], json!(120));
    let analysis = &canary["analysis"]["properties"];
    assert_eq!(analysis["maxErrorRate"]["maximum"], json!(1.0));
    assert_eq!(analysis["maxErrorRate"]["default"], json!(0.01));
    assert_eq!(analysis["maxP99LatencyMs"]["minimum"], json!(1.0));
    assert_eq!(analysis["maxP99LatencyMs"]["default"], json!(500));
    assert_eq!(analysis["minRequests"]["minimum"], json!(1.0));
    assert_eq!(analysis["minRequests"]["default"], json!(20));
    // Bad autoscaling settings are refused by the API server's schema check, which names the
    // field (e.g. "spec.autoscaling.targetCPUUtilizationPercentage ... greater than or equal to 1").
    let autoscaling = &spec["autoscaling"]["properties"];
    for (field, min, max) in [
        ("minReplicas", 0.0, 100.0),
        ("maxReplicas", 1.0, 100.0),
        ("targetCPUUtilizationPercentage", 1.0, 100.0),
        ("scaleDownStabilizationSeconds", 0.0, 3600.0),
        ("targetRequestsPerSecond", 1.0, 1_000_000.0),
        ("idleSeconds", 10.0, 86_400.0),
    ] {
        assert_eq!(autoscaling[field]["minimum"], json!(min), "{field}");
        assert_eq!(autoscaling[field]["maximum"], json!(max), "{field}");
    }
    let conditions = &s["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], json!("map"));
    assert_eq!(conditions["x-kubernetes-list-map-keys"], json!(["type"]));
}

#[test]
fn names_subresources_and_columns() {
    let crd = crd_json();
    assert_eq!(
        crd["metadata"]["name"],
        json!("irismodels.serving.iris.dev")
    );
    assert_eq!(crd["spec"]["scope"], json!("Namespaced"));
    assert_eq!(crd["spec"]["names"]["shortNames"], json!(["im"]));
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], json!("v1alpha1"));
    assert_eq!(version["subresources"]["status"], json!({}));
    assert_eq!(
        version["subresources"]["scale"],
        json!({
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector"
        })
    );
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .expect("printer columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        columns,
        ["Task", "Replicas", "Ready", "Endpoint", "Status", "Rollout", "Age"]
    );
}

/// Evaluates the CEL rules on a spec, as the API server does after defaulting.
fn validate_spec(spec: Value) -> Result<(), String> {
    validate_named("iris", spec)
}

/// Evaluates the CEL rules on an IrisModel named `name`.
fn validate_named(name: &str, spec: Value) -> Result<(), String> {
    let object = json!({
        "apiVersion": "serving.iris.dev/v1alpha1",
        "kind": "IrisModel",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    });
    Validator::new()
        .validate(&schema(), &object, None)
        .map_err(|e| e.to_string())
}

#[test]
fn names_kubernetes_would_refuse_for_the_service_are_refused() {
    let longest = format!("a{}", "b".repeat(62));
    for good in ["iris", "a", "iris-v2", "i-2", longest.as_str()] {
        assert_eq!(validate_named(good, json!({})), Ok(()), "{good}");
    }
    let too_long = "a".repeat(70);
    let bad = [
        ("1iris", "start with a lowercase letter"),
        ("iris-", "ending with a letter or digit"),
        ("iris.v2", "DNS-1035"),
        (too_long.as_str(), "at most 63 characters"),
    ];
    for (name, needle) in bad {
        let err = validate_named(name, json!({})).expect_err(&format!("accepted {name}"));
        assert!(err.contains(needle), "{name}: {err}");
    }
}

#[test]
fn cel_rules_accept_good_specs() {
    let good = [
        json!({}),
        json!({"model": {"task": "binary", "positiveClass": "virginica", "source": {"builtin": {}}}}),
        json!({"model": {"task": "multiclass", "source": {"configMap": {"name": "cm", "key": "m.json"}}}}),
        json!({"model": {"source": {"file": "/models/iris.json"}}}),
        json!({"autoscaling": {"minReplicas": 2, "maxReplicas": 2}}),
        json!({"autoscaling": {"maxReplicas": 3}}),
        json!({"autoscaling": {"maxReplicas": 3, "scaleDownStabilizationSeconds": 0}}),
        json!({"autoscaling": {"maxReplicas": 3, "targetCPUUtilizationPercentage": 50, "scaleDownStabilizationSeconds": 3600}}),
        json!({"autoscaling": {"maxReplicas": 3, "targetRequestsPerSecond": 50}}),
        json!({"autoscaling": {"minReplicas": 0, "maxReplicas": 3, "targetRequestsPerSecond": 5}}),
        json!({"autoscaling": {"minReplicas": 0, "maxReplicas": 1, "targetRequestsPerSecond": 5, "idleSeconds": 60}}),
        json!({"service": {"type": "NodePort", "nodePort": 30080}}),
        json!({"service": {"type": "ClusterIP"}}),
        json!({"port": 80, "grpcPort": 443}),
        json!({"grpcPort": 9000}),
        json!({"port": 8081, "grpcPort": 8082}),
        json!({"tls": {"secretName": "iris-tls"}}),
        json!({"tls": {"secretName": "iris.example.com"}, "auth": {"secretName": "t"}}),
        json!({"auth": {"secretName": "iris-tokens", "key": "tokens.txt", "protectMetrics": true}}),
        json!({"auth": {"secretName": "t", "key": "a_B-1"}, "rollout": {"strategy": "Canary"}}),
        json!({"auth": {"secretName": "t", "protectMetrics": false}, "rollout": {"strategy": "Canary"}}),
        json!({"auth": {"secretName": "t", "protectMetrics": true}, "rollout": {"strategy": "RollingUpdate"}}),
    ];
    for spec in good {
        assert_eq!(validate_spec(spec.clone()), Ok(()), "{spec}");
    }
}

#[test]
fn cel_rules_reject_bad_specs_with_a_message_naming_the_field() {
    let bad = [
        (
            json!({"model": {"task": "multiclass", "positiveClass": "setosa", "source": {"builtin": {}}}}),
            "positiveClass",
        ),
        (
            json!({"model": {"source": {"builtin": {}, "file": "/m.json"}}}),
            "exactly one",
        ),
        (json!({"model": {"source": {}}}), "exactly one"),
        (json!({"model": {"source": {"file": "m.json"}}}), "absolute"),
        (
            json!({"autoscaling": {"minReplicas": 4, "maxReplicas": 2}}),
            "minReplicas",
        ),
        (
            json!({"autoscaling": {"minReplicas": 0, "maxReplicas": 2}}),
            "autoscaling.minReplicas 0 (scale to zero) needs autoscaling.targetRequestsPerSecond",
        ),
        (
            json!({"autoscaling": {"maxReplicas": 2, "targetRequestsPerSecond": 5, "idleSeconds": 60}}),
            "autoscaling.idleSeconds applies only with autoscaling.minReplicas 0",
        ),
        (
            json!({"service": {"type": "ClusterIP", "nodePort": 30080}}),
            "nodePort",
        ),
        (json!({"grpcPort": 5001}), "grpcPort"),
        (json!({"port": 8081}), "grpcPort"),
        (json!({"port": 7000, "grpcPort": 7000}), "grpcPort"),
        (
            json!({"auth": {"secretName": "t", "protectMetrics": true}, "rollout": {"strategy": "Canary"}}),
            "spec.auth.protectMetrics cannot be used with spec.rollout.strategy Canary",
        ),
        (
            json!({"tls": {"secretName": "Iris_TLS"}}),
            "spec.tls.secretName",
        ),
        (
            json!({"tls": {"secretName": "-tls"}}),
            "spec.tls.secretName",
        ),
        (
            json!({"auth": {"secretName": "a/b"}}),
            "spec.auth.secretName",
        ),
        (
            json!({"auth": {"secretName": "t", "key": "a/b"}}),
            "spec.auth.key",
        ),
        (
            json!({"auth": {"secretName": "t", "key": "..data"}}),
            "spec.auth.key",
        ),
    ];
    for (spec, needle) in bad {
        let err = validate_spec(spec.clone()).expect_err(&format!("accepted {spec}"));
        assert!(err.contains(needle), "{spec}: {err}");
    }
}

/// Canary pods for a weight beside `stable` pods, as the operator counts them.
fn canary_pods(stable: i32, weight: i32) -> i32 {
    (stable * weight + (100 - weight) - 1) / (100 - weight)
}

/// A canary's pods carry its weight, so a high weight beside many stable pods would ask for
/// thousands of pods (99 beside 100 is 9,900): a step is refused once it needs more than
/// MAX_CANARY_REPLICAS, counting the stable pods as `replicas` or `autoscaling.maxReplicas`.
#[test]
fn a_canary_step_needing_more_than_the_most_canary_pods_is_refused() {
    fn canary(weight: i32) -> Value {
        json!({"strategy": "Canary", "canary": {"steps": [{"weight": 25}, {"weight": weight}]}})
    }
    let fits = [
        (json!({"replicas": 1, "rollout": canary(99)}), 1, 99),
        (json!({"replicas": 100, "rollout": canary(50)}), 100, 50),
        (json!({"replicas": 10, "rollout": canary(90)}), 10, 90),
        (json!({"rollout": canary(99)}), 1, 99),
        (
            json!({"replicas": 100, "rollout": {"strategy": "Canary"}}),
            100,
            50,
        ),
        (
            json!({"replicas": 100, "autoscaling": {"maxReplicas": 4}, "rollout": canary(96)}),
            4,
            96,
        ),
    ];
    for (spec, stable, weight) in fits {
        assert!(canary_pods(stable, weight) <= MAX_CANARY_REPLICAS, "{spec}");
        assert_eq!(validate_spec(spec.clone()), Ok(()), "{spec}");
    }
    let too_many = [
        (json!({"replicas": 100, "rollout": canary(51)}), 100, 51),
        (json!({"replicas": 100, "rollout": canary(99)}), 100, 99),
        (json!({"replicas": 10, "rollout": canary(91)}), 10, 91),
        (
            json!({"replicas": 1, "autoscaling": {"maxReplicas": 100}, "rollout": canary(60)}),
            100,
            60,
        ),
        // Refused whatever the strategy: the steps are checked as written.
        (
            json!({"replicas": 2, "rollout": {"canary": {"steps": [{"weight": 99}]}}}),
            2,
            99,
        ),
    ];
    for (spec, stable, weight) in too_many {
        assert!(canary_pods(stable, weight) > MAX_CANARY_REPLICAS, "{spec}");
        let err = validate_spec(spec.clone()).expect_err(&format!("accepted {spec}"));
        assert!(
            err.contains("spec.rollout.canary.steps[].weight needs more than 100 canary pods"),
            "{spec}: {err}"
        );
    }
}

#[test]
fn logging_is_bounded_defaulted_and_validated() {
    let s = schema();
    let logging = &s["properties"]["spec"]["properties"]["logging"];
    assert_eq!(logging["required"], json!(["url"]));
    let fields = &logging["properties"];
    assert_eq!(
        fields["mode"]["enum"],
        json!(["all", "request", "response"])
    );
    assert_eq!(fields["mode"]["default"], json!("all"));
    assert_eq!(fields["samplePercent"]["minimum"], json!(0.0));
    assert_eq!(fields["samplePercent"]["maximum"], json!(100.0));
    assert_eq!(fields["samplePercent"]["default"], json!(100));
    assert_eq!(fields["url"]["maxLength"], json!(2048));
    assert_eq!(
        fields["headersSecretRef"]["required"],
        json!(["key", "name"])
    );
    for good in [
        json!({"url": "http://sink.team-a.svc.cluster.local/events"}),
        json!({"url": "http://broker-ingress.knative-eventing.svc.cluster.local/ns/default", "mode": "response", "samplePercent": 5}),
        json!({"url": "http://172.18.0.1:9000", "headersSecretRef": {"name": "sink-headers", "key": "headers"}}),
        json!({"url": "http://sink:80/a/b?x=1"}),
    ] {
        let spec = json!({ "logging": good });
        assert_eq!(validate_spec(spec.clone()), Ok(()), "{spec}");
    }
    for (bad, needle) in [
        (
            json!({"url": "https://sink/"}),
            "https sinks are not supported",
        ),
        (
            json!({"url": "http://user:pw@sink/"}),
            "without credentials",
        ),
        (
            json!({"url": "ftp://sink/"}),
            "spec.logging.url must be http://",
        ),
        (
            json!({"url": "http://sink/a b"}),
            "spec.logging.url must be http://",
        ),
        (
            json!({"url": "http://s", "headersSecretRef": {"name": "A_B", "key": "h"}}),
            "spec.logging.headersSecretRef.name",
        ),
        (
            json!({"url": "http://s", "headersSecretRef": {"name": "a", "key": "a/b"}}),
            "spec.logging.headersSecretRef.key",
        ),
    ] {
        let spec = json!({ "logging": bad });
        let err = validate_spec(spec.clone()).expect_err(&format!("accepted {spec}"));
        assert!(err.contains(needle), "{spec}: {err}");
    }
}
