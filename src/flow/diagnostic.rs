//! Located compiler messages: `file:line:column: severity: message`, then the
//! source line and a caret under the column, like rustc.

use std::fmt;
use std::path::{Path, PathBuf};

/// How bad a [`Diagnostic`] is. Errors refuse the flow set; warnings do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Warning,
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// One compiler message with its location. `line` and `column` are 1-based
/// and count characters; 0 means "no precise location" (e.g. a whole file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
    /// The source line the location points into, when known.
    pub snippet: Option<String>,
    /// Extra explanation printed after the snippet (`= note: ...`).
    pub note: Option<String>,
}

impl Diagnostic {
    pub fn error(file: &Path, line: usize, column: usize, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            file: file.to_path_buf(),
            line,
            column,
            message: message.into(),
            snippet: None,
            note: None,
        }
    }

    pub fn warning(file: &Path, line: usize, column: usize, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(file, line, column, message)
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Attaches a note printed below the snippet.
    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    /// Fills in `snippet` from the file's text (no-op when the line is out of range).
    pub fn with_source(mut self, text: &str) -> Self {
        if self.line > 0 {
            self.snippet = text
                .lines()
                .nth(self.line - 1)
                .map(|l| l.trim_end_matches('\r').to_string());
        }
        self
    }

    /// `file:line:column: severity: message` without the snippet.
    pub fn headline(&self) -> String {
        if self.line == 0 {
            format!(
                "{}: {}: {}",
                self.file.display(),
                self.severity,
                self.message
            )
        } else {
            format!(
                "{}:{}:{}: {}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.severity,
                self.message
            )
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.headline())?;
        if let Some(src) = &self.snippet {
            let num = self.line.to_string();
            let pad = " ".repeat(num.len());
            // Tabs are kept so the caret lines up under the same characters.
            let caret_pad: String = src
                .chars()
                .take(self.column.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(f, "\n{pad} |\n{num} | {src}\n{pad} | {caret_pad}^")?;
        }
        if let Some(note) = &self.note {
            let pad = " ".repeat(self.line.to_string().len());
            write!(f, "\n{pad} = note: {note}")?;
        }
        Ok(())
    }
}

/// Renders a list of diagnostics, one blank line between them.
pub fn render_all(diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diags {
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        out.push_str(&d.to_string());
    }
    out
}

/// Edit distance counting a swap of two neighbours as one edit (optimal
/// string alignment), for "did you mean" hints. Short strings only.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[a.len() * w + b.len()]
}

/// The closest candidate to `name`, if it is close enough to be a likely typo.
pub(crate) fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, _)| *d <= limit && *d < name.chars().count())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// ` (did you mean `x`?)` or nothing.
pub(crate) fn hint<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    match did_you_mean(name, candidates) {
        Some(c) => format!(" (did you mean `{c}`?)"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_location_snippet_and_caret() {
        let d = Diagnostic::error(Path::new("flows/main.yaml"), 2, 7, "unknown node `x`")
            .with_source("a: 1\nnext: mian\n");
        assert_eq!(
            d.to_string(),
            "flows/main.yaml:2:7: error: unknown node `x`\n  |\n2 | next: mian\n  |       ^"
        );
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("mian_menu", ["main_menu", "hours"]),
            Some("main_menu")
        );
        assert_eq!(did_you_mean("zzz", ["main_menu", "hours"]), None);
        assert_eq!(did_you_mean("plya", ["play", "menu"]), Some("play"));
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
