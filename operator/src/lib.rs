//! The iris-operator: reconciles `IrisModel` resources into the model server's Deployment,
//! Service, HorizontalPodAutoscaler and PodDisruptionBudget.
//!
//! The reconcile is a pipeline of small modules: read ([`controller`]) -> validate
//! ([`resolve`]) -> build ([`builders`], pure) -> apply ([`apply`]) -> status ([`status`],
//! [`conditions`]).

pub mod apply;
pub mod artifact;
pub mod builders;
pub mod conditions;
pub mod config;
pub mod controller;
pub mod crd;
pub mod error;
#[cfg(test)]
mod fixtures;
pub mod leader;
pub mod metrics;
#[cfg(test)]
mod mock;
#[cfg(test)]
mod reconcile_tests;
pub mod report;
pub mod resolve;
pub mod rootcause;
pub mod run;
pub mod server;
pub mod startup;
pub mod status;
pub mod telemetry;
