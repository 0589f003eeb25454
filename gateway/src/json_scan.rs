//! A strict one-pass JSON scanner for fast paths that read a few top-level fields of an
//! object and skip everything else without building anything ([`top_level_fields`]).
//!
//! It is meant to sit in front of a serde parse and answer only when it is sure of serde's
//! answer. It accepts a subset of what serde_json accepts, checked as serde_json checks a
//! value it skips: whitespace is ` \n\t\r`; numbers follow the JSON grammar; `null`, `true`,
//! `false` exactly; strings refuse control characters and check escapes (`\u` with any four
//! hex digits), their other bytes unchecked. Everything else (nesting deeper than
//! [`MAX_DEPTH`], a key spelled with escapes or non-ASCII bytes, trailing bytes, any syntax
//! error) is [`Unsure`]: the caller falls back to its full parse.

/// Deeper nesting is left to the full parse.
pub const MAX_DEPTH: usize = 64;

/// Not sure: leave it to the full parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsure;

/// A scan's result.
pub type Scan<T> = Result<T, Unsure>;

/// A position in a JSON text.
pub struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `s`.
    pub fn new(s: &'a [u8]) -> Self {
        Self { s, i: 0 }
    }

    /// The byte offset of the cursor.
    pub fn offset(&self) -> usize {
        self.i
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    /// Skips JSON whitespace (exactly serde_json's set); returns the next byte.
    pub fn ws(&mut self) -> Option<u8> {
        while let Some(b) = self.peek() {
            if !matches!(b, b' ' | b'\n' | b'\t' | b'\r') {
                return Some(b);
            }
            self.i += 1;
        }
        None
    }

    fn eat(&mut self, b: u8) -> Scan<()> {
        if self.peek() == Some(b) {
            self.i += 1;
            Ok(())
        } else {
            Err(Unsure)
        }
    }

    /// `null` (after whitespace): whether it was there (nothing consumed otherwise).
    pub fn null(&mut self) -> Scan<bool> {
        if self.ws() != Some(b'n') {
            return Ok(false);
        }
        self.literal(b"null").map(|()| true)
    }

    fn literal(&mut self, word: &[u8]) -> Scan<()> {
        if self.s[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(Unsure)
        }
    }

    /// A string (after whitespace); returns its raw contents (between the quotes) and
    /// whether they hold an escape.
    pub fn string(&mut self) -> Scan<(&'a [u8], bool)> {
        self.ws();
        self.eat(b'"')?;
        let start = self.i;
        let mut escaped = false;
        loop {
            self.i += special_offset(&self.s[self.i..]).ok_or(Unsure)?;
            match self.s[self.i] {
                b'"' => {
                    let text = &self.s[start..self.i];
                    self.i += 1;
                    return Ok((text, escaped));
                }
                b'\\' => {}
                _ => return Err(Unsure), // a control character
            }
            escaped = true;
            match self.s.get(self.i + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 2,
                Some(b'u') => {
                    let hex = self.s.get(self.i + 2..self.i + 6).ok_or(Unsure)?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return Err(Unsure);
                    }
                    self.i += 6;
                }
                _ => return Err(Unsure),
            }
        }
    }

    /// A number, with serde_json's grammar: `-`? (`0` | [1-9][0-9]*) (`.` [0-9]+)?
    /// ([eE] [+-]? [0-9]+)?
    fn number(&mut self) -> Scan<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.i += 1;
                if self.peek().is_some_and(|b| b.is_ascii_digit()) {
                    return Err(Unsure);
                }
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(Unsure),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.at_least_one_digit()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            self.at_least_one_digit()?;
        }
        Ok(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.i += 1;
        }
    }

    fn at_least_one_digit(&mut self) -> Scan<()> {
        let start = self.i;
        self.digits();
        if self.i == start {
            Err(Unsure)
        } else {
            Ok(())
        }
    }

    /// Skips one value (after whitespace) at nesting `depth` (the top-level object's values
    /// are at depth 1); for an array, returns its number of elements.
    pub fn value(&mut self, depth: usize) -> Scan<usize> {
        match self.ws().ok_or(Unsure)? {
            b'n' => self.literal(b"null")?,
            b't' => self.literal(b"true")?,
            b'f' => self.literal(b"false")?,
            b'"' => {
                self.string()?;
            }
            b'-' | b'0'..=b'9' => self.number()?,
            b'[' => return self.array(depth + 1),
            b'{' => self.object(depth + 1)?,
            _ => return Err(Unsure),
        }
        Ok(0)
    }

    /// An array (after whitespace) whose elements are at `depth`; returns their number.
    pub fn array(&mut self, depth: usize) -> Scan<usize> {
        if depth > MAX_DEPTH {
            return Err(Unsure);
        }
        self.ws();
        self.eat(b'[')?;
        if self.ws() == Some(b']') {
            self.i += 1;
            return Ok(0);
        }
        let mut n = 0;
        loop {
            self.value(depth)?;
            n += 1;
            match self.ws() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(n);
                }
                _ => return Err(Unsure),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Scan<()> {
        if depth > MAX_DEPTH {
            return Err(Unsure);
        }
        self.eat(b'{')?;
        if self.ws() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.string()?;
            if self.ws() != Some(b':') {
                return Err(Unsure);
            }
            self.i += 1;
            self.value(depth)?;
            match self.ws() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(Unsure),
            }
        }
    }

    /// The bytes from `start` to the cursor.
    pub fn since(&self, start: usize) -> &'a [u8] {
        &self.s[start..self.i]
    }
}

/// Past this many bytes, a string is searched with `memchr2` (vector instructions) instead of
/// word by word.
const SHORT_STRING: usize = 32;

/// The offset of the first byte in `s` that ends a run of plain string contents: `"`, `\\`
/// or a control character. The first [`SHORT_STRING`] bytes eight at a time (the classic
/// "has a zero byte" word trick; its lowest flagged byte is always exact): most strings end
/// there, without a call into a searcher. The rest of a long one (message text) with
/// `memchr2`, then a branch-free check for control characters before the byte it found.
fn special_offset(s: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while let Some(word) = s
        .get(i..i + 8)
        .filter(|_| i < SHORT_STRING)
        .and_then(|w| <[u8; 8]>::try_from(w).ok())
    {
        let x = u64::from_le_bytes(word);
        let quote = x ^ (ONES * u64::from(b'"'));
        let backslash = x ^ (ONES * u64::from(b'\\'));
        let flagged = ((quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (x.wrapping_sub(ONES * 0x20) & !x))
            & HIGHS;
        if flagged != 0 {
            return Some(i + (flagged.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    let rest = &s[i..];
    let end = memchr::memchr2(b'"', b'\\', rest).unwrap_or(rest.len());
    let control = rest[..end].iter().fold(false, |c, &b| c | (b < 0x20));
    if control {
        return rest.iter().position(|&b| b < 0x20).map(|p| i + p);
    }
    (end < rest.len()).then_some(i + end)
}

/// Walks the top-level object of `s`: calls `field(key, cursor)` for every key (its raw
/// bytes: ASCII, no escapes) with the cursor before its value, which `field` must consume
/// (by [`Cursor::value`] at depth 1, or more closely). Then checks that only whitespace
/// follows the object.
pub fn top_level_fields<'a>(
    s: &'a [u8],
    field: impl FnMut(&'a [u8], &mut Cursor<'a>) -> Scan<()>,
) -> Scan<()> {
    let mut c = Cursor::new(s);
    c.object_fields(field)?;
    if c.ws().is_some() {
        return Err(Unsure);
    }
    Ok(())
}

impl<'a> Cursor<'a> {
    /// Walks the object at the cursor (after whitespace) as [`top_level_fields`] walks a
    /// document's; `field` consumes each value.
    pub fn object_fields(
        &mut self,
        mut field: impl FnMut(&'a [u8], &mut Cursor<'a>) -> Scan<()>,
    ) -> Scan<()> {
        if self.ws() != Some(b'{') {
            return Err(Unsure);
        }
        self.i += 1;
        if self.ws() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            if self.ws() != Some(b'"') {
                return Err(Unsure);
            }
            let (key, escaped) = self.string()?;
            if escaped || !key.is_ascii() {
                return Err(Unsure);
            }
            if self.ws() != Some(b':') {
                return Err(Unsure);
            }
            self.i += 1;
            field(key, self)?;
            match self.ws() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(Unsure),
            }
        }
    }

    /// `null` or an unsigned integer that fits a `u64`, written as serde_json reads one into
    /// a `u64` (no sign, fraction or exponent); anything else is unsure.
    pub fn u64_or_null(&mut self) -> Scan<Option<u64>> {
        if self.null()? {
            return Ok(None);
        }
        let start = self.i;
        let digits = self.s[start..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let end = start + digits;
        if digits == 0
            || (digits > 1 && self.s[start] == b'0')
            || matches!(self.s.get(end), Some(b'.' | b'e' | b'E'))
        {
            return Err(Unsure);
        }
        let mut n: u64 = 0;
        for &d in &self.s[start..end] {
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(d - b'0')))
                .ok_or(Unsure)?;
        }
        self.i = end;
        Ok(Some(n))
    }
}

/// Sets a field seen for the first time (serde refuses a duplicate field: unsure).
pub fn once<T>(slot: &mut Option<T>, value: T) -> Scan<()> {
    if slot.is_some() {
        return Err(Unsure);
    }
    *slot = Some(value);
    Ok(())
}

/// Random edits of `cases` for tests that compare a scan with serde: `rounds` times, a case
/// with one to three bytes of `alphabet` inserted, deleted or replaced (a fixed-seed xorshift,
/// so a failure repeats), handed to `check`.
#[cfg(test)]
pub(crate) fn random_edits(
    cases: &[&[u8]],
    alphabet: &[u8],
    seed: u64,
    rounds: usize,
    mut check: impl FnMut(&[u8]),
) {
    let mut state = seed;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    for _ in 0..rounds {
        let mut m = cases[next(cases.len())].to_vec();
        for _ in 0..1 + next(3) {
            let at = next(m.len() + 1);
            let b = alphabet[next(alphabet.len())];
            match next(3) {
                0 => m.insert(at, b),
                1 if at < m.len() => {
                    m.remove(at);
                }
                _ if at < m.len() => m[at] = b,
                _ => m.push(b),
            }
        }
        check(&m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skims(s: &str) -> bool {
        top_level_fields(s.as_bytes(), |_, c| c.value(1).map(|_| ())).is_ok()
    }

    #[test]
    fn accepts_only_what_serde_accepts() {
        let cases = [
            r#"{}"#,
            r#" { "a" : [ 1 , -0.5e+3 , "x\u00e9\n" , { } , [ ] , true , false , null ] } "#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":-}"#,
            r#"{"a":1e}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":{"b":1,}}"#,
            r#"{"a":"\q"}"#,
            r#"{"a":"\u12x4"}"#,
            r#"{"a":nul}"#,
            r#"{"a":1}x"#,
            r#"{"a":1"#,
            r#"{"a" 1}"#,
            "{\"a\":\"\t\"}",
            r#"[1]"#,
            r#""#,
        ];
        for s in cases {
            let serde_ok = serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok()
                && s.trim_start_matches([' ', '\n', '\t', '\r'])
                    .starts_with('{');
            if skims(s) {
                assert!(serde_ok, "accepted what serde refuses: {s}");
            }
        }
        assert!(skims(cases[0]) && skims(cases[1]));
    }

    #[test]
    fn special_offset_finds_the_first_quote_backslash_or_control_byte() {
        let naive = |s: &[u8]| s.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20);
        let mut cases: Vec<Vec<u8>> = vec![b"".to_vec(), b"plain text, no end".to_vec()];
        for special in [b'"', b'\\', 0, 0x1f, b'\n'] {
            for len in (0..20).chain([31, 32, 33, 40, 47, 64, 100]) {
                for at in 0..=len {
                    // Around the special byte: bytes that borrow or carry in the word trick.
                    for filler in [b'a', 0x21, 0x23, 0x5b, 0x5d, 0x20, 0x80, 0xff, 0x01] {
                        let mut v = vec![filler; len];
                        if at < len {
                            v[at] = special;
                        }
                        cases.push(v);
                    }
                }
            }
        }
        for c in &cases {
            assert_eq!(special_offset(c), naive(c), "{c:?}");
        }
    }

    #[test]
    fn nesting_beyond_the_cap_is_unsure() {
        let deep = |n: usize| format!("{{\"a\":{}{}}}", "[".repeat(n), "]".repeat(n));
        assert!(skims(&deep(MAX_DEPTH - 1)));
        assert!(!skims(&deep(MAX_DEPTH)));
        assert!(!skims(&deep(10_000)));
    }
}
