//! Statement shapes: a text with its literal values replaced, so that the gate parses each shape
//! once and not each of the thousands of texts that differ only in their literals — and the
//! PostgreSQL lexer that finds those literals, which the classifier also uses to check that its
//! SQL parser reads a text the way the server will.
//!
//! # Why a cached classification is safe
//!
//! The cache never reuses the classification of some other text: it classifies the *shape text
//! itself* and keys the result by that text. A raw text gets the classification of its shape, so
//! two texts share a classification exactly when their shapes are equal. That is right when the
//! server reads a raw text and its shape as the same statements up to literal values, which holds
//! when:
//!
//! 1. this lexer splits the raw text into tokens exactly as PostgreSQL's does
//!    (`standard_conforming_strings = on`, UTF-8 client encoding; the gate must keep both so), and
//! 2. every change [`shape`] makes keeps that token structure: each literal (a string constant with
//!    all its continuation pieces, a dollar-quoted string, a number) becomes one neutral literal of
//!    the same syntactic class (`''`, `E''`, `B''`, `X''`, `N''`, `$$$$`, `0`, `.0`); every run of
//!    whitespace and comments becomes one space; nothing else changes, so no two tokens merge and
//!    none splits, and
//! 3. the classification depends on literal positions and classes, never on their values (the
//!    classifier is written that way and the tests compare raw and shape classifications).
//!
//! For (1) the lexer follows PostgreSQL 16's `scan.l` rule by rule, and [`shape`] declines (returns
//! `None`, so the text is classified uncached) whenever a text holds anything whose reading could
//! depend on a server setting or version or that it does not fully model: a backslash outside an
//! `E'…'` string or a dollar-quoted body (it would end a string were `standard_conforming_strings`
//! off), `U&` strings and identifiers (`UESCAPE` can change their escape character), non-ASCII or
//! control characters outside literals and comments, a vertical tab, an unterminated literal,
//! identifier or comment, junk after a number or parameter, a malformed dollar quote, and a text
//! longer than the classifier reads. For (2) a number followed directly by `.` is declined too
//! (`1.5.x`: `0.x` would read as a number).
//!
//! Comments are whitespace to PostgreSQL's lexer with two exceptions, and both are handled: a `--`
//! or `/*` ends an operator (a single space does too), and a string constant continues across
//! whitespace that holds a newline and `--` comments (`'a' -- x⏎ 'b'` is one constant), so the
//! pieces of a continued constant become one neutral literal and nothing between them is kept.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use crate::classify::{Classification, MAX_TEXT_LEN, classify};

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
    for token in Lexer::new(sql) {
        let token = token.ok()?;
        let text = &sql[token.start..token.end];
        match token.kind {
            TokenKind::Space | TokenKind::Comment => {
                space_pending = !continuing;
                continue;
            }
            TokenKind::Str { prefix, continued } => {
                // sqlparser reads the later pieces of a continued E'…' constant as plain strings.
                let escape_continued = prefix == StrPrefix::Escape && (continued || continuing);
                if prefix == StrPrefix::Unicode
                    || escape_continued
                    || (prefix != StrPrefix::Escape && text.contains('\\'))
                {
                    return None;
                }
                if continuing {
                    continuing = continued;
                    continue;
                }
                continuing = continued;
            }
            TokenKind::Word => {
                if !text.is_ascii() || text.eq_ignore_ascii_case("uescape") {
                    return None;
                }
            }
            TokenKind::QuotedIdent => {
                if !text.is_ascii() || text.contains('\\') {
                    return None;
                }
            }
            TokenKind::UnicodeIdent => return None,
            TokenKind::Number { .. } => {
                if sql.as_bytes().get(token.end) == Some(&b'.') {
                    return None;
                }
            }
            TokenKind::Other => {
                let byte = text.as_bytes()[0];
                if byte == b'\\' || byte.is_ascii_control() {
                    return None;
                }
            }
            TokenKind::Dollar | TokenKind::Param | TokenKind::Semicolon => {}
            TokenKind::LParen | TokenKind::RParen => {}
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
        if classification.kind == crate::classify::StatementKind::Unknown {
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
        let delimiter = &self.text[start..=i];
        let body = i + 1;
        match self.text[body..]
            .windows(delimiter.len())
            .position(|w| w == delimiter)
        {
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
