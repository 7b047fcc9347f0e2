//! Where the served model comes from: trained at start-up, or read from an artifact file.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use iris_model::model::{self, ArtifactError, ModelArtifact, TrainError, TrainingParams};

/// The `--source` / `MODEL_SOURCE` value: `builtin` or `file:/path/model.json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelSource {
    /// Train at start-up on the embedded Iris data with the training flags.
    Builtin,
    /// Read an artifact written by `model-server train --out` (a ConfigMap mount, or a
    /// file baked into a custom image).
    File(PathBuf),
}

impl ModelSource {
    /// Short, bounded name for metrics labels: `builtin` or `file`.
    pub fn kind(&self) -> &'static str {
        match self {
            ModelSource::Builtin => "builtin",
            ModelSource::File(_) => "file",
        }
    }

    /// Loads (or trains) the model. A corrupt or mismatched artifact is refused with a
    /// message naming the file and the problem.
    pub fn load(&self, training: &TrainingParams) -> Result<ModelArtifact, LoadError> {
        match self {
            ModelSource::Builtin => model::train(training).map_err(LoadError::Train),
            ModelSource::File(path) => load_file(path),
        }
    }
}

fn load_file(path: &Path) -> Result<ModelArtifact, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|error| LoadError::Read {
        path: path.to_owned(),
        error,
    })?;
    ModelArtifact::from_json(&text).map_err(|error| LoadError::Artifact {
        path: path.to_owned(),
        error,
    })
}

impl fmt::Display for ModelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelSource::Builtin => f.write_str("builtin"),
            ModelSource::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

impl FromStr for ModelSource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "builtin" {
            return Ok(ModelSource::Builtin);
        }
        match s.strip_prefix("file:") {
            Some(path) if !path.is_empty() => Ok(ModelSource::File(PathBuf::from(path))),
            _ => Err(format!(
                "invalid model source {s:?}: expected \"builtin\" or \"file:/path/to/model.json\""
            )),
        }
    }
}

/// Why the model could not be loaded at start-up. Each message is complete on its own
/// (it includes the underlying error), so the variants carry no `source` chain to repeat it.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Builtin training failed (bad training parameters).
    #[error("cannot train the builtin model: {0}")]
    Train(TrainError),
    /// The artifact file could not be read.
    #[error("cannot read model artifact {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The artifact file was read but refused.
    #[error("refusing model artifact {}: {error}", path.display())]
    Artifact {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        error: ArtifactError,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        assert_eq!("builtin".parse(), Ok(ModelSource::Builtin));
        let f: ModelSource = "file:/models/iris.json".parse().unwrap();
        assert_eq!(f, ModelSource::File("/models/iris.json".into()));
        assert_eq!(f.to_string(), "file:/models/iris.json");
        assert_eq!(f.kind(), "file");
        for bad in ["", "file:", "configmap:x", "Builtin", "/models/iris.json"] {
            let err = bad.parse::<ModelSource>().unwrap_err();
            assert!(err.contains("builtin"), "{err}");
        }
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = ModelSource::File("/nonexistent/model.json".into())
            .load(&TrainingParams::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/model.json"), "{err}");
    }
}
