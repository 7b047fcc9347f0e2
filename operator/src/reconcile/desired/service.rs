//! The Service in front of the model server.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::child_meta;
use crate::crd::ServiceType;
use crate::names::{activator_selector_labels, selector_labels, GRPC_PORT_NAME, PORT_NAME};
use crate::reconcile::resolve::Resolved;

/// Builds the Service, of the requested type: port `http` on `spec.port` (with the node port
/// asked for) and port `grpc` on `spec.grpcPort`, each with its application protocol.
pub(crate) fn build(resolved: &Resolved) -> Service {
    let node_port = match resolved.service.type_ {
        ServiceType::ClusterIP => None,
        ServiceType::NodePort | ServiceType::LoadBalancer => resolved.service.node_port,
    };
    Service {
        metadata: child_meta(resolved),
        spec: Some(ServiceSpec {
            type_: Some(resolved.service.type_.as_str().to_string()),
            selector: Some(selector_labels(&resolved.name)),
            ports: Some(vec![
                ServicePort {
                    node_port,
                    // HTTPS only with TLS: what the port speaks, for gateways and meshes.
                    app_protocol: Some(http_app_protocol(resolved).to_string()),
                    ..port(PORT_NAME, resolved.port)
                },
                port(GRPC_PORT_NAME, resolved.grpc_port),
            ]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// A TCP port named (and targeting the container port named) `name`, whose application
/// protocol is that name too (`http`, `grpc`).
fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_string()),
        port,
        target_port: Some(IntOrString::String(name.to_string())),
        protocol: Some("TCP".to_string()),
        app_protocol: Some(name.to_string()),
        ..ServicePort::default()
    }
}

/// The application protocol of the HTTP port: `https` when the pods serve TLS.
fn http_app_protocol(resolved: &Resolved) -> &'static str {
    if resolved.tls_secret.is_some() {
        "https"
    } else {
        PORT_NAME
    }
}

/// Points the Service at the activator's pod instead of the model's: while a model that
/// scales to zero has no ready pod, its activator takes the connections.
pub(crate) fn select_activator(service: &mut Service, name: &str) {
    if let Some(spec) = service.spec.as_mut() {
        spec.selector = Some(activator_selector_labels(name));
    }
}

/// Whether the Service selects the activator's pod.
pub(crate) fn selects_activator(service: &Service, name: &str) -> bool {
    service.spec.as_ref().and_then(|s| s.selector.as_ref())
        == Some(&activator_selector_labels(name))
}
