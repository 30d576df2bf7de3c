//! Load errors: what is wrong with a policy directory, located by file, line and column so an
//! operator can fix it without guessing.

use std::fmt;
use std::path::PathBuf;

/// Why a policy set was refused. A refused set never replaces the one in force.
#[derive(Debug, thiserror::Error)]
pub enum PolicyLoadError {
    /// The directory or one of its files could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// No `*.cedar` file, or none holding a policy. A gateway without policies would deny
    /// everything, which is almost always a wrong `[policy] dir`, so it is refused.
    #[error("{origin}: no policies found (no *.cedar file holds a policy)")]
    NoPolicies { origin: String },
    /// One or more files are broken; every problem found is listed.
    #[error("{}", Problems(.0))]
    Invalid(Vec<Problem>),
}

impl PolicyLoadError {
    /// The located problems, empty for IO errors and an empty directory.
    pub fn problems(&self) -> &[Problem] {
        match self {
            PolicyLoadError::Invalid(problems) => problems,
            PolicyLoadError::Io { .. } | PolicyLoadError::NoPolicies { .. } => &[],
        }
    }
}

/// What kind of mistake a [`Problem`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// A file is not valid UTF-8 or its name is unusable.
    File,
    /// Cedar could not parse a policy file.
    Syntax,
    /// A `.cedarschema` file does not parse, uses a namespace, or does not merge with the
    /// built-in schema.
    Schema,
    /// A policy does not validate against the schema (strict mode).
    Validation,
    /// A policy has no `@id`, or an unusable one.
    MissingId,
    /// Two policies share an `@id`.
    DuplicateId,
    /// An approval annotation is malformed or misplaced.
    Annotation,
    /// Policy templates (`?principal`, `?resource`) are not supported.
    Template,
}

/// One located mistake in a policy directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
    /// File name within the policy directory (no directory part).
    pub file: String,
    /// 1-based line and column, when known.
    pub line: Option<u32>,
    pub column: Option<u32>,
    pub policy_id: Option<String>,
    pub message: String,
}

impl Problem {
    pub(crate) fn new(kind: ProblemKind, file: &str, message: impl Into<String>) -> Problem {
        Problem {
            kind,
            file: file.to_owned(),
            line: None,
            column: None,
            policy_id: None,
            message: message.into(),
        }
    }

    pub(crate) fn at(mut self, pos: Option<Position>) -> Problem {
        if let Some(pos) = pos {
            self.line = Some(pos.line);
            self.column = Some(pos.column);
        }
        self
    }

    pub(crate) fn policy(mut self, id: impl Into<String>) -> Problem {
        self.policy_id = Some(id.into());
        self
    }
}

/// `file:line:col: policy `id`: message`, the form compilers use, so editors can jump to it.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        if let Some(id) = &self.policy_id {
            write!(f, "policy `{id}`: ")?;
        }
        f.write_str(&self.message)
    }
}

struct Problems<'a>(&'a [Problem]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// A 1-based line and column (in characters) within a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub line: u32,
    pub column: u32,
}

impl Position {
    /// The position of byte `offset` in `text`; offsets past the end (or inside a character)
    /// are clamped, because spans come from a parser we do not control.
    pub fn of_offset(text: &str, offset: usize) -> Position {
        let mut end = offset.min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let before = &text[..end];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Position {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let text = "ab\ncdé\nf";
        assert_eq!(
            Position::of_offset(text, 0),
            Position { line: 1, column: 1 }
        );
        assert_eq!(
            Position::of_offset(text, 3),
            Position { line: 2, column: 1 }
        );
        // `é` is two bytes: the column counts characters.
        assert_eq!(
            Position::of_offset(text, 7),
            Position { line: 2, column: 4 }
        );
        assert_eq!(
            Position::of_offset(text, 6),
            Position { line: 2, column: 3 }
        );
        assert_eq!(
            Position::of_offset(text, 99),
            Position { line: 3, column: 2 }
        );
    }

    #[test]
    fn problems_display_like_a_compiler() {
        let p = Problem::new(ProblemKind::Syntax, "a.cedar", "unexpected token")
            .at(Some(Position { line: 3, column: 7 }))
            .policy("p1");
        assert_eq!(p.to_string(), "a.cedar:3:7: policy `p1`: unexpected token");
        let q = Problem::new(ProblemKind::File, "b.cedar", "not UTF-8");
        assert_eq!(
            PolicyLoadError::Invalid(vec![p, q]).to_string(),
            "a.cedar:3:7: policy `p1`: unexpected token\nb.cedar: not UTF-8"
        );
    }
}
