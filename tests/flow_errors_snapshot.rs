//! What `phonetree check` prints for each broken flow in `tests/data/flows/`:
//! every diagnostic with `file:line:column`, the source line and a caret.
//! One insta snapshot per corpus entry (`tests/snapshots/`); review changes
//! with `cargo insta review`, or `INSTA_UPDATE=always cargo test --test
//! flow_errors_snapshot` and `git diff tests/snapshots`.

use phonetree::flow::{self, Source, diagnostic::render_all};
use phonetree::media::prompt::PromptSet;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Sources of one corpus entry (a file, or a directory compiled as one set),
/// with the repository-relative paths the messages show.
fn sources(entry: &Path) -> Vec<Source> {
    let rel = |p: &Path| p.strip_prefix(repo()).unwrap_or(p).to_path_buf();
    let mut files: Vec<PathBuf> = if entry.is_dir() {
        std::fs::read_dir(entry)
            .expect("read corpus dir")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect()
    } else {
        vec![entry.to_path_buf()]
    };
    files.sort();
    files
        .iter()
        .map(|f| Source {
            path: rel(f),
            text: std::fs::read_to_string(f).expect("read corpus file"),
        })
        .collect()
}

#[test]
fn broken_flow_messages() {
    let prompts = PromptSet::load_dir(&repo().join("prompts")).expect("demo prompts load");
    let corpus = repo().join("tests/data/flows");
    // As `phonetree check` with a phonetree.yaml defining these queues.
    let queues: BTreeSet<String> = ["support", "sales"].map(String::from).into();
    let options = flow::CompileOptions {
        queues: Some(&queues),
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .expect("corpus")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() || p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    entries.sort();
    assert!(entries.len() >= 15, "corpus has {} entries", entries.len());
    for entry in entries {
        let name = entry
            .file_stem()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let diags = match flow::compile_with(&sources(&entry), &prompts, 1, &options) {
            Ok((_, warnings)) => warnings,
            Err(diags) => diags,
        };
        assert!(
            !diags.is_empty(),
            "{name}: a corpus entry must produce at least one diagnostic"
        );
        let errors = diags.iter().filter(|d| d.is_error()).count();
        let rendered = format!(
            "{}\n\n{errors} error(s), {} warning(s)",
            render_all(&diags),
            diags.len() - errors
        );
        insta::assert_snapshot!(name, rendered);
    }
}
