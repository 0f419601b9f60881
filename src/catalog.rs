//! The catalog a call runs on: prompts and compiled flows, loaded and checked together,
//! immutable, with one version id. Reload builds a new one; calls keep the `Arc` they began with.

use crate::flow::{self, Diagnostic, FlowSet, PromptCatalog};
use crate::media::prompt::PromptSet;
use crate::media::types::PromptId;
use std::path::Path;
use std::sync::Arc;

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
    pub fn load(
        flows_dir: &Path,
        prompts_dir: &Path,
        version: u64,
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
        match flow::compile(&sources, &prompts, version) {
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
