//! The catalog a call runs on: prompts and compiled flows, loaded and checked together,
//! immutable, with one version id. Reload builds a new one; calls keep the `Arc` they began with.
//!
//! Flows name queues (`queue` and `callback` nodes) that `phonetree.yaml` defines;
//! [`queue_names_from_config`] reads just those names so the compiler can check them.

use crate::flow::{self, CompileOptions, Diagnostic, FlowSet, PromptCatalog};
use crate::media::prompt::PromptSet;
use crate::media::types::PromptId;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

/// `phonetree.yaml` could not be read for its queue names.
#[derive(Debug, thiserror::Error)]
pub enum QueueNamesError {
    #[error("{path}: cannot read: {message}")]
    Read { path: String, message: String },
    #[error("{path}: `queues:` must be a mapping of queue names: {message}")]
    Parse { path: String, message: String },
}

/// The top-level `queues:` keys of a configuration file; every other key is
/// ignored (the full configuration is `crate::config`'s business).
/// `Ok(None)` when the file does not exist (nothing to check against);
/// `Ok(Some(empty))` when it has no `queues:` section.
pub fn queue_names_from_config(path: &Path) -> Result<Option<BTreeSet<String>>, QueueNamesError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(QueueNamesError::Read {
                path: path.display().to_string(),
                message: e.to_string(),
            });
        }
    };
    queue_names_from_text(&text)
        .map(Some)
        .map_err(|message| QueueNamesError::Parse {
            path: path.display().to_string(),
            message,
        })
}

fn queue_names_from_text(text: &str) -> Result<BTreeSet<String>, String> {
    #[derive(serde::Deserialize)]
    struct OnlyQueues {
        #[serde(default)]
        queues: Option<BTreeMap<String, serde::de::IgnoredAny>>,
    }
    if text.trim().is_empty() {
        return Ok(BTreeSet::new());
    }
    let parsed: Option<OnlyQueues> = serde_saphyr::from_str(text).map_err(|e| {
        use serde_saphyr::MessageFormatter;
        serde_saphyr::DefaultMessageFormatter
            .format_message(e.without_snippet())
            .to_string()
    })?;
    Ok(parsed
        .and_then(|p| p.queues)
        .map(|q| q.into_keys().collect())
        .unwrap_or_default())
}

pub struct Catalog {
    pub version: u64,
    pub flows: Arc<FlowSet>,
    pub prompts: Arc<PromptSet>,
    /// Lint findings that did not stop the load.
    pub warnings: Vec<Diagnostic>,
}

impl PromptCatalog for PromptSet {
    fn lookup(&self, name: &str) -> Option<PromptId> {
        PromptSet::lookup(self, name)
    }
}

/// Everything that was wrong, as printable lines (`file:line:col: error: ...`).
#[derive(Debug)]
pub struct CatalogErrors(pub Vec<String>);

impl std::fmt::Display for CatalogErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for e in &self.0 {
            writeln!(f, "{e}")?;
        }
        write!(f, "{} error(s)", self.0.len())
    }
}

impl std::error::Error for CatalogErrors {}

impl Catalog {
    /// Loads prompts, then compiles flows against them; reports every problem at once.
    /// `flows_dir` may also be a single flow file (`phonetree check flows/main.yaml`).
    /// Queue names are not checked: see [`Catalog::load_with`].
    pub fn load(
        flows_dir: &Path,
        prompts_dir: &Path,
        version: u64,
    ) -> Result<Catalog, CatalogErrors> {
        Catalog::load_with(flows_dir, prompts_dir, version, &CompileOptions::default())
    }

    /// [`Catalog::load`], checking the flows against `options` (the configured queues).
    pub fn load_with(
        flows_dir: &Path,
        prompts_dir: &Path,
        version: u64,
        options: &CompileOptions<'_>,
    ) -> Result<Catalog, CatalogErrors> {
        let mut errors = Vec::new();
        let prompts = match PromptSet::load_dir(prompts_dir) {
            Ok(p) => p,
            Err(errs) => {
                errors.extend(errs.into_iter().map(|e| e.to_string()));
                PromptSet::from_prompts(Vec::new())
            }
        };
        let sources = if flows_dir.is_file() {
            match std::fs::read_to_string(flows_dir) {
                Ok(text) => Ok(vec![flow::Source {
                    path: flows_dir.to_path_buf(),
                    text,
                }]),
                Err(e) => {
                    errors.push(format!("{}: cannot read file: {e}", flows_dir.display()));
                    return Err(CatalogErrors(errors));
                }
            }
        } else {
            flow::load_dir(flows_dir)
        };
        let sources = match sources {
            Ok(s) => s,
            Err(diags) => {
                errors.extend(diags.iter().map(|d| d.to_string()));
                return Err(CatalogErrors(errors));
            }
        };
        match flow::compile_with(&sources, &prompts, version, options) {
            Ok((flows, warnings)) if errors.is_empty() => Ok(Catalog {
                version,
                flows: Arc::new(flows),
                prompts: Arc::new(prompts),
                warnings,
            }),
            Ok(_) => Err(CatalogErrors(errors)),
            Err(diags) => {
                errors.extend(diags.iter().map(|d| d.to_string()));
                Err(CatalogErrors(errors))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_are_the_keys_of_the_queues_section_only() {
        let names = queue_names_from_text(
            "sip:\n  listen: 0.0.0.0:5060\nqueues:\n  support: { max_wait: 10m }\n  sales:\n    agents: [a, b]\nagents:\n  a: {}\n",
        )
        .unwrap();
        assert_eq!(names.into_iter().collect::<Vec<_>>(), ["sales", "support"]);
        assert!(queue_names_from_text("sip: {}\n").unwrap().is_empty());
        assert!(queue_names_from_text("").unwrap().is_empty());
        assert!(queue_names_from_text("queues:\n").unwrap().is_empty());
        assert!(queue_names_from_text("queues: [support]\n").is_err());
    }

    #[test]
    fn a_missing_config_file_checks_no_queue_names() {
        let dir = std::env::temp_dir().join(format!("phonetree-qn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(
            queue_names_from_config(&dir.join("none.yaml"))
                .unwrap()
                .is_none()
        );
        let f = dir.join("phonetree.yaml");
        std::fs::write(&f, "queues:\n  support: {}\n").unwrap();
        let names = queue_names_from_config(&f).unwrap().unwrap();
        assert!(names.contains("support"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
