//! Finds one scalar at an RFC 6901 JSON pointer with a single forward scan, without building a
//! DOM: values off the pointer's path are skipped by a string-aware bracket matcher, and a found
//! string is borrowed from the record unless it has escapes.
//!
//! On valid JSON the answer equals `serde_json`'s `Value::pointer`, including for duplicate keys,
//! where the last occurrence wins: the object holding the key is scanned to its end. On invalid
//! JSON it never panics; syntax errors on the scanned path are reported, while the insides of
//! skipped values are only checked for balance.

use std::borrow::Cow;

/// Deepest nesting accepted (serde_json's default recursion limit is 128 too).
const MAX_DEPTH: usize = 128;

/// One pointer step: an object key, which is also an array index when it is a canonical number.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Token {
    key: Box<str>,
    index: Option<usize>,
}

/// A parsed RFC 6901 pointer, e.g. `/tenant_id` or `/meta/ts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPointer {
    text: String,
    tokens: Vec<Token>,
}

/// Why a pointer was refused in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointerError {
    pub pointer: String,
    pub reason: &'static str,
}

impl std::fmt::Display for PointerError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "invalid JSON pointer {:?}: {}",
            self.pointer, self.reason
        )
    }
}

impl std::error::Error for PointerError {}

impl JsonPointer {
    pub fn parse(pointer: &str) -> Result<JsonPointer, PointerError> {
        let error = |reason| PointerError {
            pointer: pointer.to_owned(),
            reason,
        };
        let Some(rest) = pointer.strip_prefix('/') else {
            return Err(error("must start with '/' (e.g. \"/tenant_id\")"));
        };
        let mut tokens = Vec::new();
        for raw in rest.split('/') {
            let mut key = String::with_capacity(raw.len());
            let mut characters = raw.chars();
            while let Some(character) = characters.next() {
                if character != '~' {
                    key.push(character);
                    continue;
                }
                match characters.next() {
                    Some('0') => key.push('~'),
                    Some('1') => key.push('/'),
                    _ => return Err(error("'~' must be followed by '0' or '1'")),
                }
            }
            let canonical_index = !key.is_empty()
                && key.bytes().all(|byte| byte.is_ascii_digit())
                && (key == "0" || !key.starts_with('0'));
            let index = if canonical_index {
                key.parse().ok()
            } else {
                None
            };
            tokens.push(Token {
                key: key.into_boxed_str(),
                index,
            });
        }
        Ok(JsonPointer {
            text: pointer.to_owned(),
            tokens,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// A scalar found in a document.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonScalar<'a> {
    /// Decoded; borrowed when the raw string had no escapes.
    String(Cow<'a, str>),
    /// The literal text, e.g. `1700000000123` or `1.7e9`.
    Number(&'a str),
    Bool(bool),
    Null,
    Object,
    Array,
    /// An unescaped string's bytes, not checked as UTF-8: only where the caller asked for
    /// them ([`find_each_raw`]), for an id compared as bytes.
    Raw(&'a [u8]),
}

/// Why a document could not be scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonError {
    Syntax { offset: usize },
    NotUtf8,
    TooDeep,
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JsonError::Syntax { offset } => write!(formatter, "syntax error at byte {offset}"),
            JsonError::NotUtf8 => formatter.write_str("string is not UTF-8"),
            JsonError::TooDeep => write!(formatter, "nested deeper than {MAX_DEPTH}"),
        }
    }
}

impl std::error::Error for JsonError {}

/// The value at `pointer`, `Ok(None)` when the path does not exist.
pub fn find<'a>(
    document: &'a [u8],
    pointer: &JsonPointer,
) -> Result<Option<JsonScalar<'a>>, JsonError> {
    let [found] = find_each(document, [pointer])?;
    Ok(found)
}

/// The values at several pointers, found in one scan of `document` (a feed that splits and
/// takes its time from the payload reads it once, not twice).
pub fn find_each<'a, const N: usize>(
    document: &'a [u8],
    pointers: [&JsonPointer; N],
) -> Result<[Option<JsonScalar<'a>>; N], JsonError> {
    find_each_raw(document, pointers, 0)
}

/// [`find_each`], with the slots whose bit is set in `raw_slots` given an unescaped string
/// as [`JsonScalar::Raw`]: its UTF-8 check skipped.
pub fn find_each_raw<'a, const N: usize>(
    document: &'a [u8],
    pointers: [&JsonPointer; N],
    raw_slots: u32,
) -> Result<[Option<JsonScalar<'a>>; N], JsonError> {
    let mut paths = Paths::default();
    for (slot, pointer) in pointers.iter().enumerate() {
        paths.push(slot, &pointer.tokens);
    }
    let mut found = [const { None }; N];
    let mut scanner = Scanner {
        bytes: document,
        position: 0,
        raw_slots,
    };
    scanner.skip_whitespace();
    scanner.find_in_value(paths, 0, &mut found)?;
    scanner.skip_whitespace();
    if scanner.position != document.len() {
        return Err(scanner.syntax());
    }
    Ok(found)
}

/// Most pointers [`find_each`] follows at once.
const MAX_POINTERS: usize = 4;

/// The pointers still being followed at a point of the scan: which result slot each fills, and
/// the tokens left. A fixed array, so a scan never allocates.
#[derive(Clone, Copy, Default)]
struct Paths<'t> {
    items: [(usize, &'t [Token]); MAX_POINTERS],
    len: usize,
    /// Bit n set: some path's next key is n bytes long (bit 63: 63 or more). Most keys of an
    /// object are wanted by no path, and one test of their length turns them away.
    key_lengths: u64,
}

impl<'t> Paths<'t> {
    fn push(&mut self, slot: usize, tokens: &'t [Token]) {
        assert!(self.len < MAX_POINTERS, "at most {MAX_POINTERS} pointers");
        self.items[self.len] = (slot, tokens);
        self.len += 1;
        if let Some(token) = tokens.first() {
            self.key_lengths |= length_bit(token.key.len());
        }
    }

    /// Whether some path's next token may be `key` (by its length alone).
    fn may_want_key(&self, key: &[u8]) -> bool {
        self.key_lengths & length_bit(key.len()) != 0
    }

    fn iter(&self) -> impl Iterator<Item = &(usize, &'t [Token])> {
        self.items[..self.len].iter()
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether any path's next token `matches` (cheaper than building the `step`).
    fn any_next(&self, matches: impl Fn(&Token) -> bool) -> bool {
        self.iter()
            .any(|(_, tokens)| tokens.first().is_some_and(&matches))
    }

    /// The paths whose next token `matches`, each advanced past it.
    fn step(&self, matches: impl Fn(&Token) -> bool) -> Paths<'t> {
        let mut next = Paths::default();
        for &(slot, tokens) in self.iter() {
            if let Some((token, rest)) = tokens.split_first() {
                if matches(token) {
                    next.push(slot, rest);
                }
            }
        }
        next
    }
}

fn length_bit(length: usize) -> u64 {
    1 << length.min(63)
}

/// Byte equality inline: keys are short, and a `memcmp` call per key showed in profiles.
fn same_bytes(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len() && left.iter().zip(right).all(|(a, b)| a == b)
}

struct Scanner<'a> {
    bytes: &'a [u8],
    position: usize,
    /// See [`find_each_raw`].
    raw_slots: u32,
}

impl<'a> Scanner<'a> {
    fn syntax(&self) -> JsonError {
        JsonError::Syntax {
            offset: self.position,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.position).copied()
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.position += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), JsonError> {
        if self.peek() == Some(byte) {
            self.position += 1;
            Ok(())
        } else {
            Err(self.syntax())
        }
    }

    /// Scans the value at the cursor, filling the slot of every path that ends in it. A value
    /// replaces whatever an earlier duplicate key left in those slots: last occurrence wins, as
    /// in serde_json.
    fn find_in_value(
        &mut self,
        paths: Paths<'_>,
        depth: usize,
        found: &mut [Option<JsonScalar<'a>>],
    ) -> Result<(), JsonError> {
        if depth > MAX_DEPTH {
            return Err(JsonError::TooDeep);
        }
        for &(slot, _) in paths.iter() {
            found[slot] = None;
        }
        let deeper = paths.step(|_| true);
        let ends_here = paths.iter().any(|(_, tokens)| tokens.is_empty());
        let kind = match self.peek() {
            Some(b'{') if !deeper.is_empty() => {
                self.find_in_object(paths, depth, found)?;
                JsonScalar::Object
            }
            Some(b'[') if !deeper.is_empty() => {
                self.find_in_array(paths, depth, found)?;
                JsonScalar::Array
            }
            _ if ends_here => {
                let raw = paths
                    .iter()
                    .all(|&(slot, tokens)| !tokens.is_empty() || self.raw_slots & (1 << slot) != 0);
                self.scalar(raw)?
            }
            _ => return self.skip_value(depth),
        };
        for &(slot, tokens) in paths.iter() {
            if tokens.is_empty() {
                found[slot] = Some(kind.clone());
            }
        }
        Ok(())
    }

    fn find_in_object(
        &mut self,
        paths: Paths<'_>,
        depth: usize,
        found: &mut [Option<JsonScalar<'a>>],
    ) -> Result<(), JsonError> {
        self.position += 1; // '{'
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.position += 1;
            return Ok(());
        }
        loop {
            self.skip_whitespace();
            let (raw_key, escaped) = self.raw_string()?;
            self.skip_whitespace();
            self.expect(b':')?;
            self.skip_whitespace();
            let decoded;
            let key: &[u8] = if escaped {
                decoded = decode_string(raw_key)?;
                decoded.as_bytes()
            } else {
                raw_key
            };
            let wanted = |token: &Token| same_bytes(token.key.as_bytes(), key);
            if paths.may_want_key(key) && paths.any_next(wanted) {
                self.find_in_value(paths.step(wanted), depth + 1, found)?;
            } else {
                self.skip_value(depth + 1)?;
            }
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.position += 1,
                Some(b'}') => {
                    self.position += 1;
                    return Ok(());
                }
                _ => return Err(self.syntax()),
            }
        }
    }

    fn find_in_array(
        &mut self,
        paths: Paths<'_>,
        depth: usize,
        found: &mut [Option<JsonScalar<'a>>],
    ) -> Result<(), JsonError> {
        self.position += 1; // '['
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.position += 1;
            return Ok(());
        }
        let mut index = 0usize;
        loop {
            self.skip_whitespace();
            let wanted = |token: &Token| token.index == Some(index);
            if paths.any_next(wanted) {
                self.find_in_value(paths.step(wanted), depth + 1, found)?;
            } else {
                self.skip_value(depth + 1)?;
            }
            index += 1;
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.position += 1,
                Some(b']') => {
                    self.position += 1;
                    return Ok(());
                }
                _ => return Err(self.syntax()),
            }
        }
    }

    /// The scalar at the cursor (objects and arrays are skipped and reported by kind).
    fn scalar(&mut self, raw_string: bool) -> Result<JsonScalar<'a>, JsonError> {
        match self.peek() {
            Some(b'"') => {
                let (raw, escaped) = self.raw_string()?;
                if raw_string && !escaped {
                    Ok(JsonScalar::Raw(raw))
                } else if escaped {
                    Ok(JsonScalar::String(Cow::Owned(decode_string(raw)?)))
                } else {
                    let text = std::str::from_utf8(raw).map_err(|_| JsonError::NotUtf8)?;
                    Ok(JsonScalar::String(Cow::Borrowed(text)))
                }
            }
            Some(b'{') => {
                self.skip_value(0)?;
                Ok(JsonScalar::Object)
            }
            Some(b'[') => {
                self.skip_value(0)?;
                Ok(JsonScalar::Array)
            }
            Some(b't') => self.literal(b"true", JsonScalar::Bool(true)),
            Some(b'f') => self.literal(b"false", JsonScalar::Bool(false)),
            Some(b'n') => self.literal(b"null", JsonScalar::Null),
            Some(b'-' | b'0'..=b'9') => {
                let start = self.position;
                self.number()?;
                // Number bytes are ASCII.
                let text = std::str::from_utf8(&self.bytes[start..self.position])
                    .map_err(|_| JsonError::NotUtf8)?;
                Ok(JsonScalar::Number(text))
            }
            _ => Err(self.syntax()),
        }
    }

    fn literal(&mut self, word: &[u8], value: JsonScalar<'a>) -> Result<JsonScalar<'a>, JsonError> {
        if self.bytes[self.position..].starts_with(word) {
            self.position += word.len();
            Ok(value)
        } else {
            Err(self.syntax())
        }
    }

    /// A strict JSON number: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Result<(), JsonError> {
        if self.peek() == Some(b'-') {
            self.position += 1;
        }
        match self.peek() {
            Some(b'0') => self.position += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.syntax()),
        }
        if self.peek() == Some(b'.') {
            self.position += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.syntax());
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.position += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.position += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.syntax());
            }
            self.digits();
        }
        Ok(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.position += 1;
        }
    }

    /// The raw bytes between a string's quotes, and whether they contain escapes.
    fn raw_string(&mut self) -> Result<(&'a [u8], bool), JsonError> {
        self.expect(b'"')?;
        let start = self.position;
        let mut escaped = false;
        loop {
            let rest = &self.bytes[self.position..];
            // A plain byte loop: strings in records are mostly short keys and values, where it
            // beat both memchr's SIMD set-up and an 8-bytes-at-a-time word scan in
            // benches/hot_path.rs.
            let Some(offset) = rest
                .iter()
                .position(|&byte| byte == b'"' || byte == b'\\' || byte < 0x20)
            else {
                self.position = self.bytes.len();
                return Err(self.syntax());
            };
            self.position += offset;
            match self.bytes[self.position] {
                b'"' => {
                    let raw = &self.bytes[start..self.position];
                    self.position += 1;
                    return Ok((raw, escaped));
                }
                b'\\' => {
                    escaped = true;
                    self.position += 2;
                    if self.position > self.bytes.len() {
                        self.position = self.bytes.len();
                        return Err(self.syntax());
                    }
                }
                _ => return Err(self.syntax()), // raw control character
            }
        }
    }

    /// Skips one value of any kind; containers only need balanced, string-aware brackets.
    fn skip_value(&mut self, depth: usize) -> Result<(), JsonError> {
        match self.peek() {
            Some(b'"') => self.raw_string().map(|_| ()),
            Some(b'{' | b'[') => self.skip_container(depth),
            Some(b't') => self.literal(b"true", JsonScalar::Null).map(|_| ()),
            Some(b'f') => self.literal(b"false", JsonScalar::Null).map(|_| ()),
            Some(b'n') => self.literal(b"null", JsonScalar::Null).map(|_| ()),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.syntax()),
        }
    }

    fn skip_container(&mut self, depth: usize) -> Result<(), JsonError> {
        // Bit i of `kinds` is 1 when nesting level i is an object: no allocation.
        let mut kinds: u128 = 0;
        let mut level = 0usize;
        loop {
            match self.peek() {
                None => return Err(self.syntax()),
                Some(b'"') => {
                    self.raw_string()?;
                    continue;
                }
                Some(open @ (b'{' | b'[')) => {
                    if depth + level >= MAX_DEPTH {
                        return Err(JsonError::TooDeep);
                    }
                    if open == b'{' {
                        kinds |= 1 << level;
                    } else {
                        kinds &= !(1 << level);
                    }
                    level += 1;
                }
                Some(close @ (b'}' | b']')) => {
                    if level == 0 {
                        return Err(self.syntax());
                    }
                    level -= 1;
                    let is_object = kinds & (1 << level) != 0;
                    if is_object != (close == b'}') {
                        return Err(self.syntax());
                    }
                    if level == 0 {
                        self.position += 1;
                        return Ok(());
                    }
                }
                Some(_) => {}
            }
            self.position += 1;
        }
    }
}

/// Decodes a string's raw bytes (between the quotes), resolving escapes.
fn decode_string(raw: &[u8]) -> Result<String, JsonError> {
    let text = std::str::from_utf8(raw).map_err(|_| JsonError::NotUtf8)?;
    let bad = |offset: usize| JsonError::Syntax { offset };
    let mut decoded = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(backslash) = rest.find('\\') {
        decoded.push_str(&rest[..backslash]);
        let after = &rest[backslash + 1..];
        let mut characters = after.chars();
        let escape = characters.next().ok_or(bad(backslash))?;
        let mut consumed = 1;
        match escape {
            '"' => decoded.push('"'),
            '\\' => decoded.push('\\'),
            '/' => decoded.push('/'),
            'b' => decoded.push('\u{8}'),
            'f' => decoded.push('\u{c}'),
            'n' => decoded.push('\n'),
            'r' => decoded.push('\r'),
            't' => decoded.push('\t'),
            'u' => {
                let first = hex4(after.get(1..5)).ok_or(bad(backslash))?;
                consumed = 5;
                let code = if (0xD800..0xDC00).contains(&first) {
                    let low = after
                        .get(5..7)
                        .filter(|marker| *marker == "\\u")
                        .and_then(|_| hex4(after.get(7..11)))
                        .filter(|low| (0xDC00..0xE000).contains(low))
                        .ok_or(bad(backslash))?;
                    consumed = 11;
                    0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00..0xE000).contains(&first) {
                    return Err(bad(backslash));
                } else {
                    first
                };
                decoded.push(char::from_u32(code).ok_or(bad(backslash))?);
            }
            _ => return Err(bad(backslash)),
        }
        rest = &after[consumed..];
    }
    decoded.push_str(rest);
    Ok(decoded)
}

fn hex4(digits: Option<&str>) -> Option<u32> {
    let digits = digits?;
    if digits.len() != 4 || !digits.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests;
