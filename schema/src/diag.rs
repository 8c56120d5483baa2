//! Diagnostics: errors and warnings that point into the schema file.
//!
//! Every diagnostic carries a byte range in the schema source, a message, a
//! label for the caret line and, where we know one, a `help` that says what to
//! write instead. Rendering goes through `codespan-reporting`, which prints the
//! same layout rustc does (`error: …`, `--> file:line:col`, the source line with
//! carets, `= help: …`).

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, termcolor};

/// A byte range in a schema source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(range: Range<usize>) -> Span {
        Span { start: range.start, end: range.end.max(range.start) }
    }

    /// The span of a token or syntax node, as proc-macro2 tracks it.
    pub fn of(span: proc_macro2::Span) -> Span {
        Span::new(span.byte_range())
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span { start: self.start.min(other.start), end: self.end.max(other.end) }
    }

    fn range(self) -> Range<usize> {
        self.start..self.end
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One error or warning about a schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    pub span: Span,
    /// Text printed under the carets.
    pub label: String,
    /// Other places that explain the error (e.g. the first definition of a duplicate).
    pub related: Vec<(Span, String)>,
    /// What to write instead.
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            span,
            label: String::new(),
            related: Vec::new(),
            help: None,
        }
    }

    pub fn warning(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(span, message) }
    }

    pub fn label(mut self, label: impl Into<String>) -> Diagnostic {
        self.label = label.into();
        self
    }

    pub fn related(mut self, span: Span, label: impl Into<String>) -> Diagnostic {
        self.related.push((span, label.into()));
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// A schema file's name and text, kept so that diagnostics can be rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

impl SourceFile {
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> SourceFile {
        SourceFile { path: path.into(), text: text.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }
}

/// The diagnostics produced for one schema file, errors and warnings together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics {
    pub file: SourceFile,
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| d.is_error())
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| !d.is_error())
    }

    /// `path:line:col` of a diagnostic's primary span.
    pub fn location(&self, diagnostic: &Diagnostic) -> String {
        let (line, col) = self.file.line_col(diagnostic.span.start);
        format!("{}:{line}:{col}", self.file.path.display())
    }

    /// Renders every diagnostic the way rustc does, optionally in colour.
    pub fn render(&self, color: bool) -> String {
        let mut buffer =
            if color { termcolor::Buffer::ansi() } else { termcolor::Buffer::no_color() };
        let styles = term::Styles::default();
        let file = SimpleFile::new(self.file.path.display().to_string(), &self.file.text);
        let config = term::Config::default();
        for diagnostic in &self.items {
            let mut labels =
                vec![Label::primary((), diagnostic.span.range()).with_message(&diagnostic.label)];
            labels.extend(
                diagnostic
                    .related
                    .iter()
                    .map(|(span, text)| Label::secondary((), span.range()).with_message(text)),
            );
            let cs = match diagnostic.severity {
                Severity::Error => CsDiagnostic::error(),
                Severity::Warning => CsDiagnostic::warning(),
            }
            .with_message(&diagnostic.message)
            .with_labels(labels)
            .with_notes(diagnostic.help.iter().map(|h| format!("help: {h}")).collect());
            // Writing into an in-memory buffer cannot fail for I/O reasons; a
            // span outside the file would be our bug, so fall back to a plain line.
            let mut writer = term::StylesWriter::new(&mut buffer, &styles);
            if term::emit_to_write_style(&mut writer, &config, &file, &cs).is_err() {
                let _ = std::io::Write::write_fmt(
                    &mut writer,
                    format_args!("error: {}\n", diagnostic.message),
                );
            }
        }
        String::from_utf8_lossy(buffer.as_slice()).into_owned()
    }

    /// One line per diagnostic: `path:line:col: error: message (help: …)`.
    /// Used where a multi-line rendering cannot be shown (compiler errors from the macro).
    pub fn summary_lines(&self) -> Vec<String> {
        self.items
            .iter()
            .map(|d| {
                let kind = if d.is_error() { "error" } else { "warning" };
                let mut line = format!("{}: {kind}: {}", self.location(d), d.message);
                if !d.label.is_empty() {
                    line.push_str(&format!(": {}", d.label));
                }
                if let Some(help) = &d.help {
                    line.push_str(&format!("\n  help: {help}"));
                }
                line
            })
            .collect()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

impl std::error::Error for Diagnostics {}
