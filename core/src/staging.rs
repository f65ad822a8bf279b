//! Staged rules versions, for a resharding cutover: a whole configuration
//! is staged ahead (validated as a reload validates a file, not yet in
//! force), and activated at the moment the migrator chooses — all or
//! nothing, as a reload: a new version that sessions outside a transaction
//! move to at their next statement, while sessions inside one finish on
//! theirs.
//!
//! When the proxy runs from a configuration file, activation writes the
//! activated text to it (the previous file kept as `<file>.v<old
//! version>`), so that a later reload or restart keeps the new rules
//! instead of silently going back to the old ones.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use shardgate_rules::config::Config;
use tracing::{info, warn};

use crate::backend::Backend;
use crate::proxy::Proxy;
use crate::reload::{check_replacement, ReloadError};

/// A configuration waiting to be activated.
#[derive(Debug, Clone)]
pub struct Staged {
    /// The version it will be: the active one + 1 when staged.
    pub version: u64,
    /// What it changes from the version that was active when staged.
    pub changes: Vec<String>,
    text: String,
    config: Config,
}

/// An activation that took effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activated {
    pub version: u64,
    /// Sessions still running on (or keeping, in a transaction) an older version.
    pub sessions_on_older_versions: usize,
    /// Where the previous configuration file was kept, when there is one.
    pub previous_file: Option<PathBuf>,
}

/// Why a staged version was not activated.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error("version {requested} is not staged ({}); PUT /api/rules/staged first", staged.map_or("nothing is staged".to_string(), |v| format!("the staged version is {v}")))]
    NotStaged { requested: u64, staged: Option<u64> },
    #[error("{0}")]
    Build(ReloadError),
    #[error("cannot write the activated configuration to {}: {source}; nothing was activated", path.display())]
    WriteFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Staged {
    /// The staged configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }
}

impl<B: Backend> Proxy<B> {
    /// Validates `text` as the next version and stages it, replacing any
    /// staged one.
    pub async fn stage(&self, text: &str) -> Result<Staged, ReloadError> {
        let _one_at_a_time = self.reload_guard().await;
        let config =
            Config::from_toml_str(text).map_err(|e| ReloadError::InvalidText(Box::new(e)))?;
        let old = self.current();
        let changes = check_replacement(&old.config, &config)?;
        let staged = Staged {
            version: old.version + 1,
            changes,
            text: text.to_string(),
            config,
        };
        info!(version = staged.version, changes = ?staged.changes, "rules version staged");
        *self.staged_slot() = Some(staged.clone());
        Ok(staged)
    }

    /// The staged version, if any.
    pub fn staged_version(&self) -> Option<u64> {
        self.staged_slot().as_ref().map(|s| s.version)
    }

    /// Drops the staged configuration; returns its version.
    pub fn discard_staged(&self) -> Option<u64> {
        self.staged_slot().take().map(|s| s.version)
    }

    /// Makes staged version `version` current.
    pub async fn activate(&self, version: u64) -> Result<Activated, ActivateError> {
        let _one_at_a_time = self.reload_guard().await;
        let old = self.current();
        let staged = self.staged_slot().clone();
        let staged = match staged {
            Some(s) if s.version == version && s.version == old.version + 1 => s,
            other => {
                return Err(ActivateError::NotStaged {
                    requested: version,
                    staged: other.map(|s| s.version),
                })
            }
        };
        let shared = self
            .next_version(&old, staged.config.clone())
            .map_err(ActivateError::Build)?;
        let previous_file = match self.config_path() {
            Some(path) => Some(
                replace_config_file(path, old.version, &staged.text).map_err(|source| {
                    ActivateError::WriteFile {
                        path: path.to_path_buf(),
                        source,
                    }
                })?,
            ),
            None => None,
        };
        self.install(Arc::new(shared));
        self.discard_staged();
        let sessions_on_older_versions = self.sessions().on_older_versions(version);
        info!(
            version,
            sessions_on_older_versions,
            changes = ?staged.changes,
            "staged rules version activated"
        );
        Ok(Activated {
            version,
            sessions_on_older_versions,
            previous_file,
        })
    }
}

/// Writes `text` to `path` atomically (a temporary file beside it, synced,
/// renamed over it), keeping the previous file as `<path>.v<old_version>`
/// (`.v<old_version>.<n>` when that name is taken: versions restart at 1
/// with the proxy, and no backup is ever overwritten).
fn replace_config_file(path: &Path, old_version: u64, text: &str) -> std::io::Result<PathBuf> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".activating");
    let temp = PathBuf::from(temp);
    let mut kept = None;
    let written = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        kept = Some(keep_copy(path, old_version)?);
        std::fs::rename(&temp, path)
    })();
    if written.is_err() {
        if let Err(e) = std::fs::remove_file(&temp) {
            warn!(path = %temp.display(), "cannot remove the unfinished config file: {e}");
        }
    }
    written?;
    kept.ok_or_else(|| std::io::Error::other("the previous config file was not kept"))
}

/// Copies `path` to the first free name of `<path>.v<version>`,
/// `<path>.v<version>.1`, ...: created exclusively, so a backup that
/// exists is never written over.
fn keep_copy(path: &Path, version: u64) -> std::io::Result<PathBuf> {
    const MAX_TRIES: u32 = 10_000;
    let content = std::fs::read(path)?;
    for n in 0..MAX_TRIES {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".v{version}"));
        if n > 0 {
            name.push(format!(".{n}"));
        }
        let kept = PathBuf::from(name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&kept)
        {
            Ok(mut file) => {
                file.write_all(&content)?;
                file.sync_all()?;
                return Ok(kept);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        format!("{MAX_TRIES} backups of {} exist already", path.display()),
    ))
}

#[cfg(test)]
mod tests {
    use super::replace_config_file;

    #[test]
    fn the_file_is_replaced_and_the_old_one_kept() {
        let dir = std::env::temp_dir().join(format!("shardgate-staging-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("proxy.toml");
        std::fs::write(&path, "old = 1\n").unwrap();
        let kept = replace_config_file(&path, 3, "new = 2\n").unwrap();
        assert_eq!(kept, dir.join("proxy.toml.v3"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new = 2\n");
        assert_eq!(std::fs::read_to_string(&kept).unwrap(), "old = 1\n");
        assert!(!dir.join("proxy.toml.activating").exists());

        // Versions restart with the proxy: the next `.v3` takes a new name.
        let again = replace_config_file(&path, 3, "newer = 3\n").unwrap();
        assert_eq!(again, dir.join("proxy.toml.v3.1"));
        assert_eq!(std::fs::read_to_string(&kept).unwrap(), "old = 1\n");
        assert_eq!(std::fs::read_to_string(&again).unwrap(), "new = 2\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "newer = 3\n");

        let missing = dir.join("missing").join("proxy.toml");
        assert!(replace_config_file(&missing, 1, "x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
