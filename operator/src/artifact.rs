//! What the operator knows of a model before any pod runs: the digest (and accuracy) of a
//! builtin model, computed by training it exactly as the server will, and the validity of an
//! artifact stored in a ConfigMap. Both use the model server's own library.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use sha2::{Digest, Sha256};

use crate::crd::{IrisClass, Task, TrainingSpec};

/// Digest and held-out accuracy of a model.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ModelFacts {
    /// sha256 digest of the artifact's canonical form.
    pub(crate) digest: String,
    /// Accuracy on the held-out data.
    pub(crate) accuracy: f64,
}

/// Converts the API's task into the model server's.
pub(crate) fn server_task(task: Task) -> iris_model::Task {
    match task {
        Task::Binary => iris_model::Task::Binary,
        Task::Multiclass => iris_model::Task::Multiclass,
    }
}

fn server_class(class: IrisClass) -> iris_model::IrisClass {
    match class {
        IrisClass::Setosa => iris_model::IrisClass::Setosa,
        IrisClass::Versicolor => iris_model::IrisClass::Versicolor,
        IrisClass::Virginica => iris_model::IrisClass::Virginica,
    }
}

/// The parameters the server is started with for a builtin model.
pub(crate) fn training_params(
    task: Task,
    positive_class: Option<IrisClass>,
    training: &TrainingSpec,
) -> iris_model::TrainingParams {
    iris_model::TrainingParams {
        task: server_task(task),
        positive_class: positive_class.map(server_class),
        max_iterations: u64::try_from(training.max_iterations).unwrap_or(1),
        l2_penalty: training.l2_penalty,
        test_fraction: training.test_fraction,
        seed: u64::try_from(training.seed).unwrap_or(0),
    }
}

/// How many distinct builtin models to remember. Training takes milliseconds, so this only
/// spares repeated work when many IrisModels share the defaults.
const CACHE_CAPACITY: usize = 64;

/// One model's facts, computed once: the first caller trains, concurrent callers with the same
/// parameters wait for that result instead of training again.
type Cell = Arc<OnceLock<Result<ModelFacts, String>>>;

/// Remembers the facts of builtin models by their training parameters.
#[derive(Default)]
pub(crate) struct BuiltinCache {
    entries: Mutex<HashMap<String, Cell>>,
}

impl BuiltinCache {
    /// Trains the builtin model (or recalls it) and returns its digest and accuracy.
    pub(crate) fn facts(
        &self,
        task: Task,
        positive_class: Option<IrisClass>,
        training: &TrainingSpec,
    ) -> Result<ModelFacts, String> {
        let key = format!(
            "{}|{}|{}|{}|{}|{}",
            task.as_str(),
            positive_class.map(IrisClass::as_str).unwrap_or(""),
            training.max_iterations,
            training.l2_penalty,
            training.test_fraction,
            training.seed
        );
        // The map's lock is held only to find or insert the key's cell, never while training:
        // models with other parameters are not held up by this one.
        let cell = {
            let mut entries = self.lock();
            if entries.len() >= CACHE_CAPACITY && !entries.contains_key(&key) {
                entries.clear();
            }
            Arc::clone(entries.entry(key).or_default())
        };
        cell.get_or_init(|| {
            let params = training_params(task, positive_class, training);
            let artifact = iris_model::train(&params).map_err(|e| e.to_string())?;
            Ok(ModelFacts {
                digest: artifact.digest().to_string(),
                accuracy: artifact.accuracy(),
            })
        })
        .clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cell>> {
        // A poisoned lock only means another reconcile panicked mid-insert; the map is still
        // a valid cache.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Parses an artifact and checks it serves the requested task (and positive class, when the
/// spec names one).
pub(crate) fn check_artifact(
    content: &str,
    task: Task,
    positive_class: Option<IrisClass>,
) -> Result<ModelFacts, String> {
    let artifact = iris_model::ModelArtifact::from_json(content).map_err(|e| e.to_string())?;
    let found = match artifact.task() {
        iris_model::Task::Binary => Task::Binary,
        iris_model::Task::Multiclass => Task::Multiclass,
    };
    if found != task {
        return Err(format!(
            "it is a {} model but spec.model.task is {}",
            found.as_str(),
            task.as_str()
        ));
    }
    if let Some(wanted) = positive_class {
        if artifact.positive_class() != Some(server_class(wanted)) {
            return Err(format!(
                "its positive class is {} but spec.model.positiveClass is {}",
                artifact
                    .positive_class()
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "none".to_string()),
                wanted.as_str()
            ));
        }
    }
    Ok(ModelFacts {
        digest: artifact.digest().to_string(),
        accuracy: artifact.accuracy(),
    })
}

/// sha256 of raw content, hex-encoded: a change of the bytes rolls the pods.
pub(crate) fn content_hash(content: &[u8]) -> String {
    hex::encode(Sha256::digest(content))
}
