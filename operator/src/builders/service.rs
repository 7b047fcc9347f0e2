//! The Service in front of the model server.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{child_meta, selector_labels, PORT_NAME};
use crate::crd::ServiceType;
use crate::resolve::Resolved;

/// Builds the Service: one port named `http` on `spec.port`, of the requested type.
pub fn build(resolved: &Resolved) -> Service {
    let node_port = match resolved.service.type_ {
        ServiceType::ClusterIP => None,
        ServiceType::NodePort | ServiceType::LoadBalancer => resolved.service.node_port,
    };
    Service {
        metadata: child_meta(resolved),
        spec: Some(ServiceSpec {
            type_: Some(resolved.service.type_.as_str().to_string()),
            selector: Some(selector_labels(&resolved.name)),
            ports: Some(vec![ServicePort {
                name: Some(PORT_NAME.to_string()),
                port: resolved.port,
                target_port: Some(IntOrString::String(PORT_NAME.to_string())),
                protocol: Some("TCP".to_string()),
                node_port,
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}
