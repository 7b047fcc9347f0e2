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

/// `m` as an artifact of schema version 1 (before training bins): the bins cut out of the
/// text, the version set to 1, and the digest of what is left.
pub(crate) fn as_version_1(m: &ModelArtifact) -> String {
    use sha2::Digest as _;
    let pretty = m.to_json_pretty();
    let (head, rest) = pretty.split_once(",\n  \"training_bins\"").unwrap();
    let (_, tail) = rest.split_once(",\n  \"digest\"").unwrap();
    let text = format!("{head},\n  \"digest\"{tail}").replacen(
        "\"schema_version\": 2",
        "\"schema_version\": 1",
        1,
    );
    // The canonical form: compact (no string of an artifact has white space), no digest.
    let compact: String = text
        .split(",\n  \"digest\"")
        .next()
        .unwrap()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let digest = hex::encode(sha2::Sha256::digest(format!("{compact}}}")));
    text.replace(m.digest(), &digest)
}

/// A fresh directory under the system's temporary directory, removed on drop.
pub(crate) struct TempDir(std::path::PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "model-server-test-{}-{tag}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// Writes `content` to `name` in the directory (replacing it atomically) and returns
    /// the path.
    pub(crate) fn write(&self, name: &str, content: impl AsRef<[u8]>) -> std::path::PathBuf {
        let path = self.0.join(name);
        let tmp = self.0.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, content).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
