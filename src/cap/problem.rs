//! Problems found while reading or validating a document.
//!
//! A duty officer (or the engineer on call) must be able to go from a message straight to the
//! offending line, so every problem carries the element path, the line where known, and a
//! stable code that tests and tools can match on.

use std::fmt;

use serde::Serialize;

/// How much a problem matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// The document breaks the standard (or the chosen profile): validation fails.
    Error,
    /// Legal but questionable, or a profile recommendation: worth a look, not a failure.
    Warning,
    /// Information about what reading did, e.g. how a CAP 1.0 value was upgraded.
    Note,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Note => "note",
        })
    }
}

/// One problem: where, how bad, what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// How much it matters.
    pub level: Level,
    /// A stable short code, e.g. `schema.order` or `cap.references.missing`.
    pub code: &'static str,
    /// 1-based line in the document, where known.
    pub line: Option<u32>,
    /// Element path, e.g. `alert/info[2]/area[1]/polygon[1]`.
    pub path: String,
    /// What is wrong, in words a person can act on.
    pub message: String,
}

impl Problem {
    /// Whether this problem makes a document invalid.
    pub fn is_error(&self) -> bool {
        self.level == Level::Error
    }

    /// The `FILE:LINE: path: message` form the command line prints (warnings and notes are
    /// prefixed with their level so they cannot be mistaken for errors).
    pub fn render(&self, file: &str) -> String {
        let loc = match self.line {
            Some(l) => format!("{file}:{l}"),
            None => file.to_string(),
        };
        let level = match self.level {
            Level::Error => String::new(),
            other => format!("{other}: "),
        };
        if self.path.is_empty() {
            format!("{loc}: {level}{}", self.message)
        } else {
            format!("{loc}: {}: {level}{}", self.path, self.message)
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render("<document>"))
    }
}

/// A collector of problems, in document order of discovery.
#[derive(Debug, Default, Clone)]
pub struct Problems {
    items: Vec<Problem>,
}

impl Problems {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record a problem.
    pub fn push(
        &mut self,
        level: Level,
        code: &'static str,
        line: Option<u32>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.items.push(Problem {
            level,
            code,
            line,
            path: path.into(),
            message: message.into(),
        });
    }

    /// Record an error.
    pub fn error(
        &mut self,
        code: &'static str,
        line: Option<u32>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.push(Level::Error, code, line, path, message);
    }

    /// Record a warning.
    pub fn warn(
        &mut self,
        code: &'static str,
        line: Option<u32>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.push(Level::Warning, code, line, path, message);
    }

    /// Record a note.
    pub fn note(
        &mut self,
        code: &'static str,
        line: Option<u32>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.push(Level::Note, code, line, path, message);
    }

    /// Whether any error was recorded.
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Problem::is_error)
    }

    /// Move all problems of another list into this one.
    pub fn extend(&mut self, other: Problems) {
        self.items.extend(other.items);
    }

    /// The problems, sorted by line (stable, so equal lines keep discovery order).
    pub fn into_sorted(mut self) -> Vec<Problem> {
        self.items.sort_by_key(|p| p.line.unwrap_or(0));
        self.items
    }

    /// The problems as recorded.
    pub fn as_slice(&self) -> &[Problem] {
        &self.items
    }

    /// Number of problems.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl From<Problems> for Vec<Problem> {
    fn from(p: Problems) -> Self {
        p.items
    }
}

/// An element path built as the checker descends, formatted only if a problem needs it
/// (formatting a path for every element would cost more than checking the element).
#[derive(Clone, Copy)]
pub struct ElemPath<'a> {
    parent: Option<&'a ElemPath<'a>>,
    name: &'a str,
    index: u32,
}

impl<'a> ElemPath<'a> {
    /// A path starting at `root` (which may itself be a pre-formatted path).
    pub fn root(root: &'a str) -> Self {
        ElemPath {
            parent: None,
            name: root,
            index: 0,
        }
    }

    /// A child element; `index` is 1-based for repeatable elements, 0 for single ones.
    pub fn child(&'a self, name: &'a str, index: u32) -> ElemPath<'a> {
        ElemPath {
            parent: Some(self),
            name,
            index,
        }
    }
}

impl std::fmt::Display for ElemPath<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(p) = self.parent {
            write!(f, "{p}/")?;
        }
        f.write_str(self.name)?;
        if self.index > 0 {
            write!(f, "[{}]", self.index)?;
        }
        Ok(())
    }
}

impl From<ElemPath<'_>> for String {
    fn from(p: ElemPath<'_>) -> String {
        p.to_string()
    }
}

impl From<&ElemPath<'_>> for String {
    fn from(p: &ElemPath<'_>) -> String {
        p.to_string()
    }
}
