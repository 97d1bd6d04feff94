//! Removes credentials from text before it enters the record.
//!
//! Error messages end up in `last_error`, in lifecycle events (and so in the Redis event
//! stream) and in the node's log, where far more people can read them than could read
//! the job's payload. Anything that may quote a URL, a header or an environment value
//! passes through [`redact`] (or a [`Redactor`] that also knows the job's own secret
//! values) on its way there.
//!
//! What is masked, each replaced by [`MASK`]:
//! - the user information of a URL: `scheme://user:pass@host` becomes `scheme://***@host`
//!   (the user name too: tokens are often passed as user names);
//! - the value after `Authorization`, `Proxy-Authorization`, `Cookie` and `Set-Cookie`
//!   (`Name: value` to the end of the line, or a quoted value), and after `Bearer`;
//! - the value of any key whose name ends in `password`, `passwd`, `secret`, `token`,
//!   `api_key`, `apikey`, `api-key` or `private_key`, in `key=value`, `key: value` and
//!   JSON `"key": "value"` forms (so `?token=...` in a query string too; not
//!   `key = value`, which is code such as SQL in a debug log, far more often than not);
//! - with a [`Redactor`], every occurrence of the values it was given (at least
//!   [`MIN_SECRET_CHARS`] characters long: shorter ones would mask ordinary text);
//! - an HTTP API token wherever it appears, recognised by its prefix
//!   ([`crate::store::tokens::TOKEN_PREFIX`]): `jmt_12_<hex>` becomes `jmt_***`.

use std::borrow::Cow;

/// What a removed credential is replaced with.
pub const MASK: &str = "***";

/// Shortest literal secret a [`Redactor`] searches for.
pub const MIN_SECRET_CHARS: usize = 4;

/// Header names whose whole value is a credential.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

/// Key names ending in one of these carry a credential as their value.
const SECRET_KEY_SUFFIXES: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "api-key",
    "private_key",
];

/// `text` with credentials masked (see the module documentation); borrowed when there
/// was nothing to mask.
pub fn redact(text: &str) -> Cow<'_, str> {
    let once = mask_api_tokens(&mask_keyed_values(&mask_url_userinfo(text))).into_owned();
    if once == text {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(once)
    }
}

/// Masks credentials like [`redact`] and, in addition, every occurrence of a set of
/// known secret values (a job's header values, a node's secret environment values).
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    // Longest first, so a secret that contains another is masked whole.
    values: Vec<String>,
}

impl Redactor {
    /// A redactor that knows no literal values (it masks what [`redact`] masks).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a value to mask wherever it appears. Values shorter than
    /// [`MIN_SECRET_CHARS`] characters are ignored.
    pub fn add(&mut self, value: impl Into<String>) -> &mut Self {
        let value = value.into();
        if value.chars().count() >= MIN_SECRET_CHARS && !self.values.contains(&value) {
            self.values.push(value);
            self.values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        }
        self
    }

    /// Whether no literal value is known.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with the known values and every credential [`redact`] finds masked.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), MASK);
            }
        }
        redact(&out).into_owned()
    }
}

/// A writer that masks credentials (as [`redact`] does) in everything written through it
/// before passing it on: the node's log goes through one, so that a library logging a
/// URL with its `user:password@` (an HTTP client's redirect trace, say) cannot put it in
/// the log.
///
/// Text is held until the writer is flushed or dropped, so that a credential split
/// across two writes is still seen whole; a log line formatter writes one line per
/// writer (`tracing_subscriber`'s `with_writer(|| RedactingWriter::new(std::io::stderr()))`).
#[derive(Debug)]
pub struct RedactingWriter<W: std::io::Write> {
    inner: W,
    held: Vec<u8>,
}

impl<W: std::io::Write> RedactingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            held: Vec::new(),
        }
    }

    fn pass_on(&mut self) -> std::io::Result<()> {
        if self.held.is_empty() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&self.held);
        let masked = redact(&text).into_owned();
        self.held.clear();
        self.inner.write_all(masked.as_bytes())
    }
}

impl<W: std::io::Write> std::io::Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.held.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.pass_on()?;
        self.inner.flush()
    }
}

impl<W: std::io::Write> Drop for RedactingWriter<W> {
    fn drop(&mut self) {
        // A log line that cannot be written has nowhere to report its failure.
        let _ = self.pass_on();
        let _ = self.inner.flush();
    }
}

/// Masks every API token: the prefix stays (so the log still says a token was there),
/// the id and secret after it go. Only a prefix at the start of a word counts, so
/// `xjmt_1` in an identifier is left alone.
fn mask_api_tokens(text: &str) -> Cow<'_, str> {
    use crate::store::tokens::TOKEN_PREFIX;
    if !text.contains(TOKEN_PREFIX) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut from = 0;
    while let Some(i) = text[from..].find(TOKEN_PREFIX).map(|i| from + i) {
        let start = i + TOKEN_PREFIX.len();
        let word_start = !text[..i].chars().next_back().is_some_and(is_name_char);
        let len = text[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(text.len() - start);
        let value = &text[start..start + len];
        if word_start && !value.is_empty() && value != MASK {
            out.push_str(&text[copied..start]);
            out.push_str(MASK);
            copied = start + len;
        }
        from = start + len;
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// Characters that end a URL's authority (or the URL itself, in prose).
fn ends_authority(c: char) -> bool {
    c.is_whitespace() || "/?#\"'<>`\\".contains(c)
}

fn mask_url_userinfo(text: &str) -> Cow<'_, str> {
    if !text.contains("://") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let start = i + 3;
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let authority_len = after.find(ends_authority).unwrap_or(after.len());
        let authority = &after[..authority_len];
        match authority.rfind('@') {
            Some(at) if at > 0 && &authority[..at] != MASK => {
                out.push_str(MASK);
                rest = &after[at..];
            }
            _ => rest = after,
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// How far a value runs after a secret name.
#[derive(Clone, Copy, PartialEq)]
enum ValueEnd {
    /// To the end of the line (header values hold spaces: `Bearer abc`).
    Line,
    /// To the next separator (`&`, `,`, `;`, whitespace, quote, bracket).
    Token,
}

fn secret_name(name: &str) -> Option<ValueEnd> {
    let lower = name.to_ascii_lowercase();
    if SECRET_HEADERS.contains(&lower.as_str()) {
        Some(ValueEnd::Line)
    } else if SECRET_KEY_SUFFIXES.iter().any(|s| lower.ends_with(s)) {
        Some(ValueEnd::Token)
    } else {
        None
    }
}

fn mask_keyed_values(text: &str) -> Cow<'_, str> {
    let mut out = String::with_capacity(text.len());
    let mut copied = 0; // bytes of `text` already in `out`
    let mut changed = false;
    let mut i = 0;
    while i < text.len() {
        let c = text[i..].chars().next().expect("i is on a char boundary");
        if !is_name_char(c) {
            i += c.len_utf8();
            continue;
        }
        let name_end = text[i..]
            .find(|c: char| !is_name_char(c))
            .map_or(text.len(), |n| i + n);
        let name = &text[i..name_end];
        let found = if name.eq_ignore_ascii_case("bearer") {
            value_after_word(text, name_end)
        } else {
            secret_name(name).and_then(|end| value_after_separator(text, name_end, end))
        };
        match found {
            Some((start, end)) if &text[start..end] != MASK => {
                out.push_str(&text[copied..start]);
                out.push_str(MASK);
                copied = end;
                changed = true;
                i = end;
            }
            Some((_, end)) => i = end,
            None => i = name_end,
        }
    }
    if !changed {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// The value after `name` when followed by `:` or `=` (right after the name or its
/// closing quote, optionally followed by spaces), as a byte range of `text`.
fn value_after_separator(text: &str, name_end: usize, end: ValueEnd) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut j = name_end;
    if j < bytes.len() && (bytes[j] == b'"' || bytes[j] == b'\'') {
        j += 1;
    }
    // No space before the separator: `token=x`, `Token: x` and `"token": "x"` carry
    // values; `lease_token = lease_token + 1` (SQL in a debug log) is code.
    if j >= bytes.len() || !(bytes[j] == b':' || bytes[j] == b'=') {
        return None;
    }
    j += 1;
    while j < bytes.len() && bytes[j] == b' ' {
        j += 1;
    }
    value_at(text, j, end)
}

/// The token after `Bearer `.
fn value_after_word(text: &str, word_end: usize) -> Option<(usize, usize)> {
    let rest = &text[word_end..];
    let spaces = rest.len() - rest.trim_start_matches(' ').len();
    if spaces == 0 {
        return None;
    }
    value_at(text, word_end + spaces, ValueEnd::Token)
}

/// The value starting at byte `j`: a quoted string (escapes honoured) or an unquoted run.
fn value_at(text: &str, j: usize, end: ValueEnd) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    if j >= bytes.len() {
        return None;
    }
    if bytes[j] == b'"' || bytes[j] == b'\'' {
        let quote = bytes[j];
        let start = j + 1;
        let mut k = start;
        while k < bytes.len() && bytes[k] != quote {
            k += if bytes[k] == b'\\' { 2 } else { 1 };
        }
        let k = k.min(bytes.len());
        return (k > start).then_some((start, k));
    }
    let stop = |c: char| match end {
        ValueEnd::Line => c == '\n' || c == '\r',
        ValueEnd::Token => c.is_whitespace() || "&,;\"'()[]{}<>".contains(c),
    };
    let len = text[j..].find(stop).unwrap_or(text.len() - j);
    (len > 0).then_some((j, j + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_credentials_are_masked() {
        assert_eq!(
            redact("GET http://alice:s3cr3t@example.com:8080/x?y=1: refused"),
            "GET http://***@example.com:8080/x?y=1: refused"
        );
        assert_eq!(
            redact("redis://:pw@127.0.0.1/0 and postgres://u@h/db"),
            "redis://***@127.0.0.1/0 and postgres://***@h/db"
        );
        // An `@` in the path is no user information.
        assert_eq!(redact("http://example.com/a@b"), "http://example.com/a@b");
        assert!(matches!(redact("no urls here"), Cow::Borrowed(_)));
    }

    #[test]
    fn header_values_are_masked_to_the_end_of_the_line() {
        assert_eq!(
            redact("sent Authorization: Bearer abc.def\nnext line"),
            "sent Authorization: ***\nnext line"
        );
        assert_eq!(
            redact(r#"{"cookie": "sid=1; x=2", "accept": "*/*"}"#),
            r#"{"cookie": "***", "accept": "*/*"}"#
        );
        assert_eq!(
            redact("proxy-authorization=Basic dXNlcjpwYXNz"),
            "proxy-authorization=***"
        );
        assert_eq!(redact("got bearer abcdef123"), "got bearer ***");
    }

    #[test]
    fn keyed_secrets_are_masked() {
        assert_eq!(
            redact("https://h/cb?access_token=abc&page=2"),
            "https://h/cb?access_token=***&page=2"
        );
        assert_eq!(
            redact(r#"{"client_secret":"x\"y","id":1}"#),
            r#"{"client_secret":"***","id":1}"#
        );
        assert_eq!(
            redact("PASSWORD=hunter2 API_KEY: k-1 Api-Key=z"),
            "PASSWORD=*** API_KEY: *** Api-Key=***"
        );
        // Prose that merely names a secret is left alone, and so is code.
        assert_eq!(redact("the token expired"), "the token expired");
        assert_eq!(
            redact("SET lease_token = lease_token + 1"),
            "SET lease_token = lease_token + 1"
        );
        // Idempotent.
        let once = redact("password=x token=y").into_owned();
        assert_eq!(redact(&once), once);
    }

    #[test]
    fn api_tokens_are_masked_wherever_they_appear() {
        let token = format!("jmt_12_{}", "ab".repeat(32));
        assert_eq!(
            redact(&format!("refused {token}, then \"{token}\"")),
            "refused jmt_***, then \"jmt_***\""
        );
        assert_eq!(
            redact(&format!("Authorization: Bearer {token}")),
            "Authorization: ***"
        );
        // Not a token: inside a word, or the prefix alone.
        assert_eq!(redact("xjmt_12 and jmt_ alone"), "xjmt_12 and jmt_ alone");
        let once = redact(&token).into_owned();
        assert_eq!(redact(&once), once, "idempotent");
    }

    #[test]
    fn the_writer_masks_what_passes_through() {
        use std::io::Write;
        let mut out = Vec::new();
        {
            let mut w = RedactingWriter::new(&mut out);
            // Split mid-credential: held until the writer is done.
            w.write_all(b"redirecting 'http://u:secr").unwrap();
            w.write_all(b"etpw@h/' to 'http://h/x'\n").unwrap();
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "redirecting 'http://***@h/' to 'http://h/x'\n"
        );
    }

    #[test]
    fn a_redactor_masks_known_values_anywhere() {
        let mut r = Redactor::new();
        r.add("tok-123456").add("ab");
        assert_eq!(
            r.redact("server said: unknown key tok-123456 (ab)"),
            "server said: unknown key *** (ab)",
            "values shorter than MIN_SECRET_CHARS are not searched for"
        );
        assert_eq!(r.redact("user=me password=p"), "user=me password=***");
    }
}
