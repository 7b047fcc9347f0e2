//! The model to serve: its task, its source (builtin, ConfigMap or file) and the builtin
//! model's hyper-parameters.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The model: what it predicts and where its weights come from.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.positiveClass) || !has(self.task) || self.task == 'binary'").message("positiveClass is only allowed when task is binary"))]
pub struct ModelSpec {
    /// `binary`: "is it <positiveClass>?" (one class against the rest); `multiclass`: which of
    /// setosa, versicolor or virginica.
    #[serde(default)]
    pub task: Task,

    /// For `binary` only: the class the model answers "yes" for. Defaults to setosa.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positive_class: Option<IrisClass>,

    /// Where the model comes from; exactly one of builtin, configMap or file.
    #[serde(default)]
    pub source: ModelSource,

    /// Hyper-parameters for a builtin model, trained when the server starts.
    #[serde(default)]
    pub training: TrainingSpec,
}

/// What the model predicts.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// One class against the rest.
    #[default]
    Binary,
    /// One of the three Iris species.
    Multiclass,
}

impl Task {
    /// The name used on the wire and in the model server's flags.
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Binary => "binary",
            Task::Multiclass => "multiclass",
        }
    }
}

// An Iris species (no doc comment: it would replace the description of the field using it).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IrisClass {
    /// Iris setosa.
    #[default]
    Setosa,
    /// Iris versicolor.
    Versicolor,
    /// Iris virginica.
    Virginica,
}

impl IrisClass {
    /// The name used on the wire and in the model server's flags.
    pub fn as_str(self) -> &'static str {
        match self {
            IrisClass::Setosa => "setosa",
            IrisClass::Versicolor => "versicolor",
            IrisClass::Virginica => "virginica",
        }
    }
}

/// Where the model comes from. Set exactly one field.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.builtin) ? 1 : 0) + (has(self.configMap) ? 1 : 0) + (has(self.file) ? 1 : 0) == 1").message("set exactly one of source.builtin, source.configMap or source.file"))]
pub struct ModelSource {
    /// Train at start-up on the Iris data compiled into the server, with `training`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin: Option<BuiltinSource>,

    /// A model artifact (the output of `model-server train --out`) stored in a ConfigMap in the
    /// IrisModel's namespace. A change to its content rolls the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapSource>,

    /// Absolute path of a model artifact inside the image (for a custom image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("file must be an absolute path"))]
    pub file: Option<String>,
}

impl Default for ModelSource {
    fn default() -> Self {
        Self {
            builtin: Some(BuiltinSource {}),
            config_map: None,
            file: None,
        }
    }
}

/// Train the model when the server starts. Takes no fields: `builtin: {}`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct BuiltinSource {}

/// A model artifact in a ConfigMap of the IrisModel's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapSource {
    /// Name of the ConfigMap.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// Key holding the artifact JSON.
    #[serde(default = "default_configmap_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_configmap_key() -> String {
    "model.json".to_string()
}

/// Hyper-parameters of a builtin model. The same values give the same model (and digest).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrainingSpec {
    /// Maximum iterations of the logistic-regression solver.
    #[serde(default = "default_max_iterations")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_iterations: i64,

    /// L2 regularisation strength (0 turns it off).
    #[serde(default = "default_l2_penalty")]
    #[schemars(range(min = 0.0, max = 1000.0))]
    pub l2_penalty: f64,

    /// Share of the data held out to measure accuracy, strictly between 0 and 1.
    #[serde(default = "default_test_fraction")]
    #[schemars(extend("minimum" = 0.0, "exclusiveMinimum" = true, "maximum" = 1.0, "exclusiveMaximum" = true))]
    pub test_fraction: f64,

    /// Seed of the train/test split.
    #[serde(default = "default_seed")]
    #[schemars(range(min = 0))]
    pub seed: i64,
}

impl Default for TrainingSpec {
    fn default() -> Self {
        Self {
            max_iterations: default_max_iterations(),
            l2_penalty: default_l2_penalty(),
            test_fraction: default_test_fraction(),
            seed: default_seed(),
        }
    }
}

fn default_max_iterations() -> i64 {
    100
}

fn default_l2_penalty() -> f64 {
    1.0
}

fn default_test_fraction() -> f64 {
    0.2
}

fn default_seed() -> i64 {
    42
}
