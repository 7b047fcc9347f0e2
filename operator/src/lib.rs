//! The iris-operator: reconciles `IrisModel` resources into the model server's Deployment,
//! Service, HorizontalPodAutoscaler and PodDisruptionBudget.
//!
//! The reconcile ([`reconcile`]) is one chain of small modules: observe -> resolve -> build
//! the desired children (pure) -> apply -> status, errors reported in one place. The rest is
//! process plumbing: [`run`], [`startup`], [`leader`], [`server`], [`telemetry`], [`config`].

pub mod activator;
mod artifact;
mod cache;
pub mod config;
pub mod context;
pub mod crd;
mod error;
#[cfg(test)]
mod fixtures;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod leader;
pub mod metrics;
#[cfg(test)]
mod mock;
mod names;
mod rate;
mod reconcile;
#[cfg(test)]
mod reconcile_tests;
pub mod run;
mod scrape;
pub mod server;
pub mod shutdown;
pub mod startup;
pub mod telemetry;
