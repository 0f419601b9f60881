//! Call flows: YAML files an operator writes, compiled into an immutable
//! [`FlowSet`] and run one call at a time by [`Run`].
//!
//! - Owns: the flow language (schema, compiler, interpreter) and its diagnostics.
//! - Takes: flow file texts ([`Source`]), a [`PromptCatalog`] to resolve prompt
//!   names, and per call: digits, playback-finished and timer events with the
//!   time passed in.
//! - Gives: a checked `Arc<FlowSet>` (with version id) or every error located
//!   file:line:column; per call, [`Action`]s (play, stop, hang up, transfer,
//!   directory requests, queue join/leave, callback requests) and the next
//!   deadline. Queue events ([`QueueEvent`]) come back in from the ACD.
//! - Never: reads the clock, does I/O during a call, or panics on any input
//!   (flow text or digit sequence).
//!
//! Pipeline: [`schema`] (YAML as written, with locations) → [`compile`]
//! (names resolved to ids, all errors collected) → [`run`] (sans-IO
//! interpreter). The language is documented in `docs/flows.md`.

pub mod calendar;
pub mod compile;
pub mod diagnostic;
pub mod graph;
pub mod pattern;
pub mod run;
pub mod say;
pub mod schema;
pub mod sim;
pub mod testcase;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::media::types::PromptId;

pub use compile::{CompileOptions, FlowId, FlowSet, compile, compile_with};
pub use diagnostic::{Diagnostic, Severity};
pub use run::{Action, CallInfo, QueueEvent, QueueRefusal, Run, SurveyResult};

/// Resolves prompt names such as `"en/welcome"` to loaded prompts. The real
/// catalog is `media::prompt::PromptSet`; tests use a `HashMap`.
pub trait PromptCatalog {
    fn lookup(&self, name: &str) -> Option<PromptId>;
}

impl PromptCatalog for HashMap<String, PromptId> {
    fn lookup(&self, name: &str) -> Option<PromptId> {
        self.get(name).copied()
    }
}

/// One flow file's text. `path` is what messages show (e.g. `flows/main.yaml`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
}

/// Reads every `*.yaml` / `*.yml` file under `dir` (recursively, sorted by
/// path), skipping a `tests/` folder directly under `dir` (flow test cases).
/// Paths in the returned sources are `dir` joined with the relative path.
pub fn load_dir(dir: &Path) -> Result<Vec<Source>, Vec<Diagnostic>> {
    let mut paths = Vec::new();
    let mut errors = Vec::new();
    collect_yaml(dir, dir, &mut paths, &mut errors);
    paths.sort();
    let mut sources = Vec::new();
    for path in paths {
        match std::fs::read(&path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => sources.push(Source { path, text }),
                Err(_) => errors.push(Diagnostic::error(&path, 0, 0, "file is not valid UTF-8")),
            },
            Err(e) => errors.push(Diagnostic::error(
                &path,
                0,
                0,
                format!("cannot read file: {e}"),
            )),
        }
    }
    if errors.is_empty() {
        Ok(sources)
    } else {
        Err(errors)
    }
}

fn collect_yaml(root: &Path, dir: &Path, out: &mut Vec<PathBuf>, errors: &mut Vec<Diagnostic>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push(Diagnostic::error(
                dir,
                0,
                0,
                format!("cannot read flow directory: {e}"),
            ));
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_dir() {
            if dir == root && entry.file_name() == "tests" {
                continue;
            }
            collect_yaml(root, &path, out, errors);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
    }
}
