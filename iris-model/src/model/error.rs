//! Why an artifact was refused, and the format versions this build reads (below the artifact
//! and its training bins, which both refuse with it).

/// The artifact format version this build writes. Version 2 added `training_bins`; this
/// build reads version 1 (no bins) and 2 (bins optional).
pub const SCHEMA_VERSION: u64 = 2;

/// The oldest artifact format version this build reads.
pub const MIN_SCHEMA_VERSION: u64 = 1;

/// Why an artifact was refused. Each message names the problem.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The text is not JSON at all (or is truncated).
    #[error("model artifact is not valid JSON: {0}")]
    Syntax(serde_json::Error),
    /// JSON, but not an artifact of this schema (missing or unknown field, wrong type).
    #[error(
        "model artifact does not match the artifact schema (versions {MIN_SCHEMA_VERSION} to \
         {SCHEMA_VERSION}): {0}"
    )]
    Schema(serde_json::Error),
    /// Written by a different format version.
    #[error(
        "model artifact has schema_version {found}; this server reads schema_version \
         {MIN_SCHEMA_VERSION} to {SCHEMA_VERSION}"
    )]
    UnsupportedSchemaVersion {
        /// The version in the file.
        found: u64,
    },
    /// Arrays of the wrong length for the task, features or classes.
    #[error("model artifact has the wrong shape: {0}")]
    Shape(String),
    /// A NaN or infinite number.
    #[error("model artifact field {field} is not a finite number")]
    NonFinite {
        /// Path of the offending value, e.g. `scaler.stds[2]`.
        field: String,
    },
    /// A value outside its allowed range or inconsistent with another field.
    #[error("model artifact field {field} is invalid: {reason}")]
    InvalidValue {
        /// Name of the field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// No digest recorded.
    #[error("model artifact has no digest")]
    MissingDigest,
    /// The recorded digest does not match the content.
    #[error(
        "model artifact digest mismatch: the file records {recorded} but its content hashes to \
         {computed}; it was modified or corrupted after training"
    )]
    DigestMismatch {
        /// Digest written in the file.
        recorded: String,
        /// Digest of the content as read.
        computed: String,
    },
}
