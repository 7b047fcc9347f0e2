//! The models the unit tests serve, trained once per test binary.

use std::sync::OnceLock;

use crate::{train, ModelArtifact, Task, TrainingParams};

/// The default binary model (is it setosa?).
pub(crate) fn binary() -> &'static ModelArtifact {
    static M: OnceLock<ModelArtifact> = OnceLock::new();
    M.get_or_init(|| train(&TrainingParams::default()).unwrap())
}

/// The default multiclass model.
pub(crate) fn multiclass() -> &'static ModelArtifact {
    static M: OnceLock<ModelArtifact> = OnceLock::new();
    M.get_or_init(|| {
        train(&TrainingParams {
            task: Task::Multiclass,
            ..TrainingParams::default()
        })
        .unwrap()
    })
}
