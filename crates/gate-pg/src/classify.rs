//! The SQL classifier: decides which action kind (`db.read` … `db.unknown`) a statement text is,
//! which tables it touches, and, where a reviewer would want to know, why.
//!
//! The text is parsed with sqlparser's PostgreSQL dialect and every statement, expression and
//! relation in it is visited; the most sensitive finding governs. Two guards keep the parser honest
//! about what PostgreSQL will run:
//!
//! * Before parsing, the text is lexed by [`crate::shape`]'s copy of PostgreSQL's lexer and every
//!   string constant, quoted identifier, number and comment the parser's tokenizer found must sit at
//!   exactly the same place. If they do not — a backslash sqlparser reads as an escape where
//!   PostgreSQL does not, an operator that swallows a `--`, a `U&"…"` identifier — the text is
//!   `db.unknown`: a statement could hide where one of them sees a literal or a comment.
//! * The parser must consume the whole text (sqlparser stops at an `END` after a statement).
//!
//! Some statements PostgreSQL accepts are beyond sqlparser 0.63 (`CLUSTER`, `REINDEX`, `ALTER
//! SYSTEM`, `TABLE t`, …). When the text does not parse, each statement is parsed on its own, and
//! one that still fails is recognised by its leading keywords when PostgreSQL's grammar for it has
//! no place for an expression, so nothing else can hide in it; anything else is `db.unknown`.
//!
//! The classification never depends on a literal's value, only on where literals are: the
//! statement-shape cache relies on that (see [`crate::shape`]).

use std::collections::{BTreeSet, HashMap};
use std::ops::ControlFlow;

use sqlparser::ast::{
    AlterFunctionAction, AlterFunctionOperation, AlterSchemaOperation, AlterTableOperation,
    CommentObject, CopySource, CopyTarget, CreateFunction, DeclareType, Expr, FunctionSecurity,
    GrantObjects, Ident, ObjectName, ObjectNamePart, ObjectType, Query, Reset, Select, Set,
    SetExpr, Statement, TableFactor, Value, Visit, Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer, Whitespace};

use crate::shape::{Lexer, TokenKind as PgTokenKind};

/// Texts longer than this are not read at all (a statement text of a megabyte is not something a
/// person reviews either).
pub(crate) const MAX_TEXT_LEN: usize = 1024 * 1024;

/// How deep a statement may nest (as [`nesting_estimate`] counts) before it is not parsed: the
/// parser builds left-deep trees for chains like `1+1+…` or `… UNION …`, and dropping a tree is
/// recursive, so a few hundred thousand levels would overflow the stack. Ten thousand stay well
/// within a 2 MiB thread stack even unoptimized.
const MAX_NESTING: usize = 10_000;

/// PostgreSQL's `NAMEDATALEN - 1`: longer identifiers are truncated to this many bytes.
const MAX_IDENTIFIER_LEN: usize = 63;

/// Action kinds, ordered from least to most sensitive: the most sensitive one governs a multi-statement text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StatementKind {
    Read,
    Write,
    Ddl,
    Destructive,
    Export,
    Privilege,
    Unknown,
}

impl StatementKind {
    /// The attempt's action kind.
    pub fn action(self) -> &'static str {
        match self {
            StatementKind::Read => "db.read",
            StatementKind::Write => "db.write",
            StatementKind::Ddl => "db.ddl",
            StatementKind::Destructive => "db.destructive",
            StatementKind::Export => "db.export",
            StatementKind::Privilege => "db.privilege",
            StatementKind::Unknown => "db.unknown",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classification {
    pub kind: StatementKind,
    /// Tables (and views, sequences, other relations) the text touches, as written but folded the way
    /// PostgreSQL folds identifiers: unquoted parts lowercased, quoted parts kept exactly; qualified
    /// names joined with '.', e.g. `public.accounts`, `Weird"Name` stays `Weird"Name` without quotes → use the
    /// identifier value. Sorted, deduplicated. CTE names are not tables.
    pub tables: Vec<String>,
    /// Why the text got its kind when that is worth telling a reviewer: the parser's error for
    /// Unknown, "calls pg_read_file", "DELETE without WHERE", "data-modifying CTE", … None for plain cases.
    pub note: Option<String>,
    /// How many statements the text holds (0 for an empty or comment-only text).
    pub statements: usize,
    /// Every statement only returns rows: a query (`SELECT`, `VALUES`, `TABLE`, `WITH`), `SHOW`
    /// or `EXPLAIN` without `ANALYZE`. Other reads (transaction control, `SET`, cursors,
    /// `PREPARE`, `LISTEN`) change session state.
    pub rows_only: bool,
}

impl Classification {
    /// The most sensitive kind, with why.
    pub fn unknown(note: String, statements: usize) -> Classification {
        Classification {
            kind: StatementKind::Unknown,
            tables: Vec::new(),
            note: Some(note),
            statements,
            rows_only: false,
        }
    }
}

/// Classifies a statement text (one or more statements, as sent in a simple query).
pub fn classify(sql: &str) -> Classification {
    use StatementKind::*;
    if sql.len() > MAX_TEXT_LEN {
        // Unread, so the count is a guess: there is at least one statement.
        return Classification::unknown(
            format!("the text is longer than {MAX_TEXT_LEN} bytes and was not read"),
            1,
        );
    }
    let pg_tokens = match Lexer::new(sql).collect::<Result<Vec<_>, _>>() {
        Ok(tokens) => tokens,
        Err(error) => {
            return Classification::unknown(
                format!(
                    "PostgreSQL would not read this text: {} at byte {}",
                    error.message, error.at
                ),
                1,
            );
        }
    };
    let statements = count_statements(&pg_tokens);
    if statements == 0 {
        return Classification {
            kind: Read,
            tables: Vec::new(),
            note: None,
            statements: 0,
            rows_only: true,
        };
    }
    if pg_tokens
        .iter()
        .any(|t| t.kind == PgTokenKind::UnicodeIdent)
    {
        return Classification::unknown(
            "a U&\"…\" identifier, which the parser does not read".to_owned(),
            statements,
        );
    }
    let dialect = PostgreSqlDialect {};
    let tokens = match parser_tokens(&dialect, sql, &pg_tokens) {
        Ok(tokens) => tokens,
        Err(note) => return Classification::unknown(note, statements),
    };
    if nesting_estimate(&tokens) > MAX_NESTING {
        return Classification::unknown(
            "the text nests too deeply to be read safely".to_owned(),
            statements,
        );
    }
    let mut scan = Scan::new();
    let statements = match parse_whole(&dialect, tokens) {
        Ok(parsed) => {
            for statement in &parsed {
                scan.statement(statement);
            }
            parsed.len()
        }
        // Rare enough that tokenizing again costs less than keeping a copy for it.
        Err(_) => match parser_tokens(&dialect, sql, &pg_tokens) {
            Ok(tokens) => scan.statement_by_statement(&dialect, tokens),
            Err(note) => return Classification::unknown(note, statements),
        },
    };
    Classification {
        kind: scan.kind,
        tables: scan.tables.into_iter().collect(),
        note: scan.note,
        statements,
        // A statement the parser could not read never reached `own_kind`.
        rows_only: scan.rows_only && scan.kind == Read,
    }
}

/// Counts statements the way PostgreSQL's grammar splits them: at semicolons outside parentheses
/// (`CREATE RULE … DO (…; …)` holds some), ignoring empty ones.
fn count_statements(tokens: &[crate::shape::Token]) -> usize {
    let mut count = 0;
    let mut depth = 0usize;
    let mut in_statement = false;
    for token in tokens.iter().filter(|t| !t.kind.is_blank()) {
        match token.kind {
            PgTokenKind::Semicolon if depth == 0 => {
                in_statement = false;
                continue;
            }
            PgTokenKind::LParen => depth += 1,
            PgTokenKind::RParen => depth = depth.saturating_sub(1),
            _ => {}
        }
        if !in_statement {
            in_statement = true;
            count += 1;
        }
    }
    count
}

/// Tokenizes the text for the parser, checks that the tokenizer agrees with PostgreSQL's lexer,
/// and drops the later pieces of continued string constants (`'a'⏎'b'` is one constant to
/// PostgreSQL; sqlparser sees two). Their values are lost, which does not matter: the
/// classification never depends on a literal's value.
fn parser_tokens(
    dialect: &PostgreSqlDialect,
    sql: &str,
    pg_tokens: &[crate::shape::Token],
) -> Result<Vec<TokenWithSpan>, String> {
    let mut tokens = Tokenizer::new(dialect, sql)
        .tokenize_with_location()
        .map_err(|error| error.to_string())?;
    check_same_lexing(sql, pg_tokens, &tokens).map_err(|at| {
        format!(
            "the parser would read this text differently from PostgreSQL near line {}, column {}",
            at.line, at.column
        )
    })?;
    // Both lists are in text order, so one pass over each drops the pieces.
    let mut continuations = continuations(sql, pg_tokens).into_iter().peekable();
    tokens.retain(|token| {
        while continuations
            .next_if(|(_, to)| token.span.start >= *to)
            .is_some()
        {}
        continuations
            .peek()
            .is_none_or(|(from, to)| token.span.start < *from || token.span.end > *to)
    });
    Ok(tokens)
}

/// Where continued string constants continue: from the end of their first piece to the end of
/// their last.
fn continuations(sql: &str, pg_tokens: &[crate::shape::Token]) -> Vec<(Location, Location)> {
    let mut cursor = LocationCursor::new(sql);
    let mut ranges = Vec::new();
    let mut from = None;
    for token in pg_tokens {
        if let PgTokenKind::Str { continued, .. } = token.kind {
            match (from, continued) {
                (None, true) => from = Some(cursor.advance_to(token.end)),
                (Some(start), false) => {
                    ranges.push((start, cursor.advance_to(token.end)));
                    from = None;
                }
                _ => {}
            }
        }
    }
    ranges
}

/// What kind of token matters for comparing the two lexers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LexedAs {
    Literal,
    QuotedIdentifier,
    Comment,
}

/// Checks that sqlparser's tokenizer found every literal, quoted identifier and comment exactly
/// where PostgreSQL's lexer does; returns where they first disagree.
fn check_same_lexing(
    sql: &str,
    pg_tokens: &[crate::shape::Token],
    parser_tokens: &[TokenWithSpan],
) -> Result<(), Location> {
    let mut cursor = LocationCursor::new(sql);
    let mut ours = pg_tokens.iter().filter_map(|token| {
        let lexed_as = match token.kind {
            PgTokenKind::Str { .. } | PgTokenKind::Dollar | PgTokenKind::Number { .. } => {
                LexedAs::Literal
            }
            PgTokenKind::QuotedIdent | PgTokenKind::UnicodeIdent => LexedAs::QuotedIdentifier,
            PgTokenKind::Comment => LexedAs::Comment,
            _ => return None,
        };
        let start = cursor.advance_to(token.start);
        let end = cursor.advance_to(token.end);
        Some((lexed_as, start, end))
    });
    let mut theirs = parser_tokens.iter().filter_map(|token| {
        let lexed_as = match &token.token {
            Token::Word(word) if word.quote_style.is_some() => LexedAs::QuotedIdentifier,
            Token::Whitespace(
                Whitespace::SingleLineComment { .. } | Whitespace::MultiLineComment(_),
            ) => LexedAs::Comment,
            Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::TripleSingleQuotedString(_)
            | Token::TripleDoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::TripleSingleQuotedByteStringLiteral(_)
            | Token::TripleDoubleQuotedByteStringLiteral(_)
            | Token::SingleQuotedRawStringLiteral(_)
            | Token::DoubleQuotedRawStringLiteral(_)
            | Token::TripleSingleQuotedRawStringLiteral(_)
            | Token::TripleDoubleQuotedRawStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::QuoteDelimitedStringLiteral(_)
            | Token::NationalQuoteDelimitedStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_) => LexedAs::Literal,
            _ => return None,
        };
        Some((lexed_as, token.span.start, token.span.end))
    });
    loop {
        match (ours.next(), theirs.next()) {
            (None, None) => return Ok(()),
            (Some(a), Some(b)) if a == b => {}
            (Some((_, at, _)), _) | (None, Some((_, at, _))) => return Err(at),
        }
    }
}

/// Turns byte offsets, visited in increasing order, into sqlparser's locations (1-based line and
/// column, columns counted in characters, only `\n` starting a line).
struct LocationCursor<'a> {
    sql: &'a str,
    byte: usize,
    line: u64,
    column: u64,
}

impl<'a> LocationCursor<'a> {
    fn new(sql: &'a str) -> LocationCursor<'a> {
        LocationCursor {
            sql,
            byte: 0,
            line: 1,
            column: 1,
        }
    }

    fn advance_to(&mut self, byte: usize) -> Location {
        for ch in self.sql[self.byte..byte].chars() {
            if ch == '\n' {
                self.line += 1;
                self.column = 1;
            } else {
                self.column += 1;
            }
        }
        self.byte = byte;
        Location {
            line: self.line,
            column: self.column,
        }
    }
}

/// An upper bound, give or take the few levels each subquery adds, on how deep the parser's tree
/// for the text can be: at each level of brackets, the tokens since the last comma (an expression
/// chains its operators without commas; comma-separated items are siblings) plus the set
/// operations (`… UNION …` chains across commas), summed over the enclosing levels.
fn nesting_estimate(tokens: &[TokenWithSpan]) -> usize {
    /// Tokens since the last comma, and set operations, at one level of brackets.
    #[derive(Default)]
    struct Level {
        segment: usize,
        set_operations: usize,
    }
    impl Level {
        fn total(&self) -> usize {
            self.segment + self.set_operations
        }
    }
    let mut enclosing_levels: Vec<Level> = Vec::new();
    let mut enclosing = 0usize;
    let mut level = Level::default();
    let mut deepest = 0usize;
    for token in tokens {
        match &token.token {
            Token::Whitespace(_) => continue,
            Token::SemiColon if enclosing_levels.is_empty() => {
                level = Level::default();
                continue;
            }
            Token::Comma => {
                level.segment = 0;
                continue;
            }
            Token::RParen | Token::RBracket => {
                if let Some(parent) = enclosing_levels.pop() {
                    enclosing -= parent.total();
                    level = parent;
                }
            }
            _ => {}
        }
        match &token.token {
            Token::Word(word)
                if matches!(
                    word.keyword,
                    Keyword::UNION | Keyword::EXCEPT | Keyword::INTERSECT
                ) =>
            {
                level.set_operations += 1
            }
            _ => level.segment += 1,
        }
        deepest = deepest.max(enclosing + level.total());
        if matches!(token.token, Token::LParen | Token::LBracket) {
            enclosing += level.total();
            enclosing_levels.push(std::mem::take(&mut level));
        }
    }
    deepest
}

/// Parses the whole text, insisting that the parser read all of it.
fn parse_whole(
    dialect: &PostgreSqlDialect,
    tokens: Vec<TokenWithSpan>,
) -> Result<Vec<Statement>, ParserError> {
    let mut parser = Parser::new(dialect).with_tokens_with_locations(tokens);
    let statements = parser.parse_statements()?;
    let next = parser.peek_token_ref();
    if next.token != Token::EOF {
        return Err(ParserError::ParserError(format!(
            "Expected: end of statement, found: {}{}",
            next.token, next.span.start
        )));
    }
    Ok(statements)
}

/// What a visit of the statements found so far.
struct Scan {
    kind: StatementKind,
    note: Option<String>,
    tables: BTreeSet<String>,
    /// The WITH clauses around the node being visited, innermost last.
    ctes: Vec<CteScope>,
    /// How deep in queries the visit is.
    query_depth: usize,
    /// Inside how many `EXPLAIN`s without `ANALYZE`: what they hold is planned, not run.
    plan_only: usize,
    /// The next relation the visitor reports is the name of a function called in FROM.
    next_relation_is_function: bool,
    /// No statement seen so far does more than return rows (see `Classification::rows_only`).
    rows_only: bool,
}

/// The CTE names one WITH clause defines and which of them are visible at the moment.
struct CteScope {
    /// Each name with its position in the clause (a map: a clause may hold thousands).
    names: HashMap<String, usize>,
    count: usize,
    recursive: bool,
    /// The query depth of the query holding the WITH clause.
    depth: usize,
    /// How many CTE bodies the visit has entered.
    bodies_entered: usize,
    in_body: bool,
    /// How many of the names, from the first, are visible.
    visible: usize,
}

impl Scan {
    fn new() -> Scan {
        Scan {
            kind: StatementKind::Read,
            note: None,
            tables: BTreeSet::new(),
            ctes: Vec::new(),
            query_depth: 0,
            plan_only: 0,
            next_relation_is_function: false,
            rows_only: true,
        }
    }

    fn raise(&mut self, kind: StatementKind, note: Option<String>) {
        if self.plan_only > 0 {
            return;
        }
        if kind > self.kind {
            self.kind = kind;
            self.note = note;
        } else if kind == self.kind && self.note.is_none() {
            self.note = note;
        }
    }

    fn raise_noted(&mut self, kind: StatementKind, note: &str) {
        self.raise(kind, Some(note.to_owned()));
    }

    fn add_table(&mut self, name: &ObjectName) {
        match fold_name(name) {
            Some(folded) => {
                self.tables.insert(folded);
            }
            None => self.raise_noted(StatementKind::Unknown, NOT_A_NAME),
        }
    }

    fn statement(&mut self, statement: &Statement) {
        // The visitor only breaks when told to, and this one never is.
        let _ = statement.visit(self);
    }

    /// Classifies a text the parser could not read as a whole one statement at a time, falling
    /// back to the leading keywords for statements it cannot read at all. Returns the count.
    fn statement_by_statement(
        &mut self,
        dialect: &PostgreSqlDialect,
        tokens: Vec<TokenWithSpan>,
    ) -> usize {
        let mut count = 0;
        for piece in split_statements(tokens) {
            count += 1;
            match parse_whole(dialect, piece.clone()) {
                Ok(parsed) => parsed
                    .iter()
                    .for_each(|statement| self.statement(statement)),
                Err(error) => match recognize(&piece) {
                    Some(recognized) => {
                        self.raise(recognized.kind, recognized.note);
                        self.tables.extend(recognized.tables);
                    }
                    None => self.raise(StatementKind::Unknown, Some(error.to_string())),
                },
            }
        }
        count
    }

    fn function(&mut self, name: &ObjectName) {
        if let Some((kind, note)) = function_kind(name) {
            self.raise(kind, Some(note));
        }
    }

    fn is_visible_cte(&self, name: &ObjectName) -> bool {
        let [ObjectNamePart::Identifier(ident)] = name.0.as_slice() else {
            return false;
        };
        if !is_identifier(ident) {
            return false;
        }
        let folded = fold_ident(ident);
        self.ctes.iter().any(|scope| {
            scope
                .names
                .get(&folded)
                .is_some_and(|&position| position < scope.visible)
        })
    }

    /// The kind of one statement node by itself; what it contains is visited separately.
    fn own_kind(&mut self, statement: &Statement) {
        use StatementKind::*;
        let rows_only = match statement {
            Statement::Query(_)
            | Statement::ShowVariable { .. }
            | Statement::ShowVariables { .. } => true,
            Statement::Explain { .. } => is_plan_only(statement),
            _ => false,
        };
        self.rows_only &= rows_only;
        match statement {
            Statement::Query(_)
            | Statement::Close { .. }
            | Statement::Fetch { .. }
            | Statement::Discard { .. }
            | Statement::ShowVariable { .. }
            | Statement::ShowVariables { .. }
            | Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. }
            | Statement::Deallocate { .. }
            | Statement::LISTEN { .. }
            | Statement::UNLISTEN { .. }
            | Statement::Prepare { .. }
            | Statement::Explain { .. } => self.raise(Read, None),
            Statement::Declare { stmts } => {
                let all_cursors = stmts
                    .iter()
                    .all(|d| d.declare_type == Some(DeclareType::Cursor) && d.for_query.is_some());
                if all_cursors {
                    self.raise(Read, None);
                } else {
                    self.raise_noted(Unknown, "DECLARE of something other than a cursor");
                }
            }
            Statement::Set(set) => self.set(set),
            Statement::Reset(reset) => match &reset.reset {
                Reset::ALL => self.raise(Read, None),
                Reset::SessionAuthorization => {
                    self.raise_noted(Privilege, "RESET SESSION AUTHORIZATION")
                }
                Reset::ConfigurationParameter(name) => self.setting(name, "RESET"),
            },
            Statement::Insert(_) => self.raise(Write, None),
            Statement::Merge(_) => self.raise(Write, None),
            Statement::Update(update) => self.filtered("UPDATE", update.selection.as_ref()),
            Statement::Delete(delete) => self.filtered("DELETE", delete.selection.as_ref()),
            Statement::NOTIFY { .. } => self.raise(Write, None),
            Statement::Lock(_) => self.raise(Write, None),
            Statement::Copy {
                source, to, target, ..
            } => {
                if let CopySource::Table { table_name, .. } = source {
                    self.add_table(table_name);
                }
                match (to, target) {
                    (true, CopyTarget::Stdout) => self.raise(Export, None),
                    (true, CopyTarget::File { .. }) => {
                        self.raise_noted(Export, "COPY TO a file on the server")
                    }
                    (false, CopyTarget::Stdin) => self.raise(Write, None),
                    (false, CopyTarget::File { .. }) => {
                        self.raise_noted(Unknown, "COPY FROM a file on the server")
                    }
                    (_, CopyTarget::Program { .. }) => self.raise_noted(
                        Unknown,
                        "COPY with PROGRAM runs a shell command on the server",
                    ),
                    _ => self.raise_noted(Unknown, "COPY in a form PostgreSQL does not have"),
                }
            }
            Statement::Truncate(_) => self.raise_noted(Destructive, "TRUNCATE"),
            Statement::Drop {
                object_type, names, ..
            } => match object_type {
                ObjectType::Role | ObjectType::User => self.raise_noted(Privilege, "DROP ROLE"),
                _ => {
                    if matches!(
                        object_type,
                        ObjectType::Table
                            | ObjectType::View
                            | ObjectType::MaterializedView
                            | ObjectType::Index
                            | ObjectType::Sequence
                    ) {
                        names.iter().for_each(|name| self.add_table(name));
                    }
                    self.raise(Destructive, Some(format!("DROP {object_type}")));
                }
            },
            Statement::DropFunction(_)
            | Statement::DropDomain(_)
            | Statement::DropProcedure { .. }
            | Statement::DropExtension(_)
            | Statement::DropOperator(_)
            | Statement::DropOperatorFamily(_)
            | Statement::DropOperatorClass(_)
            | Statement::DropTrigger(_) => {
                if let Statement::DropTrigger(drop) = statement
                    && let Some(table) = &drop.table_name
                {
                    self.add_table(table);
                }
                self.raise_noted(Destructive, "DROP")
            }
            Statement::AlterTable(alter) => {
                for operation in &alter.operations {
                    self.alter_table_operation(operation);
                }
            }
            Statement::AlterSchema(alter) => {
                for operation in &alter.operations {
                    match operation {
                        AlterSchemaOperation::OwnerTo { .. } => {
                            self.raise_noted(Privilege, "OWNER TO")
                        }
                        _ => self.raise(Ddl, None),
                    }
                }
            }
            Statement::AlterFunction(alter) => match &alter.operation {
                AlterFunctionOperation::OwnerTo(_) => self.raise_noted(Privilege, "OWNER TO"),
                AlterFunctionOperation::Actions { actions, .. }
                    if actions.iter().any(|a| {
                        matches!(
                            a,
                            AlterFunctionAction::Security {
                                security: FunctionSecurity::Definer,
                                ..
                            }
                        )
                    }) =>
                {
                    self.raise_noted(Privilege, "SECURITY DEFINER function")
                }
                _ => self.raise(Ddl, None),
            },
            Statement::CreateFunction(create) => self.create_function(create),
            Statement::Analyze(_)
            | Statement::Vacuum(_)
            | Statement::CreateView(_)
            | Statement::CreateIndex(_)
            | Statement::CreateOperator(_)
            | Statement::CreateOperatorFamily(_)
            | Statement::CreateOperatorClass(_)
            | Statement::CreateTextSearch(_)
            | Statement::AlterIndex { .. }
            | Statement::AlterView { .. }
            | Statement::AlterType(_)
            | Statement::AlterCollation(_)
            | Statement::AlterOperator(_)
            | Statement::AlterOperatorFamily(_)
            | Statement::AlterOperatorClass(_)
            | Statement::AlterTextSearch(_)
            | Statement::CreateExtension(_)
            | Statement::CreateCollation(_)
            | Statement::Comment { .. }
            | Statement::CreateSchema { .. }
            | Statement::CreateDatabase { .. }
            | Statement::CreateTrigger(_)
            | Statement::CreateSequence { .. }
            | Statement::CreateDomain(_)
            | Statement::CreateType { .. } => {
                self.created_or_commented(statement);
                self.raise(Ddl, None);
            }
            Statement::CreateTable(create) => {
                if create.query.is_some() {
                    self.raise_noted(Ddl, "CREATE TABLE AS");
                } else {
                    self.raise(Ddl, None);
                }
            }
            Statement::Grant(grant) => {
                self.granted_tables(grant.objects.as_ref());
                self.raise_noted(Privilege, "GRANT");
            }
            Statement::Revoke(revoke) => {
                self.granted_tables(revoke.objects.as_ref());
                self.raise_noted(Privilege, "REVOKE");
            }
            Statement::CreateRole(_)
            | Statement::CreateUser(_)
            | Statement::AlterUser(_)
            | Statement::AlterRole { .. } => self.raise_noted(Privilege, "role change"),
            Statement::CreatePolicy(_) | Statement::AlterPolicy(_) | Statement::DropPolicy(_) => {
                self.raise_noted(Privilege, "row-level security policy")
            }
            Statement::Execute { .. } => self.raise_noted(
                Unknown,
                "EXECUTE runs a prepared statement whose text the gate does not see here",
            ),
            Statement::Call(_) => self.raise_noted(Unknown, "CALL runs a procedure"),
            Statement::Load { .. } | Statement::Install { .. } => {
                self.raise_noted(Unknown, "LOAD loads a shared library into the server")
            }
            Statement::CreateServer(_) => {
                self.raise_noted(Unknown, "a foreign server reaches other systems")
            }
            _ => self.raise_noted(Unknown, "a statement the gate does not classify"),
        }
    }

    /// UPDATE and DELETE: without a WHERE, or with one that refers to no column (`WHERE true`,
    /// `WHERE 1=1`), they touch every row.
    fn filtered(&mut self, verb: &str, selection: Option<&Expr>) {
        match selection {
            None => self.raise(
                StatementKind::Destructive,
                Some(format!("{verb} without WHERE")),
            ),
            Some(filter) if !refers_to_column(filter) => self.raise(
                StatementKind::Destructive,
                Some(format!("{verb} with a WHERE that refers to no column")),
            ),
            Some(_) => self.raise(StatementKind::Write, None),
        }
    }

    fn alter_table_operation(&mut self, operation: &AlterTableOperation) {
        use StatementKind::*;
        match operation {
            AlterTableOperation::DropColumn { .. } => {
                self.raise_noted(Destructive, "ALTER TABLE … DROP COLUMN")
            }
            AlterTableOperation::DropConstraint { .. }
            | AlterTableOperation::DropPrimaryKey { .. }
            | AlterTableOperation::DropForeignKey { .. } => {
                self.raise_noted(Destructive, "ALTER TABLE … DROP CONSTRAINT")
            }
            AlterTableOperation::DropPartitions { .. } | AlterTableOperation::DropIndex { .. } => {
                self.raise_noted(Destructive, "ALTER TABLE … DROP")
            }
            AlterTableOperation::OwnerTo { .. } => self.raise_noted(Privilege, "OWNER TO"),
            AlterTableOperation::DisableRowLevelSecurity
            | AlterTableOperation::EnableRowLevelSecurity
            | AlterTableOperation::ForceRowLevelSecurity
            | AlterTableOperation::NoForceRowLevelSecurity => {
                self.raise_noted(Privilege, "row-level security")
            }
            _ => self.raise(Ddl, None),
        }
    }

    fn create_function(&mut self, create: &CreateFunction) {
        for param in &create.set_params {
            self.setting(&param.name, "a function's SET");
        }
        if create.security == Some(FunctionSecurity::Definer) {
            self.raise_noted(StatementKind::Privilege, "SECURITY DEFINER function");
        } else {
            self.raise(StatementKind::Ddl, None);
        }
    }

    /// Relations named by DDL statements whose names the visitor does not report.
    fn created_or_commented(&mut self, statement: &Statement) {
        match statement {
            Statement::CreateSequence { name, .. } => self.add_table(name),
            Statement::CreateTrigger(trigger) => self.add_table(&trigger.table_name),
            Statement::AlterIndex { name, .. } => self.add_table(name),
            Statement::Comment {
                object_type,
                object_name,
                ..
            } => match object_type {
                CommentObject::Table
                | CommentObject::View
                | CommentObject::MaterializedView
                | CommentObject::Sequence
                | CommentObject::Index => self.add_table(object_name),
                CommentObject::Column => {
                    let parts = &object_name.0;
                    if parts.len() > 1 {
                        self.add_table(&ObjectName(parts[..parts.len() - 1].to_vec()));
                    }
                }
                _ => {}
            },
            Statement::Vacuum(vacuum) => {
                if let Some(name) = &vacuum.table_name {
                    self.add_table(name);
                }
            }
            _ => {}
        }
    }

    fn granted_tables(&mut self, objects: Option<&GrantObjects>) {
        if let Some(
            GrantObjects::Tables(names)
            | GrantObjects::Sequences(names)
            | GrantObjects::Views(names),
        ) = objects
        {
            names.iter().for_each(|name| self.add_table(name));
        }
    }

    fn set(&mut self, set: &Set) {
        use StatementKind::*;
        match set {
            Set::SingleAssignment { variable, .. } => self.setting(variable, "SET"),
            Set::ParenthesizedAssignments { variables, .. } => {
                variables.iter().for_each(|variable| self.setting(variable, "SET"))
            }
            Set::MultipleAssignments { assignments } => {
                assignments.iter().for_each(|assignment| self.setting(&assignment.name, "SET"))
            }
            Set::SetRole { .. } => self.raise_noted(Privilege, "SET ROLE"),
            Set::SetSessionAuthorization(_) => self.raise_noted(Privilege, "SET SESSION AUTHORIZATION"),
            Set::SetNames { .. } | Set::SetNamesDefault {} => self.raise_noted(
                Unknown,
                "SET NAMES changes the client encoding, and with it how the server reads later texts",
            ),
            Set::SetTimeZone { .. } | Set::SetTransaction { .. } => self.raise(Read, None),
            Set::SetSessionParam(_) => self.raise_noted(Unknown, "a SET PostgreSQL does not have"),
        }
    }

    fn setting(&mut self, name: &ObjectName, verb: &str) {
        let (kind, note) = match fold_name(name) {
            Some(folded) => setting_kind(&folded, verb),
            None => (StatementKind::Unknown, Some(NOT_A_NAME.to_owned())),
        };
        self.raise(kind, note);
    }

    fn query(&mut self, query: &Query) {
        use StatementKind::*;
        if !query.locks.is_empty() {
            self.raise_noted(Write, "SELECT … FOR UPDATE/SHARE locks rows");
        }
        if let Some(with) = &query.with {
            let modifies = with.cte_tables.iter().any(|cte| {
                matches!(
                    *cte.query.body,
                    SetExpr::Insert(_)
                        | SetExpr::Update(_)
                        | SetExpr::Delete(_)
                        | SetExpr::Merge(_)
                )
            });
            if modifies {
                self.raise_noted(Write, "data-modifying CTE");
            }
        }
        self.set_expr_tables(&query.body);
    }

    /// `TABLE t` inside a query names a relation the visitor does not report.
    fn set_expr_tables(&mut self, body: &SetExpr) {
        match body {
            SetExpr::Table(table) => {
                let name = match (&table.schema_name, &table.table_name) {
                    (Some(schema), Some(table)) => {
                        format!("{}.{}", fold_word(schema), fold_word(table))
                    }
                    (None, Some(table)) => fold_word(table),
                    _ => return,
                };
                self.tables.insert(name);
            }
            SetExpr::SetOperation { left, right, .. } => {
                self.set_expr_tables(left);
                self.set_expr_tables(right);
            }
            _ => {}
        }
    }

    fn select(&mut self, select: &Select) {
        if let Some(into) = &select.into {
            for target in &into.targets {
                match expr_as_name(target) {
                    Some(name) => {
                        self.tables.insert(name);
                    }
                    None => self.raise_noted(StatementKind::Unknown, NOT_A_NAME),
                }
            }
            self.raise_noted(StatementKind::Ddl, "SELECT INTO creates a table");
        }
    }

    fn enter_query(&mut self, query: &Query) {
        self.query_depth += 1;
        let depth = self.query_depth;
        if let Some(scope) = self.ctes.last_mut()
            && scope.depth + 1 == depth
            && scope.bodies_entered < scope.count
            && !scope.in_body
        {
            // The first queries one level down are the CTE bodies, in order: a body sees the
            // CTEs before it, or all of them under RECURSIVE.
            scope.visible = if scope.recursive {
                scope.count
            } else {
                scope.bodies_entered
            };
            scope.bodies_entered += 1;
            scope.in_body = true;
        }
        if let Some(with) = &query.with {
            let mut names = HashMap::new();
            for (position, cte) in with.cte_tables.iter().enumerate() {
                if is_identifier(&cte.alias.name) {
                    names.entry(fold_ident(&cte.alias.name)).or_insert(position);
                } else {
                    self.raise_noted(StatementKind::Unknown, NOT_A_NAME);
                }
            }
            self.ctes.push(CteScope {
                names,
                count: with.cte_tables.len(),
                recursive: with.recursive,
                depth,
                bodies_entered: 0,
                in_body: false,
                visible: 0,
            });
        }
    }

    fn leave_query(&mut self, query: &Query) {
        if query.with.is_some() {
            self.ctes.pop();
        }
        let depth = self.query_depth;
        if let Some(scope) = self.ctes.last_mut()
            && scope.depth + 1 == depth
            && scope.in_body
        {
            scope.in_body = false;
            if scope.bodies_entered == scope.count {
                // Past the last body: the main query sees every CTE.
                scope.visible = scope.count;
            }
        }
        self.query_depth -= 1;
    }
}

impl Visitor for Scan {
    type Break = ();

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<()> {
        self.own_kind(statement);
        if is_plan_only(statement) {
            self.plan_only += 1;
        }
        ControlFlow::Continue(())
    }

    fn post_visit_statement(&mut self, statement: &Statement) -> ControlFlow<()> {
        if is_plan_only(statement) {
            self.plan_only -= 1;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        self.enter_query(query);
        self.query(query);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        self.leave_query(query);
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        self.select(select);
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        match factor {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            } => {
                self.function(name);
                self.next_relation_is_function = true;
            }
            TableFactor::Function { name, .. } => self.function(name),
            TableFactor::Pivot { .. }
            | TableFactor::Unpivot { .. }
            | TableFactor::UnpivotExpr { .. }
            | TableFactor::MatchRecognize { .. }
            | TableFactor::OpenJsonTable { .. }
            | TableFactor::SemanticView { .. } => self.raise_noted(
                StatementKind::Unknown,
                "a FROM item PostgreSQL does not have",
            ),
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        if std::mem::take(&mut self.next_relation_is_function) || self.is_visible_cte(relation) {
            return ControlFlow::Continue(());
        }
        self.add_table(relation);
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        match expr {
            Expr::Function(function) => self.function(&function.name),
            // `t.f` can call f(t) in PostgreSQL (attribute notation): a sensitive name counts.
            Expr::CompoundIdentifier(parts) => {
                if let Some((kind, note)) = parts
                    .last()
                    .filter(|last| is_identifier(last))
                    .and_then(|last| sensitive_function_kind(&last.value))
                {
                    self.raise(kind, Some(note));
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// SET or RESET of one setting: most are ordinary, a few change who the session acts as, and a
/// few change how the server reads every later text, which the gate's reading relies on.
fn setting_kind(name: &str, verb: &str) -> (StatementKind, Option<String>) {
    use StatementKind::*;
    // PostgreSQL looks settings up case-insensitively, quoted or not.
    let name = name.to_ascii_lowercase();
    match name.as_str() {
        "role" | "session_authorization" => (Privilege, Some(format!("{verb} {name}"))),
        "session_replication_role" => (
            Privilege,
            Some(format!(
                "{verb} session_replication_role, which can turn triggers and foreign keys off"
            )),
        ),
        "standard_conforming_strings"
        | "backslash_quote"
        | "escape_string_warning"
        | "client_encoding" => (
            Unknown,
            Some(format!(
                "{verb} {name} changes how the server reads later texts"
            )),
        ),
        _ => (Read, None),
    }
}

/// `EXPLAIN` without `ANALYZE` plans its statement without running it. Only the keywords FALSE
/// and OFF count as turning ANALYZE off: any other argument (`ANALYZE 0`) is taken as on, since a
/// literal's value must not decide the kind.
fn is_plan_only(statement: &Statement) -> bool {
    let Statement::Explain {
        analyze, options, ..
    } = statement
    else {
        return false;
    };
    // An option name or argument read from a string literal counts as ANALYZE on.
    let analyze_option = options.iter().flatten().any(|option| {
        !is_identifier(&option.name)
            || option.name.value.eq_ignore_ascii_case("analyze") && !turns_off(option.arg.as_ref())
    });
    !analyze && !analyze_option
}

fn turns_off(arg: Option<&Expr>) -> bool {
    match arg {
        Some(Expr::Value(value)) => value.value == Value::Boolean(false),
        Some(Expr::Identifier(word)) if is_identifier(word) => {
            word.value.eq_ignore_ascii_case("off") || word.value.eq_ignore_ascii_case("false")
        }
        _ => false,
    }
}

/// Whether an expression refers to any column: a filter that does not is true or false for every
/// row alike.
fn refers_to_column(expr: &Expr) -> bool {
    let found = sqlparser::ast::visit_expressions(expr, |e| match e {
        Expr::Identifier(ident) if !is_niladic_function(ident) => ControlFlow::Break(()),
        Expr::CompoundIdentifier(_) | Expr::CompoundFieldAccess { .. } => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    });
    found.is_break()
}

/// SQL's functions called without parentheses, which the parser may read as identifiers.
fn is_niladic_function(ident: &Ident) -> bool {
    ident.quote_style.is_none()
        && [
            "current_catalog",
            "current_date",
            "current_role",
            "current_schema",
            "current_time",
            "current_timestamp",
            "current_user",
            "localtime",
            "localtimestamp",
            "session_user",
            "system_user",
            "user",
        ]
        .iter()
        .any(|name| ident.value.eq_ignore_ascii_case(name))
}

fn expr_as_name(expr: &Expr) -> Option<String> {
    let idents = match expr {
        Expr::Identifier(ident) => std::slice::from_ref(ident),
        Expr::CompoundIdentifier(idents) => idents.as_slice(),
        _ => return None,
    };
    idents
        .iter()
        .all(is_identifier)
        .then(|| idents.iter().map(fold_ident).collect::<Vec<_>>().join("."))
}

/// What the gate says when sqlparser read something other than an identifier as a name.
const NOT_A_NAME: &str = "a string or expression where PostgreSQL expects a name";

/// Whether sqlparser read this name part from an identifier, plain or double-quoted, rather than
/// from a string literal (which it accepts as a name in some places where PostgreSQL does not).
fn is_identifier(ident: &Ident) -> bool {
    matches!(ident.quote_style, None | Some('"'))
}

/// An identifier as PostgreSQL stores it: unquoted ones lowercased (ASCII letters only, as
/// PostgreSQL does for UTF-8), quoted ones as written; both cut to 63 bytes.
fn fold_ident(ident: &Ident) -> String {
    let mut folded = if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_ascii_lowercase()
    };
    truncate_identifier(&mut folded);
    folded
}

fn fold_word(word: &str) -> String {
    let mut folded = word.to_ascii_lowercase();
    truncate_identifier(&mut folded);
    folded
}

fn truncate_identifier(name: &mut String) {
    if name.len() > MAX_IDENTIFIER_LEN {
        let mut cut = MAX_IDENTIFIER_LEN;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
    }
}

/// A qualified name folded part by part and joined with '.'; None for names that are not plain
/// identifiers: other dialects' `IDENTIFIER(…)`, or a string literal sqlparser took for a name
/// (`DROP TABLE t, 'x'`), whose value must not decide anything.
fn fold_name(name: &ObjectName) -> Option<String> {
    let mut folded = String::new();
    for (index, part) in name.0.iter().enumerate() {
        let ObjectNamePart::Identifier(ident) = part else {
            return None;
        };
        if !is_identifier(ident) {
            return None;
        }
        if index > 0 {
            folded.push('.');
        }
        folded.push_str(&fold_ident(ident));
    }
    Some(folded)
}

/// The kind a call of the named function implies, with a note; None for known read-only
/// built-ins. Sensitive names match whatever the case, quoting or schema (erring towards caution);
/// read-only names match only as PostgreSQL would resolve them to the built-in: folded exactly,
/// unqualified or in `pg_catalog`.
fn function_kind(name: &ObjectName) -> Option<(StatementKind, String)> {
    let parts: Option<Vec<&Ident>> = name
        .0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) if is_identifier(ident) => Some(ident),
            _ => None,
        })
        .collect();
    let Some(parts) = parts else {
        return Some((StatementKind::Unknown, NOT_A_NAME.to_owned()));
    };
    let Some((last, qualifiers)) = parts.split_last() else {
        return Some((
            StatementKind::Unknown,
            "calls a function without a name".to_owned(),
        ));
    };
    if let Some(sensitive) = sensitive_function_kind(&last.value) {
        return Some(sensitive);
    }
    let folded = fold_ident(last);
    let in_catalog = match qualifiers {
        [] => true,
        [.., schema] => fold_ident(schema) == "pg_catalog",
    };
    if in_catalog && READ_ONLY.binary_search(&folded.as_str()).is_ok() {
        return None;
    }
    let shown = fold_name(name).unwrap_or(folded);
    Some((
        StatementKind::Write,
        format!("calls {shown}, which is not a known read-only function"),
    ))
}

/// The kind a call of a function with this name implies when the name is on one of the sensitive
/// lists, whatever its case.
fn sensitive_function_kind(name: &str) -> Option<(StatementKind, String)> {
    let lowered = name.to_ascii_lowercase();
    let base = lowered.as_str();
    if REACHES_OUTSIDE.contains(&base) || base.starts_with("dblink") || base.starts_with("pg_ls_") {
        return Some((
            StatementKind::Unknown,
            format!("calls {base}, which reaches files, programs, other servers or runs SQL text"),
        ));
    }
    if PRIVILEGED.contains(&base)
        || base.contains("replication_slot")
        || base.starts_with("pg_logical_slot_")
        || base.starts_with("pg_replication_origin_")
    {
        return Some((StatementKind::Privilege, format!("calls {base}")));
    }
    if WRITES.contains(&base) {
        return Some((StatementKind::Write, format!("calls {base}")));
    }
    None
}

/// Functions that read or write server files, run programs, reach other servers or run SQL given
/// as text (which the gate cannot see).
const REACHES_OUTSIDE: &[&str] = &[
    "cursor_to_xml",
    "cursor_to_xmlschema",
    "lo_export",
    "lo_import",
    "pg_file_read",
    "pg_file_rename",
    "pg_file_sync",
    "pg_file_unlink",
    "pg_file_write",
    "pg_logdir_ls",
    "pg_read_binary_file",
    "pg_read_file",
    "pg_stat_file",
    "query_to_xml",
    "query_to_xml_and_xmlschema",
    "query_to_xmlschema",
    "ts_rewrite",
    "ts_stat",
];

/// Functions that change who the session is, stop other sessions, or act on the server as a whole.
const PRIVILEGED: &[&str] = &[
    "pg_backup_start",
    "pg_backup_stop",
    "pg_cancel_backend",
    "pg_create_restore_point",
    "pg_log_backend_memory_contexts",
    "pg_logical_emit_message",
    "pg_promote",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_switch_wal",
    "pg_switch_xlog",
    "pg_terminate_backend",
    "pg_wal_replay_pause",
    "pg_wal_replay_resume",
    "set_config",
];

/// Functions known to change data.
const WRITES: &[&str] = &[
    "lo_creat",
    "lo_create",
    "lo_from_bytea",
    "lo_put",
    "lo_truncate",
    "lo_unlink",
    "lowrite",
    "nextval",
    "pg_notify",
    "setval",
];

/// Built-in functions without side effects, sorted (a test checks). Anything else may change
/// something, so calling it makes a text a write.
const READ_ONLY: &[&str] = &[
    "abbrev",
    "abs",
    "acos",
    "acosd",
    "acosh",
    "age",
    "any_value",
    "array_agg",
    "array_append",
    "array_cat",
    "array_dims",
    "array_fill",
    "array_length",
    "array_lower",
    "array_ndims",
    "array_position",
    "array_positions",
    "array_prepend",
    "array_remove",
    "array_replace",
    "array_reverse",
    "array_sample",
    "array_shuffle",
    "array_sort",
    "array_to_json",
    "array_to_string",
    "array_to_tsvector",
    "array_upper",
    "ascii",
    "asin",
    "asind",
    "asinh",
    "atan",
    "atan2",
    "atan2d",
    "atand",
    "atanh",
    "avg",
    "bit_and",
    "bit_count",
    "bit_length",
    "bit_or",
    "bit_xor",
    "bool_and",
    "bool_or",
    "broadcast",
    "btrim",
    "cardinality",
    "cbrt",
    "ceil",
    "ceiling",
    "char_length",
    "character_length",
    "chr",
    "clock_timestamp",
    "coalesce",
    "col_description",
    "concat",
    "concat_ws",
    "convert",
    "convert_from",
    "convert_to",
    "corr",
    "cos",
    "cosd",
    "cosh",
    "cot",
    "cotd",
    "count",
    "covar_pop",
    "covar_samp",
    "crc32",
    "crc32c",
    "cume_dist",
    "current_catalog",
    "current_database",
    "current_date",
    "current_query",
    "current_role",
    "current_schema",
    "current_schemas",
    "current_setting",
    "current_time",
    "current_timestamp",
    "current_user",
    "currval",
    "date",
    "date_add",
    "date_bin",
    "date_part",
    "date_subtract",
    "date_trunc",
    "daterange",
    "decode",
    "degrees",
    "dense_rank",
    "div",
    "encode",
    "every",
    "exp",
    "extract",
    "factorial",
    "family",
    "first_value",
    "float4",
    "float8",
    "floor",
    "format",
    "format_type",
    "gcd",
    "gen_random_uuid",
    "generate_series",
    "generate_subscripts",
    "get_bit",
    "get_byte",
    "greatest",
    "grouping",
    "has_any_column_privilege",
    "has_column_privilege",
    "has_database_privilege",
    "has_foreign_data_wrapper_privilege",
    "has_function_privilege",
    "has_language_privilege",
    "has_parameter_privilege",
    "has_schema_privilege",
    "has_sequence_privilege",
    "has_server_privilege",
    "has_table_privilege",
    "has_tablespace_privilege",
    "has_type_privilege",
    "host",
    "hostmask",
    "inet_client_addr",
    "inet_client_port",
    "inet_server_addr",
    "inet_server_port",
    "initcap",
    "int2",
    "int4",
    "int4range",
    "int8",
    "int8range",
    "isempty",
    "isfinite",
    "json_agg",
    "json_array",
    "json_array_elements",
    "json_array_elements_text",
    "json_array_length",
    "json_arrayagg",
    "json_build_array",
    "json_build_object",
    "json_each",
    "json_each_text",
    "json_exists",
    "json_extract_path",
    "json_extract_path_text",
    "json_object",
    "json_object_agg",
    "json_object_keys",
    "json_objectagg",
    "json_populate_record",
    "json_populate_recordset",
    "json_query",
    "json_scalar",
    "json_serialize",
    "json_strip_nulls",
    "json_to_record",
    "json_to_recordset",
    "json_typeof",
    "json_value",
    "jsonb_agg",
    "jsonb_array_elements",
    "jsonb_array_elements_text",
    "jsonb_array_length",
    "jsonb_build_array",
    "jsonb_build_object",
    "jsonb_each",
    "jsonb_each_text",
    "jsonb_extract_path",
    "jsonb_extract_path_text",
    "jsonb_insert",
    "jsonb_object",
    "jsonb_object_agg",
    "jsonb_object_keys",
    "jsonb_path_exists",
    "jsonb_path_match",
    "jsonb_path_query",
    "jsonb_path_query_array",
    "jsonb_path_query_first",
    "jsonb_populate_record",
    "jsonb_populate_recordset",
    "jsonb_pretty",
    "jsonb_set",
    "jsonb_set_lax",
    "jsonb_strip_nulls",
    "jsonb_to_record",
    "jsonb_to_recordset",
    "jsonb_typeof",
    "justify_days",
    "justify_hours",
    "justify_interval",
    "lag",
    "last_value",
    "lastval",
    "lcm",
    "lead",
    "least",
    "left",
    "length",
    "ln",
    "localtime",
    "localtimestamp",
    "log",
    "log10",
    "lower",
    "lower_inc",
    "lower_inf",
    "lpad",
    "ltrim",
    "make_date",
    "make_interval",
    "make_time",
    "make_timestamp",
    "make_timestamptz",
    "masklen",
    "max",
    "md5",
    "min",
    "min_scale",
    "mod",
    "mode",
    "netmask",
    "network",
    "normalize",
    "now",
    "nth_value",
    "ntile",
    "nullif",
    "num_nonnulls",
    "num_nulls",
    "numeric",
    "numrange",
    "obj_description",
    "octet_length",
    "overlay",
    "parse_ident",
    "percent_rank",
    "percentile_cont",
    "percentile_disc",
    "pg_backend_pid",
    "pg_blocking_pids",
    "pg_client_encoding",
    "pg_column_size",
    "pg_conf_load_time",
    "pg_current_wal_lsn",
    "pg_current_xact_id",
    "pg_database_size",
    "pg_describe_object",
    "pg_encoding_to_char",
    "pg_function_is_visible",
    "pg_get_constraintdef",
    "pg_get_expr",
    "pg_get_function_arguments",
    "pg_get_function_identity_arguments",
    "pg_get_function_result",
    "pg_get_functiondef",
    "pg_get_indexdef",
    "pg_get_keywords",
    "pg_get_ruledef",
    "pg_get_serial_sequence",
    "pg_get_triggerdef",
    "pg_get_userbyid",
    "pg_get_viewdef",
    "pg_has_role",
    "pg_identify_object",
    "pg_indexes_size",
    "pg_input_error_info",
    "pg_input_is_valid",
    "pg_is_in_recovery",
    "pg_is_other_temp_schema",
    "pg_jit_available",
    "pg_last_wal_receive_lsn",
    "pg_last_wal_replay_lsn",
    "pg_last_xact_replay_timestamp",
    "pg_listening_channels",
    "pg_my_temp_schema",
    "pg_notification_queue_usage",
    "pg_postmaster_start_time",
    "pg_relation_filenode",
    "pg_relation_size",
    "pg_safe_snapshot_blocking_pids",
    "pg_sequence_last_value",
    "pg_size_bytes",
    "pg_size_pretty",
    "pg_table_is_visible",
    "pg_table_size",
    "pg_tablespace_location",
    "pg_total_relation_size",
    "pg_trigger_depth",
    "pg_type_is_visible",
    "pg_typeof",
    "pg_wal_lsn_diff",
    "phraseto_tsquery",
    "pi",
    "plainto_tsquery",
    "position",
    "pow",
    "power",
    "quote_ident",
    "quote_literal",
    "quote_nullable",
    "radians",
    "random",
    "random_normal",
    "range_agg",
    "range_intersect_agg",
    "range_merge",
    "rank",
    "regexp_count",
    "regexp_instr",
    "regexp_like",
    "regexp_match",
    "regexp_matches",
    "regexp_replace",
    "regexp_split_to_array",
    "regexp_split_to_table",
    "regexp_substr",
    "regr_avgx",
    "regr_avgy",
    "regr_count",
    "regr_intercept",
    "regr_r2",
    "regr_slope",
    "regr_sxx",
    "regr_sxy",
    "regr_syy",
    "repeat",
    "replace",
    "reverse",
    "right",
    "round",
    "row",
    "row_number",
    "row_security_active",
    "row_to_json",
    "rpad",
    "rtrim",
    "scale",
    "session_user",
    "set_bit",
    "set_byte",
    "set_masklen",
    "setweight",
    "sha224",
    "sha256",
    "sha384",
    "sha512",
    "shobj_description",
    "sign",
    "sin",
    "sind",
    "sinh",
    "split_part",
    "sqrt",
    "starts_with",
    "statement_timestamp",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "string_agg",
    "string_to_array",
    "string_to_table",
    "strip",
    "strpos",
    "substr",
    "substring",
    "sum",
    "system_user",
    "tan",
    "tand",
    "tanh",
    "text",
    "timeofday",
    "timezone",
    "to_ascii",
    "to_char",
    "to_date",
    "to_hex",
    "to_json",
    "to_jsonb",
    "to_number",
    "to_regclass",
    "to_regnamespace",
    "to_regproc",
    "to_regprocedure",
    "to_regrole",
    "to_regtype",
    "to_timestamp",
    "to_tsquery",
    "to_tsvector",
    "transaction_timestamp",
    "translate",
    "trim",
    "trim_array",
    "trim_scale",
    "trunc",
    "ts_headline",
    "ts_rank",
    "ts_rank_cd",
    "tsrange",
    "tstzrange",
    "tsvector_to_array",
    "txid_current",
    "unistr",
    "unnest",
    "upper",
    "upper_inc",
    "upper_inf",
    "user",
    "var_pop",
    "var_samp",
    "variance",
    "version",
    "websearch_to_tsquery",
    "width_bucket",
    "xml_is_well_formed",
    "xml_is_well_formed_content",
    "xml_is_well_formed_document",
    "xmlagg",
    "xmlcomment",
    "xmlconcat",
    "xmlelement",
    "xmlexists",
    "xmlforest",
    "xmlparse",
    "xmlpi",
    "xmlroot",
    "xmlserialize",
    "xmltext",
    "xpath",
    "xpath_exists",
];

/// Splits the parser's tokens into statements at semicolons outside parentheses, dropping empty
/// statements.
fn split_statements(tokens: Vec<TokenWithSpan>) -> Vec<Vec<TokenWithSpan>> {
    let mut pieces = Vec::new();
    let mut piece = Vec::new();
    let mut depth = 0usize;
    let mut significant = false;
    for token in tokens {
        match token.token {
            Token::SemiColon if depth == 0 => {
                if significant {
                    pieces.push(std::mem::take(&mut piece));
                } else {
                    piece.clear();
                }
                significant = false;
                continue;
            }
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            Token::EOF | Token::Whitespace(_) => {}
            _ => significant = true,
        }
        piece.push(token);
    }
    if significant {
        pieces.push(piece);
    }
    pieces
}

/// A statement recognised by its leading keywords.
struct Recognized {
    kind: StatementKind,
    note: Option<String>,
    tables: Vec<String>,
}

/// Recognises, by its leading keywords, one statement sqlparser cannot parse — only statements
/// whose PostgreSQL grammar has no place for an expression (so no function call or subquery can
/// hide in them) or whose kind is the most sensitive anyway. The keywords decide which grammar
/// rule PostgreSQL uses, and a text that does not fit that rule is a syntax error that runs nothing.
fn recognize(piece: &[TokenWithSpan]) -> Option<Recognized> {
    use StatementKind::*;
    let tokens: Vec<&Token> = piece
        .iter()
        .map(|t| &t.token)
        .filter(|t| !matches!(t, Token::Whitespace(_) | Token::EOF))
        .collect();
    // A function body in BEGIN ATOMIC … END holds semicolons, so it was split wrongly.
    if tokens.iter().any(|t| keyword(t) == Some("ATOMIC")) {
        return None;
    }
    let starts = |expected: &[&str]| {
        expected.len() <= tokens.len()
            && expected
                .iter()
                .zip(&tokens)
                .all(|(e, t)| keyword(t) == Some(*e))
    };
    let recognized = |kind, note: Option<&str>, tables| {
        Some(Recognized {
            kind,
            note: note.map(str::to_owned),
            tables,
        })
    };
    if starts(&["TABLE"]) {
        let (name, rest) = relation_name(&tokens[1..], &["ONLY"])?;
        return match rest {
            [] | [Token::Mul] => recognized(Read, None, vec![name]),
            _ => None,
        };
    }
    if starts(&["MOVE"]) {
        return recognized(Read, None, Vec::new());
    }
    if starts(&["PREPARE", "TRANSACTION"]) {
        return recognized(Read, None, Vec::new());
    }
    if starts(&["COMMIT", "PREPARED"]) || starts(&["ROLLBACK", "PREPARED"]) {
        return recognized(
            Write,
            Some("finishes a prepared transaction the gate may not have seen"),
            Vec::new(),
        );
    }
    if starts(&["VACUUM"]) || starts(&["ANALYZE"]) || starts(&["ANALYSE"]) {
        let rest = skip_options(&tokens[1..]);
        let rest = skip_words(rest, &["FULL", "FREEZE", "VERBOSE", "ANALYZE", "ANALYSE"]);
        return recognized(Ddl, None, relation_list(rest));
    }
    if starts(&["SET"]) || starts(&["RESET"]) {
        return recognize_setting(&tokens);
    }
    if starts(&["GRANT"]) || starts(&["REVOKE"]) {
        return recognized(Privilege, Some("GRANT or REVOKE"), Vec::new());
    }
    if starts(&["ALTER", "EXTENSION"]) {
        return recognized(Ddl, None, Vec::new());
    }
    if starts(&["CHECKPOINT"]) {
        return recognized(Ddl, None, Vec::new());
    }
    if starts(&["CLUSTER"]) {
        let rest = skip_options(&tokens[1..]);
        let rest = skip_words(rest, &["VERBOSE"]);
        let tables = match relation_name(rest, &[]) {
            // The old form names the index first: CLUSTER index ON table.
            Some((_, [on, after @ ..])) if keyword(on) == Some("ON") => relation_name(after, &[])
                .map(|(name, _)| vec![name])
                .unwrap_or_default(),
            Some((name, _)) => vec![name],
            None => Vec::new(),
        };
        return recognized(Ddl, None, tables);
    }
    if starts(&["REINDEX"]) {
        let rest = skip_options(&tokens[1..]);
        let tables = match rest {
            [target, after @ ..] if matches!(keyword(target), Some("TABLE" | "INDEX")) => {
                relation_name(skip_words(after, &["CONCURRENTLY"]), &[])
                    .map(|(name, _)| vec![name])
                    .unwrap_or_default()
            }
            _ => Vec::new(),
        };
        return recognized(Ddl, None, tables);
    }
    if starts(&["REFRESH", "MATERIALIZED", "VIEW"]) {
        let tables = relation_name(skip_words(&tokens[3..], &["CONCURRENTLY"]), &[])
            .map(|(name, _)| vec![name])
            .unwrap_or_default();
        return recognized(Ddl, None, tables);
    }
    if starts(&["ALTER", "SYSTEM"]) {
        return recognized(
            Privilege,
            Some("ALTER SYSTEM changes the server's configuration"),
            Vec::new(),
        );
    }
    if starts(&["ALTER", "DEFAULT", "PRIVILEGES"]) {
        return recognized(Privilege, Some("ALTER DEFAULT PRIVILEGES"), Vec::new());
    }
    if starts(&["REASSIGN", "OWNED"]) || starts(&["DROP", "OWNED"]) {
        return recognized(
            Privilege,
            Some("changes or drops what a role owns"),
            Vec::new(),
        );
    }
    if starts(&["SECURITY", "LABEL"]) {
        return recognized(Privilege, Some("SECURITY LABEL"), Vec::new());
    }
    if ["CREATE", "ALTER", "DROP"]
        .iter()
        .any(|verb| starts(&[verb, "GROUP"]))
    {
        return recognized(Privilege, Some("role change"), Vec::new());
    }
    if starts(&["DO"]) {
        return recognized(Unknown, Some("DO runs an anonymous code block"), Vec::new());
    }
    let reaches_out = starts(&["IMPORT", "FOREIGN", "SCHEMA"])
        || ["CREATE", "ALTER"].iter().any(|verb| {
            starts(&[verb, "USER", "MAPPING"])
                || starts(&[verb, "FOREIGN", "DATA", "WRAPPER"])
                || starts(&[verb, "SERVER"])
                || starts(&[verb, "SUBSCRIPTION"])
        });
    if reaches_out {
        return recognized(
            Unknown,
            Some("foreign servers and subscriptions reach other systems"),
            Vec::new(),
        );
    }
    if ["CREATE", "ALTER", "DROP"]
        .iter()
        .any(|verb| starts(&[verb, "USER"]) || starts(&[verb, "ROLE"]))
    {
        return recognized(Privilege, Some("role change"), Vec::new());
    }
    if starts(&["DROP"]) {
        // DROP's grammar has names and signatures only; roles were handled above and by the parser.
        return recognized(Destructive, Some("DROP"), Vec::new());
    }
    if starts(&["ALTER"]) {
        return recognize_alter(&tokens);
    }
    None
}

/// SET and RESET forms sqlparser cannot parse (`SET role TO admin`): their values are constants or
/// words, never expressions.
fn recognize_setting(tokens: &[&Token]) -> Option<Recognized> {
    use StatementKind::*;
    let verb = keyword(tokens.first()?)?;
    let rest = skip_words(&tokens[1..], &["SESSION", "LOCAL"]);
    let recognized = |kind, note: Option<String>| {
        Some(Recognized {
            kind,
            note,
            tables: Vec::new(),
        })
    };
    match rest.first().copied().and_then(keyword) {
        Some("ROLE" | "AUTHORIZATION") => {
            return recognized(
                Privilege,
                Some(format!("{verb} ROLE or SESSION AUTHORIZATION")),
            );
        }
        Some("NAMES") => {
            return recognized(
                Unknown,
                Some(format!("{verb} NAMES changes the client encoding")),
            );
        }
        Some("TRANSACTION" | "CONSTRAINTS" | "ALL") => return recognized(Read, None),
        _ => {}
    }
    let (name, after) = relation_name(rest, &[])?;
    let value_follows = matches!(after, [Token::Eq, ..])
        || matches!(after.first().copied().and_then(keyword), Some("TO"));
    if verb == "SET" && !value_follows || verb == "RESET" && !after.is_empty() {
        return None;
    }
    let (kind, note) = setting_kind(&name, verb);
    recognized(kind, note)
}

/// A comma-separated list of relations, each perhaps followed by a parenthesised column list.
fn relation_list<'t>(mut tokens: &'t [&'t Token]) -> Vec<String> {
    let mut names = Vec::new();
    while let Some((name, after)) = relation_name(tokens, &[]) {
        names.push(name);
        let after = match after {
            [Token::LParen, ..] => skip_options(after),
            _ => after,
        };
        match after {
            [Token::Comma, next @ ..] => tokens = next,
            _ => break,
        }
    }
    names
}

/// ALTER statements sqlparser cannot parse: ownership changes of any object, and the plain forms
/// of ALTER SEQUENCE / VIEW / MATERIALIZED VIEW.
fn recognize_alter(tokens: &[&Token]) -> Option<Recognized> {
    use StatementKind::*;
    // ALTER TABLE, INDEX, SEQUENCE, VIEW, MATERIALIZED VIEW and FOREIGN TABLE share a grammar
    // whose subcommands take expressions (SET DEFAULT …); with nothing but words, numbers and
    // signs none of them can call a function.
    let table_like = match tokens.get(1).copied().and_then(keyword) {
        Some("TABLE" | "INDEX" | "SEQUENCE" | "VIEW") => Some(2),
        Some("MATERIALIZED" | "FOREIGN")
            if tokens
                .get(2)
                .copied()
                .and_then(keyword)
                .is_some_and(|w| w == "VIEW" || w == "TABLE") =>
        {
            Some(3)
        }
        _ => None,
    };
    let inert = tokens.iter().all(|t| {
        matches!(
            t,
            Token::Word(_)
                | Token::Period
                | Token::Comma
                | Token::Number(..)
                | Token::Minus
                | Token::Plus
        )
    });
    let owner_to = matches!(
        tokens,
        [.., owner, to, Token::Word(_)] if keyword(owner) == Some("OWNER") && keyword(to) == Some("TO")
    );
    let name = |from: usize| {
        relation_name(skip_words(&tokens[from..], &["IF", "EXISTS"]), &[])
            .map(|(name, _)| vec![name])
            .unwrap_or_default()
    };
    match table_like {
        Some(from) if inert && owner_to => Some(Recognized {
            kind: Privilege,
            note: Some("OWNER TO".to_owned()),
            tables: name(from),
        }),
        Some(from)
            if inert
                && matches!(
                    tokens.get(1).copied().and_then(keyword),
                    Some("SEQUENCE" | "VIEW" | "MATERIALIZED")
                ) =>
        {
            Some(Recognized {
                kind: Ddl,
                note: None,
                tables: name(from),
            })
        }
        Some(_) => None,
        // Other objects change owner through a rule of its own with names and signatures only.
        None if owner_to => Some(Recognized {
            kind: Privilege,
            note: Some("OWNER TO".to_owned()),
            tables: Vec::new(),
        }),
        None => None,
    }
}

/// An unquoted word, uppercased for comparison.
fn keyword(token: &Token) -> Option<&str> {
    match token {
        Token::Word(word) if word.quote_style.is_none() => Some(upper_ascii(&word.value)),
        _ => None,
    }
}

/// The words the recognizer compares against are all ASCII uppercase; anything not ASCII cannot
/// match and comes back unchanged.
fn upper_ascii(value: &str) -> &str {
    const KEYWORDS: &[&str] = &[
        "ALTER",
        "ATOMIC",
        "CHECKPOINT",
        "CLUSTER",
        "COMMIT",
        "CONCURRENTLY",
        "CREATE",
        "DATA",
        "DEFAULT",
        "DO",
        "DROP",
        "EXISTS",
        "FOREIGN",
        "GROUP",
        "IF",
        "IMPORT",
        "INDEX",
        "LABEL",
        "MAPPING",
        "MATERIALIZED",
        "MOVE",
        "ON",
        "ONLY",
        "OWNED",
        "OWNER",
        "PREPARE",
        "PREPARED",
        "PRIVILEGES",
        "REASSIGN",
        "REFRESH",
        "REINDEX",
        "ROLLBACK",
        "SCHEMA",
        "SECURITY",
        "SEQUENCE",
        "SERVER",
        "SUBSCRIPTION",
        "SYSTEM",
        "TABLE",
        "TO",
        "TRANSACTION",
        "USER",
        "VERBOSE",
        "VIEW",
        "WRAPPER",
    ];
    KEYWORDS
        .iter()
        .find(|k| k.eq_ignore_ascii_case(value))
        .copied()
        .unwrap_or(value)
}

/// Skips a parenthesised option list such as `(VERBOSE)`.
fn skip_options<'t>(tokens: &'t [&'t Token]) -> &'t [&'t Token] {
    match tokens {
        [Token::LParen, rest @ ..] => rest
            .iter()
            .position(|t| matches!(t, Token::RParen))
            .map_or(&[], |close| &rest[close + 1..]),
        _ => tokens,
    }
}

fn skip_words<'t>(mut tokens: &'t [&'t Token], words: &[&str]) -> &'t [&'t Token] {
    while let [first, rest @ ..] = tokens {
        if keyword(first).is_some_and(|w| words.contains(&w)) {
            tokens = rest;
        } else {
            break;
        }
    }
    tokens
}

/// Reads a possibly qualified relation name (after skipping `skip` words), folded; returns it and
/// the tokens after it.
fn relation_name<'t>(tokens: &'t [&'t Token], skip: &[&str]) -> Option<(String, &'t [&'t Token])> {
    let mut rest = skip_words(tokens, skip);
    let mut parts = Vec::new();
    loop {
        let [Token::Word(word), after @ ..] = rest else {
            return None;
        };
        parts.push(fold_ident(&Ident {
            value: word.value.clone(),
            quote_style: word.quote_style,
            span: sqlparser::tokenizer::Span::empty(),
        }));
        rest = after;
        match rest {
            [Token::Period, after @ ..] => rest = after,
            _ => return Some((parts.join("."), rest)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_row_returning_reads_are_rows_only() {
        for sql in [
            "SELECT 1",
            "VALUES (1), (2)",
            "TABLE t",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "SHOW search_path",
            "EXPLAIN SELECT * FROM t",
            "SELECT 1; SELECT 2",
            "",
        ] {
            let c = classify(sql);
            assert_eq!((c.kind, c.rows_only), (StatementKind::Read, true), "{sql}");
        }
        for sql in [
            "BEGIN",
            "COMMIT",
            "ROLLBACK",
            "SAVEPOINT s",
            "SET search_path = x",
            "RESET ALL",
            "DECLARE c CURSOR FOR SELECT 1",
            "FETCH 1 FROM c",
            "CLOSE c",
            "PREPARE p AS SELECT 1",
            "DEALLOCATE p",
            "DISCARD ALL",
            "LISTEN chan",
            "SELECT 1; COMMIT",
            "EXPLAIN ANALYZE SELECT 1",
            "INSERT INTO t VALUES (1)",
            "SELEC 1",
        ] {
            assert!(!classify(sql).rows_only, "{sql}");
        }
    }

    #[test]
    fn read_only_list_is_sorted_for_binary_search() {
        assert!(READ_ONLY.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn identifiers_are_cut_to_63_bytes_on_a_character_boundary() {
        let mut long = "é".repeat(40);
        truncate_identifier(&mut long);
        assert_eq!(long.len(), 62);
    }
}
