//! The tokens file (`--auth-tokens`): one token per line; blank lines and lines whose first
//! non-blank character is `#` are ignored; surrounding whitespace (and a CR) is trimmed. A
//! token is 1 to 4096 visible ASCII characters without spaces (a line that is not, is an
//! error naming its line number, never its content). A file without tokens is valid and
//! means that no token is accepted: every protected request is refused.
//!
//! Only SHA-256 digests of the tokens are kept. A presented token is hashed once and
//! compared with every digest in constant time, with no early exit, so neither the time nor
//! the length of a comparison tells anything about the tokens.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

/// Longest accepted token.
pub const MAX_TOKEN_LEN: usize = 4096;

type TokenDigest = [u8; 32];

/// A tokens file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    /// The file cannot be read.
    #[error("cannot read the tokens file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not a token.
    #[error("invalid tokens file {}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Which line and why (never the line's content).
        reason: String,
    },
}

/// Parses the file's content into token digests (deduplicated). Errors name the line.
pub fn parse(content: &[u8]) -> Result<Vec<[u8; 32]>, String> {
    let mut digests = Vec::new();
    for (i, line) in content.split(|&b| b == b'\n').enumerate() {
        let line = line.trim_ascii();
        if line.is_empty() || line.starts_with(b"#") {
            continue;
        }
        if line.len() > MAX_TOKEN_LEN {
            return Err(format!(
                "line {}: a token is at most {MAX_TOKEN_LEN} characters",
                i + 1
            ));
        }
        if !line.iter().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "line {}: a token is visible ASCII without spaces",
                i + 1
            ));
        }
        let digest = digest(line);
        if !digests.contains(&digest) {
            digests.push(digest);
        }
    }
    Ok(digests)
}

fn digest(token: &[u8]) -> TokenDigest {
    Sha256::digest(token).into()
}

/// The accepted tokens, swapped atomically when the file changes.
pub struct Tokens {
    path: PathBuf,
    digests: ArcSwap<Vec<TokenDigest>>,
    /// SHA-256 of the file last loaded.
    loaded: Mutex<[u8; 32]>,
}

impl fmt::Debug for Tokens {
    /// The path and the count; never the tokens or their digests.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("path", &self.path)
            .field("count", &self.len())
            .finish()
    }
}

fn read(path: &Path) -> Result<(Vec<TokenDigest>, [u8; 32]), TokensError> {
    let content = std::fs::read(path).map_err(|source| TokensError::Read {
        path: path.to_owned(),
        source,
    })?;
    let digests = parse(&content).map_err(|reason| TokensError::Invalid {
        path: path.to_owned(),
        reason,
    })?;
    Ok((digests, digest(&content)))
}

impl Tokens {
    /// Loads the file.
    pub fn load(path: impl Into<PathBuf>) -> Result<Arc<Tokens>, TokensError> {
        let path = path.into();
        let (digests, file) = read(&path)?;
        Ok(Arc::new(Tokens {
            path,
            digests: ArcSwap::from_pointee(digests),
            loaded: Mutex::new(file),
        }))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many distinct tokens are accepted.
    pub fn len(&self) -> usize {
        self.digests.load().len()
    }

    /// Whether no token is accepted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Re-reads the file: `Ok(true)` if the set changed, `Ok(false)` if the file did not, an
    /// error (the old set stays) if it is unreadable or invalid.
    pub fn reload(&self) -> Result<bool, TokensError> {
        let (digests, file) = read(&self.path)?;
        // A poisoned lock only means a panic elsewhere mid-reload; the digest is still valid.
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if *loaded == file {
            return Ok(false);
        }
        self.digests.store(Arc::new(digests));
        *loaded = file;
        Ok(true)
    }

    /// Whether `presented` is one of the tokens: constant time in the tokens' content and
    /// lengths, every token compared.
    pub fn check(&self, presented: &[u8]) -> bool {
        let presented = digest(presented);
        let digests = self.digests.load();
        let mut found = Choice::from(0);
        for d in digests.iter() {
            found |= d.ct_eq(&presented);
        }
        found.into()
    }
}
