//! End-to-end test helpers for iris-operator, run against the cluster KUBECONFIG points to
//! (the kind cluster of `make cluster-up`, or any other).
//!
//! - [`bench`]: the benchmark programs' harness (a local server, wrk and ghz, their figures).
//! - [`cluster`]: the client, the operator's Helm release, temporary namespaces that print
//!   their pods, events and the operator's logs when a test fails.
//! - [`events`]: waits on Kubernetes Events (a Warning about an object, a reason about a model).
//! - [`iris`]: IrisModel objects, their conditions, and waits on them.
//! - [`kubectl`]: the user's own tool, for what a user does with it (apply, scale, auth can-i).
//! - [`serving`]: the model server's protocols, the same model trained here, a client loop.
//! - [`clients`]: tritonclient and the kserve SDK, in every mode, against a served model.
//! - [`portforward`]: `kubectl port-forward` to a Service, as the README tells users to query.
//! - [`prometheus`]: a real Prometheus in the cluster (docs/monitoring.md's scrape job, the chart's alerts).
//! - [`tls`]: test CAs and server certificates, HTTPS clients trusting the CAs given.
pub mod bench;
pub mod clients;
pub mod cluster;
pub mod events;
pub mod iris;
pub mod kubectl;
pub mod portforward;
pub mod prometheus;
pub mod serving;
pub mod tls;
