//! Whether a child in the cluster already is what the operator would apply: the applied-hash
//! annotation, and a comparison of the fields the operator sets (quantities by value).

use std::collections::BTreeMap;

use kube::Resource;
use kube_quantity::ParsedQuantity;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::Error;

/// Annotation on each child: hash of the object as last applied by the operator. A field the
/// operator stops setting changes the hash, which a comparison of fields alone would miss.
pub(crate) const APPLIED_HASH_ANNOTATION: &str = "serving.iris.dev/applied-hash";

/// Stamps the applied-hash annotation on a desired object.
pub(crate) fn stamp<K: Resource + Serialize>(mut desired: K) -> Result<K, Error> {
    let hash = hex::encode(Sha256::digest(serde_json::to_vec(&desired)?));
    desired
        .meta_mut()
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(APPLIED_HASH_ANNOTATION.to_string(), hash[..16].to_string());
    Ok(desired)
}

/// Whether `actual` already holds every field of `desired` with the same value. Fields the API
/// server adds (defaults, status, managedFields) are ignored; an empty list, map or null in
/// `desired` matches an absent field, since the API server drops those.
pub(crate) fn contains(actual: Option<&Value>, desired: &Value) -> bool {
    match (actual, desired) {
        (None | Some(Value::Null), d) => is_empty(d),
        (Some(Value::Object(a)), Value::Object(d)) => d.iter().all(|(k, dv)| {
            if k == "requests" || k == "limits" {
                // Resource quantities: the API server rewrites "0.5" as "500m".
                same_quantities(a.get(k), dv)
            } else {
                contains(a.get(k), dv)
            }
        }),
        (Some(Value::Array(a)), Value::Array(d)) => {
            a.len() == d.len() && a.iter().zip(d).all(|(av, dv)| contains(Some(av), dv))
        }
        (Some(Value::Number(a)), Value::Number(d)) => a.as_f64() == d.as_f64(),
        (Some(a), d) => a == d || (is_empty(a) && is_empty(d)),
    }
}

fn same_quantities(actual: Option<&Value>, desired: &Value) -> bool {
    let (Some(Value::Object(a)), Value::Object(d)) = (actual, desired) else {
        return contains(actual, desired);
    };
    a.len() == d.len()
        && d.iter().all(|(k, dv)| match (a.get(k), dv) {
            (Some(Value::String(av)), Value::String(dv)) => {
                av == dv || matches!((quantity(av), quantity(dv)), (Some(x), Some(y)) if x == y)
            }
            (av, dv) => contains(av, dv),
        })
}

/// A Kubernetes resource quantity ("500m", "1.5Gi", "2e3"), parsed exactly (decimal) by
/// kube_quantity; None when it is not one.
pub(crate) fn quantity(text: &str) -> Option<ParsedQuantity> {
    ParsedQuantity::try_from(text).ok()
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_defaults_and_extra_fields_are_ignored() {
        let desired = json!({"spec": {"replicas": 2, "ports": [{"name": "http", "port": 5001}]}});
        let actual = json!({
            "spec": {"replicas": 2, "clusterIP": "10.0.0.1",
                     "ports": [{"name": "http", "port": 5001, "protocol": "TCP"}]},
            "status": {}
        });
        assert!(contains(Some(&actual), &desired));
    }

    #[test]
    fn changed_values_and_list_lengths_are_differences() {
        let desired = json!({"spec": {"replicas": 2}});
        assert!(!contains(Some(&json!({"spec": {"replicas": 3}})), &desired));
        assert!(!contains(Some(&json!({"spec": {}})), &desired));
        let desired = json!({"env": [{"name": "A"}]});
        assert!(!contains(
            Some(&json!({"env": [{"name": "A"}, {"name": "B"}]})),
            &desired
        ));
    }

    #[test]
    fn resource_quantities_compare_by_value() {
        let desired = json!({"resources": {"requests": {"cpu": "0.5", "memory": "1Gi"}}});
        let actual = json!({"resources": {"requests": {"cpu": "500m", "memory": "1024Mi"}}});
        assert!(contains(Some(&actual), &desired));
        let more = json!({"resources": {"requests": {"cpu": "600m", "memory": "1Gi"}}});
        assert!(!contains(Some(&more), &desired));
        assert_eq!(quantity("2e3"), quantity("2k"));
        assert_eq!(quantity("128Mi"), quantity("134217728"));
        assert_ne!(quantity("1G"), quantity("1Gi"));
        assert_eq!(quantity("lots"), None);
    }

    #[test]
    fn empty_desired_values_match_absent_ones() {
        let desired = json!({"spec": {"tolerations": [], "nodeSelector": {}, "x": null}});
        assert!(contains(Some(&json!({"spec": {}})), &desired));
        assert!(contains(Some(&json!({"a": 1.0})), &json!({"a": 1})));
    }
}
