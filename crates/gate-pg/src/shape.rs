//! Statement shapes: a text with its literal values replaced, so that the gate parses each shape
//! once and not each of the thousands of texts that differ only in their literals — and the
//! PostgreSQL lexer that finds those literals, which the classifier also uses to check that its
//! SQL parser reads a text the way the server will.
//!
//! # Why a cached classification is safe
//!
//! The cache never reuses the classification of some other text: it classifies the *shape text
//! itself* and keys the result by that text, so two texts share a classification exactly when
//! their shapes are equal. That is right when the server reads a raw text and its shape as the
//! same statements up to literal values, which holds when:
//!
//! 1. this lexer splits the raw text into tokens exactly as PostgreSQL's does
//!    (`standard_conforming_strings = on`, UTF-8 client encoding; the gate must keep both so), and
//! 2. every change [`shape`] makes keeps that token structure: each literal (a string constant with
//!    all its continuation pieces, a dollar-quoted string, a number) becomes one neutral literal of
//!    the same syntactic class (`''`, `E''`, `B''`, `X''`, `N''`, `$$$$`, `0`, `.0`); every run of
//!    whitespace and comments becomes one space; nothing else changes, so no two tokens merge and
//!    none splits, and
//! 3. the classification depends on literal positions and classes, never on their values (the
//!    classifier is written that way, and the tests compare raw and shape classifications).
//!
//! For (1) the lexer follows PostgreSQL's `scan.l` (versions 16 to 18) rule by rule, refusing
//! what the server refuses, and [`shape`] declines — returns `None`, so the text is classified
//! uncached — whenever a text holds anything whose reading could depend on a server setting or
//! version, or that it does not fully model: a backslash outside an `E'…'` string or a
//! dollar-quoted body (it would end a string were `standard_conforming_strings` off), `U&` strings
//! and identifiers (`UESCAPE` changes their escape character), `0x`/`0o`/`0b` numbers (before
//! PostgreSQL 16 they read as `0` and an alias), non-ASCII or control characters outside literals
//! and comments, a vertical tab (whitespace only since PostgreSQL 16), unterminated literals,
//! identifiers and comments, junk after a number or parameter, malformed dollar quotes, and texts
//! longer than the classifier reads. For (2) it declines a number followed directly by `.`
//! (`1.5.x`: `0.x` would read as one number).
//!
//! Comments are whitespace to PostgreSQL's lexer with two exceptions, both handled: a `--` or `/*`
//! ends an operator (a single space does too), and a string constant continues across whitespace
//! that holds a newline and `--` comments (`'a' -- x⏎ 'b'` is one constant), so the pieces of a
//! continued constant become one neutral literal and nothing between them is kept.
//!
//! The classifier checks every text, the shape text included, against sqlparser's reading of it.
//! For the cache to answer a raw text as the classifier would, the shape must not hide from that
//! check what makes the raw text unreadable to sqlparser, so [`shape`] also declines what
//! sqlparser reads differently inside literals and comments: a continued `E'…'` constant, `E'…'`
//! escapes sqlparser rejects (`\x`, `\u`, octal), a non-ASCII dollar-quote tag, and a comment
//! right after an operator character (sqlparser lets `|--` run on as one operator). And when a
//! shape classifies as `db.unknown`, the cache classifies the raw text itself, so that the note
//! names what is wrong with that text.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use crate::classify::{Classification, MAX_TEXT_LEN, StatementKind, classify};

/// Shapes longer than this are not cached: a cache entry holds its key, and a few thousand
/// one-megabyte keys would be a lot of memory for texts that are rarely repeated anyway.
const MAX_CACHED_SHAPE_LEN: usize = 16 * 1024;

/// The shape of a statement text: literals replaced by a placeholder, or None when the text cannot
/// be normalized safely (see the module documentation for what that means).
pub fn shape(sql: &str) -> Option<String> {
    if sql.len() > MAX_TEXT_LEN {
        return None;
    }
    let mut out = String::with_capacity(sql.len());
    let mut space_pending = false;
    // Inside a string constant that continues: its later pieces and what lies between them vanish.
    let mut continuing = false;
    let mut previous: Option<Token> = None;
    for token in Lexer::new(sql) {
        let token = token.ok()?;
        let text = &sql[token.start..token.end];
        if !normalizable(sql.as_bytes(), token, previous, continuing) {
            return None;
        }
        previous = Some(token);
        match token.kind {
            TokenKind::Space | TokenKind::Comment => {
                space_pending = !continuing;
                continue;
            }
            TokenKind::Str { continued, .. } if continuing => {
                continuing = continued;
                continue;
            }
            TokenKind::Str { continued, .. } => continuing = continued,
            _ => {}
        }
        if space_pending && !out.is_empty() {
            out.push(' ');
        }
        space_pending = false;
        match token.kind {
            TokenKind::Str { prefix, .. } => out.push_str(prefix.neutral()),
            TokenKind::Dollar => out.push_str("$$$$"),
            TokenKind::Number { leading_dot: true } => out.push_str(".0"),
            TokenKind::Number { leading_dot: false } => out.push('0'),
            _ => out.push_str(text),
        }
    }
    Some(out)
}

/// Whether the normalizer may rewrite a text holding this token: it declines whatever could read
/// differently with other server settings or versions, and whatever sqlparser reads differently
/// from PostgreSQL inside literals and comments (the shape would hide from the classifier what
/// makes the raw text unreadable to it).
fn normalizable(sql: &[u8], token: Token, previous: Option<Token>, continuing: bool) -> bool {
    let text = &sql[token.start..token.end];
    match token.kind {
        TokenKind::Space | TokenKind::Param | TokenKind::Semicolon => true,
        TokenKind::LParen | TokenKind::RParen => true,
        // sqlparser lets some operators run into a comment right after them (`|--`).
        TokenKind::Comment => !previous.is_some_and(|p| {
            p.kind == TokenKind::Other && p.end == token.start && is_operator_char(sql[p.start])
        }),
        TokenKind::Str { prefix, continued } => match prefix {
            StrPrefix::Unicode => false,
            // sqlparser reads the later pieces of a continued E'…' as plain strings, and rejects
            // some escapes PostgreSQL takes (`\x` without digits).
            StrPrefix::Escape => !continued && !continuing && simple_escapes(text),
            _ => !text.contains(&b'\\'),
        },
        TokenKind::Dollar => {
            let tag_end = text[1..].iter().position(|&b| b == b'$').unwrap_or(0);
            text[..=tag_end + 1].is_ascii()
        }
        // PostgreSQL before 16 reads 0x1F as 0 and an alias; sqlparser reads 0o17 so too.
        TokenKind::Number { .. } => {
            let radix = text.len() > 1 && text[0] == b'0' && text[1].is_ascii_alphabetic();
            !radix && sql.get(token.end) != Some(&b'.')
        }
        TokenKind::Word => text.is_ascii() && !text.eq_ignore_ascii_case(b"uescape"),
        TokenKind::QuotedIdent => text.is_ascii() && !text.contains(&b'\\'),
        TokenKind::UnicodeIdent => false,
        TokenKind::Other => text[0] != b'\\' && !text[0].is_ascii_control(),
    }
}

/// Whether every backslash escape in an `E'…'` string is a one-character one.
fn simple_escapes(text: &[u8]) -> bool {
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'\\' {
            if matches!(text.get(i + 1), Some(b'u' | b'U' | b'x' | b'0'..=b'7')) {
                return false;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    true
}

/// PostgreSQL's `op_chars`.
fn is_operator_char(byte: u8) -> bool {
    b"~!@#^&|`?+-*/%<>=".contains(&byte)
}

/// A bounded, thread-safe cache from statement shape to classification.
///
/// Entries live in two generations: new shapes go into the current one; when it is full it becomes
/// the previous one and the old previous one is dropped; a shape found in the previous generation
/// moves back into the current one. So a full cache forgets the shapes not used lately, not the hot
/// ones, and holds at most `capacity` entries (rounded up to an even number).
pub struct ShapeCache {
    generation_capacity: usize,
    generations: RwLock<Generations>,
}

#[derive(Default)]
struct Generations {
    current: HashMap<String, Arc<Classification>>,
    previous: HashMap<String, Arc<Classification>>,
}

impl ShapeCache {
    /// A cache holding up to `capacity` shapes; 0 turns caching off.
    pub fn new(capacity: usize) -> ShapeCache {
        ShapeCache {
            generation_capacity: capacity.div_ceil(2),
            generations: RwLock::new(Generations::default()),
        }
    }

    /// Classifies `sql`, parsing once per shape. Returns Arc<Classification>.
    pub fn classify(&self, sql: &str) -> Arc<Classification> {
        let key = match shape(sql) {
            Some(key) if self.generation_capacity > 0 && key.len() <= MAX_CACHED_SHAPE_LEN => key,
            _ => return Arc::new(classify(sql)),
        };
        let cached = self.lookup(&key);
        let classification = match cached {
            Some(found) => found,
            None => {
                let fresh = Arc::new(classify(&key));
                self.insert(key, Arc::clone(&fresh));
                fresh
            }
        };
        // When the shape cannot be read, say why in terms of the raw text: the parser's message
        // quotes literals and positions, which the shape has changed.
        if classification.kind == StatementKind::Unknown {
            return Arc::new(classify(sql));
        }
        classification
    }

    fn lookup(&self, key: &str) -> Option<Arc<Classification>> {
        let promoted = {
            let generations = self
                .generations
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(found) = generations.current.get(key) {
                return Some(Arc::clone(found));
            }
            Arc::clone(generations.previous.get(key)?)
        };
        self.insert(key.to_owned(), Arc::clone(&promoted));
        Some(promoted)
    }

    fn insert(&self, key: String, classification: Arc<Classification>) {
        let mut generations = self
            .generations
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if generations.current.len() >= self.generation_capacity {
            generations.previous = std::mem::take(&mut generations.current);
        }
        generations.previous.remove(&key);
        generations.current.insert(key, classification);
    }
}

impl fmt::Debug for ShapeCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let generations = self
            .generations
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("ShapeCache")
            .field("generation_capacity", &self.generation_capacity)
            .field("current", &generations.current.len())
            .field("previous", &generations.previous.len())
            .finish()
    }
}

/// How a string constant starts, which decides how PostgreSQL reads its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StrPrefix {
    /// `'…'`: `''` is a quote, backslash is an ordinary character.
    Plain,
    /// `N'…'`: read like a plain string.
    National,
    /// `E'…'`: backslash escapes the next character, `''` is a quote.
    Escape,
    /// `U&'…'`: read like a plain string; escapes are decoded afterwards.
    Unicode,
    /// `B'…'`: no escapes at all, the next quote ends it.
    Bit,
    /// `X'…'`: no escapes at all, the next quote ends it.
    Hex,
}

impl StrPrefix {
    fn neutral(self) -> &'static str {
        match self {
            StrPrefix::Plain => "''",
            StrPrefix::National => "N''",
            StrPrefix::Escape => "E''",
            StrPrefix::Unicode => "U&''",
            StrPrefix::Bit => "B''",
            StrPrefix::Hex => "X''",
        }
    }
}

/// What a token of PostgreSQL's lexer is, as far as the gate needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// A run of whitespace.
    Space,
    /// A `--` comment (without its newline) or a whole, possibly nested, `/* */` comment.
    Comment,
    /// One quoted piece of a string constant, prefix and quotes included; `continued` when
    /// PostgreSQL joins the next piece to it (whitespace and comments in between are their own
    /// tokens).
    Str {
        prefix: StrPrefix,
        continued: bool,
    },
    /// A whole dollar-quoted string.
    Dollar,
    /// A numeric constant; `leading_dot` for the `.5` form.
    Number {
        leading_dot: bool,
    },
    /// `"…"`.
    QuotedIdent,
    /// `U&"…"`.
    UnicodeIdent,
    /// An identifier or keyword.
    Word,
    /// `$1`.
    Param,
    Semicolon,
    LParen,
    RParen,
    /// Any other single character: operator characters and punctuation.
    Other,
}

impl TokenKind {
    /// Whether PostgreSQL ignores the token between other tokens.
    pub(crate) fn is_blank(self) -> bool {
        matches!(self, TokenKind::Space | TokenKind::Comment)
    }
}

/// A token: its kind and byte range in the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) kind: TokenKind,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// A text PostgreSQL would refuse to lex (or that this lexer will not guess about).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LexError {
    pub(crate) message: &'static str,
    pub(crate) at: usize,
}

/// PostgreSQL's lexer (`src/backend/parser/scan.l`, version 16), reduced to token boundaries.
pub(crate) struct Lexer<'a> {
    sql: &'a str,
    text: &'a [u8],
    pos: usize,
    /// After a string piece that continues: where the next piece's opening quote is and how to
    /// read its body.
    continuation: Option<(usize, StrPrefix)>,
    failed: bool,
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(sql: &'a str) -> Lexer<'a> {
        Lexer {
            sql,
            text: sql.as_bytes(),
            pos: 0,
            continuation: None,
            failed: false,
        }
    }

    fn at(&self, index: usize) -> Option<u8> {
        self.text.get(index).copied()
    }

    fn starts_with(&self, index: usize, pattern: &[u8]) -> bool {
        self.text
            .get(index..)
            .is_some_and(|rest| rest.starts_with(pattern))
    }

    fn error(&mut self, message: &'static str, at: usize) -> Option<Result<Token, LexError>> {
        self.failed = true;
        Some(Err(LexError { message, at }))
    }

    fn token(
        &mut self,
        kind: TokenKind,
        start: usize,
        end: usize,
    ) -> Option<Result<Token, LexError>> {
        self.pos = end;
        Some(Ok(Token { kind, start, end }))
    }

    /// Reads a string piece whose opening quote is at `quote`; `start` is where its prefix begins.
    fn string(
        &mut self,
        start: usize,
        quote: usize,
        prefix: StrPrefix,
    ) -> Option<Result<Token, LexError>> {
        let mut i = quote + 1;
        loop {
            match self.at(i) {
                None => return self.error("unterminated quoted string", start),
                Some(b'\\') if prefix == StrPrefix::Escape => {
                    if i + 1 >= self.text.len() {
                        return self.error("unterminated quoted string", start);
                    }
                    // A backslash escapes whatever follows; the longer escapes (octal, hex,
                    // Unicode) continue with characters that cannot end the string.
                    i += 2;
                }
                Some(b'\'') => {
                    let doubles = !matches!(prefix, StrPrefix::Bit | StrPrefix::Hex);
                    if doubles && self.at(i + 1) == Some(b'\'') {
                        i += 2;
                        continue;
                    }
                    let end = i + 1;
                    let next_quote = self.continuation_quote(end);
                    self.continuation = next_quote.map(|q| (q, prefix));
                    let continued = next_quote.is_some();
                    return self.token(TokenKind::Str { prefix, continued }, start, end);
                }
                Some(_) => i += 1,
            }
        }
    }

    /// PostgreSQL's `{quotecontinue}`: whitespace holding a newline (and `--` comments) and then a
    /// quote, right after a closing quote, continue the constant. Returns where that quote is.
    fn continuation_quote(&self, mut i: usize) -> Option<usize> {
        // {horiz_whitespace}*: spaces, tabs, form feeds and `--` comments on the closing line.
        loop {
            match self.at(i) {
                Some(b' ' | b'\t' | 0x0c) => i += 1,
                Some(b'-') if self.at(i + 1) == Some(b'-') => i = self.line_end(i),
                _ => break,
            }
        }
        // {newline}
        if !matches!(self.at(i), Some(b'\n' | b'\r')) {
            return None;
        }
        i += 1;
        // {special_whitespace}*: whitespace, or a `--` comment with its newline.
        loop {
            match self.at(i) {
                Some(b' ' | b'\t' | b'\n' | b'\r' | 0x0c) => i += 1,
                Some(b'-') if self.at(i + 1) == Some(b'-') => {
                    let end = self.line_end(i);
                    if end >= self.text.len() {
                        break;
                    }
                    i = end + 1;
                }
                _ => break,
            }
        }
        (self.at(i) == Some(b'\'')).then_some(i)
    }

    /// Where the `--` comment starting at `i` ends: at the next newline or carriage return.
    fn line_end(&self, i: usize) -> usize {
        self.text[i..]
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
            .map_or(self.text.len(), |offset| i + offset)
    }

    fn block_comment(&mut self, start: usize) -> Option<Result<Token, LexError>> {
        let mut depth = 0usize;
        let mut i = start + 2;
        loop {
            if self.starts_with(i, b"/*") {
                depth += 1;
                i += 2;
            } else if self.starts_with(i, b"*/") {
                i += 2;
                if depth == 0 {
                    return self.token(TokenKind::Comment, start, i);
                }
                depth -= 1;
            } else if i < self.text.len() {
                i += 1;
            } else {
                return self.error("unterminated /* comment", start);
            }
        }
    }

    fn quoted_identifier(
        &mut self,
        start: usize,
        quote: usize,
        kind: TokenKind,
    ) -> Option<Result<Token, LexError>> {
        let mut i = quote + 1;
        loop {
            match self.at(i) {
                None => return self.error("unterminated quoted identifier", start),
                Some(b'"') if self.at(i + 1) == Some(b'"') => i += 2,
                Some(b'"') => {
                    if i == quote + 1 {
                        return self.error("zero-length delimited identifier", start);
                    }
                    return self.token(kind, start, i + 1);
                }
                Some(_) => i += 1,
            }
        }
    }

    fn dollar(&mut self, start: usize) -> Option<Result<Token, LexError>> {
        let mut i = start + 1;
        match self.at(i) {
            Some(b) if b.is_ascii_digit() => {
                // `\${decdigit}+`: parameters take no underscores.
                let mut end = i;
                while self.at(end).is_some_and(|b| b.is_ascii_digit()) {
                    end += 1;
                }
                if self.at(end).is_some_and(is_ident_start) {
                    return self.error("trailing junk after parameter", start);
                }
                return self.token(TokenKind::Param, start, end);
            }
            Some(b) if is_ident_start(b) => {
                while self
                    .at(i)
                    .is_some_and(|b| is_ident_start(b) || b.is_ascii_digit())
                {
                    i += 1;
                }
            }
            _ => {}
        }
        if self.at(i) != Some(b'$') {
            return self.error("a dollar sign that starts nothing", start);
        }
        // The delimiter is ASCII dollars around a tag, so these are character boundaries; and
        // str::find stays linear however long the tag.
        let delimiter = &self.sql[start..=i];
        let body = i + 1;
        match self.sql[body..].find(delimiter) {
            Some(offset) => {
                let end = body + offset + delimiter.len();
                self.token(TokenKind::Dollar, start, end)
            }
            None => self.error("unterminated dollar-quoted string", start),
        }
    }

    fn number(&mut self, start: usize) -> Option<Result<Token, LexError>> {
        let text = self.text;
        let leading_dot = text[start] == b'.';
        let mut i;
        if !leading_dot
            && text[start] == b'0'
            && matches!(
                self.at(start + 1),
                Some(b'x' | b'X' | b'o' | b'O' | b'b' | b'B')
            )
        {
            let is_digit: fn(u8) -> bool = match text[start + 1] {
                b'x' | b'X' => |b| b.is_ascii_hexdigit(),
                b'o' | b'O' => |b| matches!(b, b'0'..=b'7'),
                _ => |b| matches!(b, b'0' | b'1'),
            };
            i = start + 2;
            let digits_from = i;
            loop {
                let at = if self.at(i) == Some(b'_') { i + 1 } else { i };
                if self.at(at).is_some_and(is_digit) {
                    i = at + 1;
                } else {
                    break;
                }
            }
            if i == digits_from {
                return self.error("invalid numeric literal", start);
            }
        } else if leading_dot {
            i = decinteger(text, start + 1);
        } else {
            i = decinteger(text, start);
            if self.at(i) == Some(b'.') {
                if self.at(i + 1) == Some(b'.') {
                    // `1..`: PostgreSQL takes the integer and leaves the dots.
                    return self.token(TokenKind::Number { leading_dot }, start, i);
                }
                i += 1;
                if self.at(i).is_some_and(|b| b.is_ascii_digit()) {
                    i = decinteger(text, i);
                }
            }
        }
        let radix_prefixed = !leading_dot && i > start + 1 && text[start + 1].is_ascii_alphabetic();
        if !radix_prefixed && matches!(self.at(i), Some(b'e' | b'E')) {
            let mut j = i + 1;
            if matches!(self.at(j), Some(b'+' | b'-')) {
                j += 1;
            }
            if self.at(j).is_some_and(|b| b.is_ascii_digit()) {
                i = decinteger(text, j);
            } else if j > i + 1 {
                return self.error("invalid numeric literal", start);
            }
        }
        if self.at(i).is_some_and(is_ident_start) {
            return self.error("trailing junk after numeric literal", start);
        }
        self.token(TokenKind::Number { leading_dot }, start, i)
    }

    fn word(&mut self, start: usize) -> Option<Result<Token, LexError>> {
        let text = self.text;
        let first = text[start];
        let next = self.at(start + 1);
        let prefixed = |prefix| Some((start + 1, prefix));
        let string_start = match (first, next) {
            (b'e' | b'E', Some(b'\'')) => prefixed(StrPrefix::Escape),
            (b'n' | b'N', Some(b'\'')) => prefixed(StrPrefix::National),
            (b'b' | b'B', Some(b'\'')) => prefixed(StrPrefix::Bit),
            (b'x' | b'X', Some(b'\'')) => prefixed(StrPrefix::Hex),
            (b'u' | b'U', Some(b'&')) if self.at(start + 2) == Some(b'\'') => {
                Some((start + 2, StrPrefix::Unicode))
            }
            _ => None,
        };
        if let Some((quote, prefix)) = string_start {
            return self.string(start, quote, prefix);
        }
        if matches!(first, b'u' | b'U') && next == Some(b'&') && self.at(start + 2) == Some(b'"') {
            return self.quoted_identifier(start, start + 2, TokenKind::UnicodeIdent);
        }
        let mut i = start + 1;
        while self.at(i).is_some_and(is_ident_continue) {
            i += 1;
        }
        self.token(TokenKind::Word, start, i)
    }
}

impl Iterator for Lexer<'_> {
    type Item = Result<Token, LexError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let start = self.pos;
        if let Some((quote, prefix)) = self.continuation
            && quote == start
        {
            self.continuation = None;
            return self.string(start, quote, prefix);
        }
        let byte = self.at(start)?;
        match byte {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0c => {
                let mut i = start + 1;
                while matches!(self.at(i), Some(b' ' | b'\t' | b'\n' | b'\r' | 0x0c)) {
                    i += 1;
                }
                self.token(TokenKind::Space, start, i)
            }
            // PostgreSQL 16 reads a vertical tab as whitespace, earlier versions as an error.
            0x0b => self.error("vertical tab", start),
            b'-' if self.at(start + 1) == Some(b'-') => {
                let end = self.line_end(start);
                self.token(TokenKind::Comment, start, end)
            }
            b'/' if self.at(start + 1) == Some(b'*') => self.block_comment(start),
            b'\'' => self.string(start, start, StrPrefix::Plain),
            b'"' => self.quoted_identifier(start, start, TokenKind::QuotedIdent),
            b'$' => self.dollar(start),
            b'0'..=b'9' => self.number(start),
            b'.' if self.at(start + 1).is_some_and(|b| b.is_ascii_digit()) => self.number(start),
            b if is_ident_start(b) => self.word(start),
            b';' => self.token(TokenKind::Semicolon, start, start + 1),
            b'(' => self.token(TokenKind::LParen, start, start + 1),
            b')' => self.token(TokenKind::RParen, start, start + 1),
            0 => self.error("NUL character", start),
            _ => self.token(TokenKind::Other, start, start + 1),
        }
    }
}

/// `[A-Za-z\200-\377_]`: bytes that start an identifier (every byte of a multi-byte UTF-8
/// character is in `\200-\377`).
fn is_ident_start(byte: u8) -> bool {
    byte.is_ascii_alphabetic() || byte == b'_' || byte >= 0x80
}

/// `[A-Za-z\200-\377_0-9\$]`: bytes that continue an identifier.
fn is_ident_continue(byte: u8) -> bool {
    is_ident_start(byte) || byte.is_ascii_digit() || byte == b'$'
}

/// `{decinteger}`, `[0-9](_?[0-9])*`, starting at the digit at `i`; returns where it ends.
fn decinteger(text: &[u8], mut i: usize) -> usize {
    i += 1;
    loop {
        match text.get(i) {
            Some(b) if b.is_ascii_digit() => i += 1,
            Some(b'_') if text.get(i + 1).is_some_and(u8::is_ascii_digit) => i += 2,
            _ => return i,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use proptest::prelude::*;

    use super::*;

    fn tokens(sql: &str) -> Vec<(TokenKind, &str)> {
        Lexer::new(sql)
            .map(|token| {
                let token = token.expect("the text lexes");
                (token.kind, &sql[token.start..token.end])
            })
            .filter(|(kind, _)| *kind != TokenKind::Space)
            .collect()
    }

    fn plain(continued: bool) -> TokenKind {
        TokenKind::Str {
            prefix: StrPrefix::Plain,
            continued,
        }
    }

    #[test]
    fn the_lexer_ends_literals_and_comments_where_postgresql_does() {
        use TokenKind::*;
        let escape = Str {
            prefix: StrPrefix::Escape,
            continued: false,
        };
        let bit = Str {
            prefix: StrPrefix::Bit,
            continued: false,
        };
        let cases: Vec<(&str, Vec<(TokenKind, &str)>)> = vec![
            (r"'a\'", vec![(plain(false), r"'a\'")]),
            ("'it''s'", vec![(plain(false), "'it''s'")]),
            (r"E'a\'b'", vec![(escape, r"E'a\'b'")]),
            (r"e'a\\'x", vec![(escape, r"e'a\\'"), (Word, "x")]),
            ("B'01''1'", vec![(bit, "B'01'"), (plain(false), "'1'")]),
            ("$a$ $b$ $a$", vec![(Dollar, "$a$ $b$ $a$")]),
            ("$a$x$ab$y$a$z", vec![(Dollar, "$a$x$ab$y$a$"), (Word, "z")]),
            ("$1", vec![(Param, "$1")]),
            ("a$b$c", vec![(Word, "a$b$c")]),
            ("\"a\"\"b\"", vec![(QuotedIdent, "\"a\"\"b\"")]),
            ("U&\"a\"", vec![(UnicodeIdent, "U&\"a\"")]),
            ("U&x", vec![(Word, "U"), (Other, "&"), (Word, "x")]),
            ("a--b\nc", vec![(Word, "a"), (Comment, "--b"), (Word, "c")]),
            (
                "a-/**/-b",
                vec![
                    (Word, "a"),
                    (Other, "-"),
                    (Comment, "/**/"),
                    (Other, "-"),
                    (Word, "b"),
                ],
            ),
            (
                "/* /* */ x */y",
                vec![(Comment, "/* /* */ x */"), (Word, "y")],
            ),
            ("/*/ x */y", vec![(Comment, "/*/ x */"), (Word, "y")]),
            (
                "1.5e10 .5 1_000 0x1F",
                vec![
                    (Number { leading_dot: false }, "1.5e10"),
                    (Number { leading_dot: true }, ".5"),
                    (Number { leading_dot: false }, "1_000"),
                    (Number { leading_dot: false }, "0x1F"),
                ],
            ),
            (
                "1..2",
                vec![
                    (Number { leading_dot: false }, "1"),
                    (Other, "."),
                    (Number { leading_dot: true }, ".2"),
                ],
            ),
            (
                "'a'\n'b'",
                vec![(plain(true), "'a'"), (plain(false), "'b'")],
            ),
            (
                "'a' -- c\n 'b'",
                vec![
                    (plain(true), "'a'"),
                    (Comment, "-- c"),
                    (plain(false), "'b'"),
                ],
            ),
            (
                "'a' 'b'",
                vec![(plain(false), "'a'"), (plain(false), "'b'")],
            ),
            (
                "'a' /* c */\n'b'",
                vec![
                    (plain(false), "'a'"),
                    (Comment, "/* c */"),
                    (plain(false), "'b'"),
                ],
            ),
            (
                "E'a'\n'\\''",
                vec![
                    (
                        Str {
                            prefix: StrPrefix::Escape,
                            continued: true,
                        },
                        "E'a'",
                    ),
                    (escape, "'\\''"),
                ],
            ),
        ];
        for (sql, expected) in cases {
            assert_eq!(tokens(sql), expected, "tokens of {sql:?}");
        }
    }

    #[test]
    fn the_lexer_refuses_what_postgresql_refuses() {
        for sql in [
            "'open",
            "E'open\\'",
            "\"open",
            "\"\"",
            "$a$ open",
            "$a x",
            "$ 1",
            "/* open /* */",
            "1abc",
            "0x",
            "0b2",
            "1e+",
            "$1x",
            "a\u{0b}b",
            "a\0b",
        ] {
            assert!(
                Lexer::new(sql).any(|t| t.is_err()),
                "{sql:?} should not lex"
            );
        }
    }

    #[test]
    fn shapes_replace_literals_and_collapse_blanks() {
        let cases = [
            (
                "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;",
                "SELECT abalance FROM pgbench_accounts WHERE aid = 0;",
            ),
            (
                "select  *\n\tfrom t where a='x' and b=E'\\n' and c=$q$x$q$",
                "select * from t where a='' and b=E'' and c=$$$$",
            ),
            (
                "SELECT 1.5, .5, 1e9, N'x', B'01', X'1F'",
                "SELECT 0, .0, 0, N'', B'', X''",
            ),
            ("SELECT 'a'\n  'b' -- tail", "SELECT ''"),
            (
                "/* head */ SELECT \"Col\" -- x\n FROM t",
                "SELECT \"Col\" FROM t",
            ),
            ("SELECT $1, t.5 FROM t", "SELECT $1, t.0 FROM t"),
            ("a/**/b", "a b"),
            ("-- only a comment", ""),
        ];
        for (raw, expected) in cases {
            assert_eq!(shape(raw).as_deref(), Some(expected), "shape of {raw:?}");
        }
        assert_eq!(
            shape("SELECT * FROM t WHERE id = 1"),
            shape("SELECT * FROM t WHERE id = 987654321"),
        );
        assert_eq!(
            shape("SELECT 'a'"),
            shape("SELECT 'it''s; DROP TABLE t; --'")
        );
    }

    #[test]
    fn shape_declines_what_it_does_not_fully_understand() {
        for sql in [
            r"SELECT 'a\'",
            r"SELECT N'a\'",
            r"SELECT X'\'",
            r#"SELECT "a\b""#,
            r"SELECT \ 1",
            r"SELECT U&'\0041'",
            "SELECT U&\"a\"",
            "SELECT 'a' UESCAPE '!'",
            "SELECT E'a'\n'b'",
            r"SELECT E'\x41'",
            r"SELECT E'\u0041'",
            r"SELECT E'\101'",
            "SELECT café",
            "SELECT \"café\"",
            "SELECT $é$x$é$",
            "SELECT 0x1F",
            "SELECT 0o17",
            "SELECT 1.5.x",
            "SELECT 1 |-- c\n",
            "SELECT 1 </* c */ 2",
            "SELECT 1\u{7}",
            "SELECT 'open",
            "SELECT 1 /* open",
        ] {
            assert_eq!(shape(sql), None, "{sql:?} should have no shape");
        }
        let huge = format!("SELECT '{}'", "x".repeat(MAX_TEXT_LEN));
        assert_eq!(shape(&huge), None);
    }

    /// The cached classification of a text must be the classification of that very text.
    fn assert_cached_like_raw(cache: &ShapeCache, sql: &str) {
        assert_eq!(
            *cache.classify(sql),
            classify(sql),
            "cache and classifier on {sql:?}"
        );
    }

    #[test]
    fn statements_hidden_behind_a_fake_literal_end_stay_visible() {
        use StatementKind::*;
        // Each quoting form, with text that ends the literal early or only seems to.
        let cases = [
            (r"SELECT 'abc\'; DROP TABLE t; --'", Destructive),
            (r"SELECT 'abc''; DROP TABLE t; --'", Read),
            (r"SELECT E'abc\'; DROP TABLE t; --'", Read),
            (r"SELECT E'abc\\'; DROP TABLE t; --'", Destructive),
            (r"SELECT E'abc''; DROP TABLE t; --'", Read),
            (r"SELECT N'abc\'; DROP TABLE t; --'", Destructive),
            (r"SELECT U&'abc\'; DROP TABLE t; --'", Unknown),
            (r"SELECT B'01''; DROP TABLE t; --'", Unknown),
            (r"SELECT X'1F''; DROP TABLE t; --'", Unknown),
            (r"SELECT X'\'; DROP TABLE t; --'", Unknown),
            ("SELECT $a$ $b$; DROP TABLE t; $a$", Read),
            ("SELECT $a$x$a$; DROP TABLE t; --$a$", Destructive),
            ("SELECT $$x$a$; DROP TABLE t; --$$", Read),
            ("SELECT $1$x$1$; DROP TABLE t", Unknown),
            ("SELECT \"a\"\"; DROP TABLE t; --\"", Read),
            ("SELECT \"a\"; DROP TABLE t; --\"", Destructive),
            ("SELECT 1 /* /* */ DROP TABLE t; */", Read),
            ("SELECT 1 /* /* */ */; DROP TABLE t", Destructive),
            ("SELECT 1 -- '\n; DROP TABLE t", Destructive),
            ("SELECT '--'; DROP TABLE t", Destructive),
            ("SELECT 'a'\n'; DROP TABLE t; --'", Read),
            // PostgreSQL rejects two adjacent constants; the parser takes the second as an alias.
            ("SELECT 'a' '; DROP TABLE t; --'", Read),
            ("SELECT E'a'\n'\\'; DROP TABLE t; --'", Unknown),
            ("SELECT 1 |-- c\n; DROP TABLE t", Unknown),
            ("SELECT 1e'\\'; DROP TABLE t; --'", Unknown),
        ];
        let cache = ShapeCache::new(64);
        for (sql, kind) in cases {
            assert_eq!(classify(sql).kind, kind, "classification of {sql:?}");
            assert_cached_like_raw(&cache, sql);
            if let Some(shaped) = shape(sql) {
                assert_eq!(classify(&shaped).kind, kind, "shape {shaped:?} of {sql:?}");
            }
        }
    }

    #[test]
    fn texts_that_mean_different_things_never_share_a_shape() {
        let pairs = [
            ("SELECT 'a'; DROP TABLE t", "SELECT 'a; DROP TABLE t'"),
            (
                r"SELECT E'\\'; DROP TABLE t; --'",
                r"SELECT E'\'; DROP TABLE t; --'",
            ),
            (
                "SELECT $a$x$a$; DROP TABLE t; --",
                "SELECT $a$x$b$; DROP TABLE t; --$a$",
            ),
            (
                "SELECT 1 -- x\n; DROP TABLE t",
                "SELECT 1 /* x\n; DROP TABLE t */",
            ),
            ("SELECT a-1", "SELECT a--1"),
            ("SELECT 'a'\n'b'", "SELECT 'a' 'b'"),
        ];
        for (one, other) in pairs {
            let (one_shape, other_shape) = (shape(one), shape(other));
            assert!(
                one_shape.is_none() || one_shape != other_shape,
                "{one:?} and {other:?} share the shape {one_shape:?}"
            );
        }
    }

    #[test]
    fn the_cache_parses_a_shape_once_and_forgets_cold_shapes_first() {
        let cache = ShapeCache::new(4);
        let first = cache.classify("SELECT * FROM t WHERE id = 1");
        let second = cache.classify("SELECT * FROM t WHERE id = 2");
        assert!(
            Arc::ptr_eq(&first, &second),
            "the second text is a cache hit"
        );
        // Fill well past the capacity while touching the hot shape now and then.
        for i in 0..20 {
            cache.classify(&format!("SELECT c{i} FROM t"));
            if i % 2 == 0 {
                cache.classify("SELECT * FROM t WHERE id = 3");
            }
        }
        let hot = cache.classify("SELECT * FROM t WHERE id = 4");
        assert!(Arc::ptr_eq(&first, &hot), "the hot shape survived");
        let generations = cache.generations.read().expect("not poisoned");
        assert!(generations.current.len() + generations.previous.len() <= 4);
    }

    #[test]
    fn a_cache_of_capacity_zero_caches_nothing() {
        let cache = ShapeCache::new(0);
        let first = cache.classify("SELECT 1");
        let second = cache.classify("SELECT 1");
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(*first, classify("SELECT 1"));
    }

    /// One cache for all generated texts, so that texts sharing a shape meet in it.
    fn shared_cache() -> &'static ShapeCache {
        static CACHE: OnceLock<ShapeCache> = OnceLock::new();
        CACHE.get_or_init(|| ShapeCache::new(100_000))
    }

    /// Literal text with quotes, backslashes, dollar signs, semicolons and comment markers.
    fn hostile_text() -> impl Strategy<Value = String> {
        let pieces = vec![
            "a",
            "Z",
            "'",
            "''",
            "\\",
            "\\'",
            "$",
            "$$",
            "$a$",
            ";",
            "--",
            "/*",
            "*/",
            "\n",
            " ",
            "é",
            "\"",
            "DROP TABLE t",
            "E'",
            "0",
            "_",
        ];
        prop::collection::vec(prop::sample::select(pieces), 0..10).prop_map(|p| p.concat())
    }

    fn string_literal() -> impl Strategy<Value = String> {
        prop_oneof![
            hostile_text().prop_map(|v| format!("'{}'", v.replace('\'', "''"))),
            hostile_text()
                .prop_map(|v| format!("E'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))),
            hostile_text().prop_map(|v| format!("N'{}'", v.replace('\'', "''"))),
            (hostile_text(), prop::sample::select(vec!["", "q", "tag_1"])).prop_map(|(v, tag)| {
                let mut tag = tag.to_owned();
                while v.contains(&format!("${tag}$")) || v.ends_with('$') && tag.is_empty() {
                    tag.push('x');
                }
                format!("${tag}${v}${tag}$")
            }),
            (hostile_text(), hostile_text()).prop_map(|(a, b)| {
                format!("'{}'\n  '{}'", a.replace('\'', "''"), b.replace('\'', "''"))
            }),
        ]
    }

    fn number_literal() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<u32>().prop_map(|n| n.to_string()),
            (any::<u16>(), any::<u16>()).prop_map(|(a, b)| format!("{a}.{b}")),
            any::<u16>().prop_map(|n| format!(".{n}")),
            (any::<u16>(), -30i8..30).prop_map(|(a, e)| format!("{a}e{e}")),
            (1u32..1000, 0u32..1000).prop_map(|(a, b)| format!("{a}_{b:03}")),
        ]
    }

    fn comment_text() -> impl Strategy<Value = String> {
        hostile_text().prop_map(|v| v.replace(['\n', '*', '/'], " "))
    }

    const TEMPLATES: &[&str] = &[
        "SELECT {l} FROM t WHERE a = {l}",
        "SELECT * FROM accounts WHERE owner = {s} AND balance > {n}",
        "INSERT INTO t (a, b) VALUES ({l}, {l})",
        "UPDATE t SET a = {l} WHERE id = {n}",
        "DELETE FROM t WHERE b = {s}",
        "DELETE FROM t WHERE {l} = {l}",
        "UPDATE t SET a = {s}",
        "SELECT pg_read_file({s})",
        "SELECT set_config({s}, {s}, false)",
        "SELECT {l}; DROP TABLE t",
        "SELECT {s} -- {c}\n; DELETE FROM t WHERE id = {n}",
        "/* {c} */ SELECT {l}",
        "SELECT * FROM t WHERE a IN ({l}, {l}) LIMIT {n}",
        "WITH x AS (SELECT {l} AS v) SELECT * FROM x WHERE v <> {l}",
        "SELECT CASE WHEN a = {l} THEN {l} ELSE {l} END FROM t",
        "EXPLAIN SELECT {l}",
        "PREPARE p AS SELECT * FROM t WHERE a = {l}",
        "SELECT {l}::text, {s}::int FROM t",
        "COPY (SELECT {l}) TO STDOUT",
        "SELECT my_func({l}), lower({s})",
    ];

    /// A statement from a template with its literal slots filled.
    fn generated_statement() -> impl Strategy<Value = String> {
        (
            prop::sample::select(TEMPLATES),
            prop::collection::vec(string_literal(), 4),
            prop::collection::vec(number_literal(), 4),
            prop::collection::vec(any::<bool>(), 4),
            comment_text(),
        )
            .prop_map(|(template, strings, numbers, pick_string, comment)| {
                let mut sql = template.replace("{c}", &comment);
                for i in 0..4 {
                    let either = if pick_string[i] {
                        &strings[i]
                    } else {
                        &numbers[i]
                    };
                    sql = sql
                        .replacen("{l}", either, 1)
                        .replacen("{s}", &strings[i], 1)
                        .replacen("{n}", &numbers[i], 1);
                }
                sql
            })
    }

    /// Text made of pieces that lex in interesting ways, glued together or apart.
    fn token_soup() -> impl Strategy<Value = String> {
        let pieces = vec![
            "SELECT",
            "DROP TABLE t",
            "DELETE FROM t",
            "FROM t",
            "WHERE",
            "a",
            "=",
            "1",
            "1.5",
            ".5",
            "'x'",
            "''",
            "'",
            "E'",
            "\\",
            "\\'",
            "$$",
            "$a$",
            "$1",
            "--",
            "/*",
            "*/",
            "\n",
            " ",
            ";",
            "\"",
            "(",
            ")",
            ",",
            "-",
            "|",
            "+",
            "e",
            "x",
            "B'0'",
            "U&",
            "é",
            "pg_read_file('f')",
            " AS ",
            "WITH ",
            " INTO ",
            "SET ",
            " TO ",
            "EXPLAIN (ANALYZE ",
            "TRUNCATE ",
            "LOCK ",
            "COPY ",
            "CREATE TABLE ",
            "GRANT SELECT ON ",
            " JOIN ",
            " ON ",
            "UPDATE t SET ",
        ];
        prop::collection::vec(prop::sample::select(pieces), 0..24).prop_map(|p| p.concat())
    }

    proptest! {
        #[test]
        fn a_generated_statement_classifies_like_its_shape(sql in generated_statement()) {
            let raw = classify(&sql);
            if let Some(shaped) = shape(&sql) {
                let of_shape = classify(&shaped);
                prop_assert_eq!((of_shape.kind, &of_shape.tables, of_shape.statements), (raw.kind, &raw.tables, raw.statements), "shape {:?}", shaped);
                if raw.kind != StatementKind::Unknown {
                    prop_assert_eq!(&of_shape, &raw);
                }
            }
            prop_assert_eq!(&*shared_cache().classify(&sql), &raw);
        }

        #[test]
        fn any_text_is_classified_through_the_cache_as_it_is_directly(sql in token_soup()) {
            prop_assert_eq!(&*shared_cache().classify(&sql), &classify(&sql));
            if let Some(shaped) = shape(&sql) {
                prop_assert_eq!(shape(&shaped), Some(shaped.clone()), "a shape is its own shape");
            }
        }
    }
}
