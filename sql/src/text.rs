//! Statement text as the client sent it: bytes in the connection's
//! character set, which the proxy must pass on unchanged.
//!
//! Analysis (the lexer, the SQL parser) reads a `str`. A statement that is
//! not plain UTF-8 — latin1 or gbk text, binary data inside a string
//! literal — gets an analysis text in which every byte that is not part of
//! a UTF-8 character (in the connection's character set) stands for itself
//! as one private-use character, U+10FF00 + byte. Those characters never
//! start a token of their own, so the statement lexes and parses as the
//! server reads it; and [`restore`] turns any text cut from it (a node's
//! statement, with table names spliced in) back into the client's bytes,
//! exactly. In a multi-byte character set whose characters may hold an
//! ASCII byte (gbk's 0x5C, `\`), the whole character stands for itself,
//! so the lexer never takes it for an escape.

use std::borrow::Cow;

use encoding_rs::Encoding;

/// The first of the 256 characters that stand for raw bytes.
const RAW_BASE: u32 = 0x10_FF00;

/// How a client character set's bytes form characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// utf8mb3 / utf8mb4.
    Utf8,
    /// Multi-byte, the bytes after the first of a character may be ASCII
    /// (0x40..=0x7E): gbk, big5, sjis, cp932, gb18030.
    AsciiTrail { lead_from: u8 },
    /// Every byte >= 0x80 is part of a non-ASCII character and ASCII bytes
    /// are always themselves: latin1 and the other single-byte sets, EUC.
    Other,
}

/// The character set a client's statements are written in
/// (`character_set_client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientCharset {
    name: &'static str,
    layout: Layout,
    /// How its text decodes (for sharding values); None: binary, bytes as they are.
    encoding: Option<&'static Encoding>,
}

impl ClientCharset {
    pub const UTF8: ClientCharset = ClientCharset {
        name: "utf8mb4",
        layout: Layout::Utf8,
        encoding: Some(encoding_rs::UTF_8),
    };

    /// The character set MariaDB calls `name` (`utf8mb4`, `latin1`, `gbk`, ...).
    pub fn named(name: &str) -> ClientCharset {
        use encoding_rs as e;
        let (name, layout, encoding): (&'static str, Layout, Option<&'static Encoding>) =
            match name.to_ascii_lowercase().as_str() {
                "utf8" | "utf8mb3" => ("utf8mb3", Layout::Utf8, Some(e::UTF_8)),
                "utf8mb4" => ("utf8mb4", Layout::Utf8, Some(e::UTF_8)),
                "gbk" => ("gbk", Layout::AsciiTrail { lead_from: 0x81 }, Some(e::GBK)),
                "gb2312" => ("gb2312", Layout::Other, Some(e::GBK)),
                "gb18030" => (
                    "gb18030",
                    Layout::AsciiTrail { lead_from: 0x81 },
                    Some(e::GB18030),
                ),
                "big5" => (
                    "big5",
                    Layout::AsciiTrail { lead_from: 0xA1 },
                    Some(e::BIG5),
                ),
                "sjis" => (
                    "sjis",
                    Layout::AsciiTrail { lead_from: 0x81 },
                    Some(e::SHIFT_JIS),
                ),
                "cp932" => (
                    "cp932",
                    Layout::AsciiTrail { lead_from: 0x81 },
                    Some(e::SHIFT_JIS),
                ),
                "binary" => ("binary", Layout::Other, None),
                // MariaDB's latin1 is Windows-1252.
                "latin1" => ("latin1", Layout::Other, Some(e::WINDOWS_1252)),
                "ujis" => ("ujis", Layout::Other, Some(e::EUC_JP)),
                "eucjpms" => ("eucjpms", Layout::Other, Some(e::EUC_JP)),
                "euckr" => ("euckr", Layout::Other, Some(e::EUC_KR)),
                "latin2" => ("latin2", Layout::Other, Some(e::ISO_8859_2)),
                "cp1250" => ("cp1250", Layout::Other, Some(e::WINDOWS_1250)),
                "cp1251" => ("cp1251", Layout::Other, Some(e::WINDOWS_1251)),
                "cp1256" => ("cp1256", Layout::Other, Some(e::WINDOWS_1256)),
                "cp1257" => ("cp1257", Layout::Other, Some(e::WINDOWS_1257)),
                "greek" => ("greek", Layout::Other, Some(e::ISO_8859_7)),
                "hebrew" => ("hebrew", Layout::Other, Some(e::ISO_8859_8)),
                "latin5" => ("latin5", Layout::Other, Some(e::WINDOWS_1254)),
                "latin7" => ("latin7", Layout::Other, Some(e::ISO_8859_13)),
                "koi8r" => ("koi8r", Layout::Other, Some(e::KOI8_R)),
                "koi8u" => ("koi8u", Layout::Other, Some(e::KOI8_U)),
                "tis620" => ("tis620", Layout::Other, Some(e::WINDOWS_874)),
                "cp866" => ("cp866", Layout::Other, Some(e::IBM866)),
                "ascii" => ("ascii", Layout::Other, Some(e::WINDOWS_1252)),
                // Single-byte sets without a decoder here: their bytes still
                // pass unchanged; only string sharding values need decoding.
                _ => ("binary", Layout::Other, None),
            };
        ClientCharset {
            name,
            layout,
            encoding,
        }
    }

    /// Its name in SQL (`_latin1 X'E9'`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Decodes a value of the client's text to UTF-8 (invalid sequences
    /// become U+FFFD).
    pub fn decode<'a>(&self, bytes: &'a [u8]) -> Cow<'a, str> {
        match self.encoding {
            Some(encoding) => encoding.decode_without_bom_handling(bytes).0,
            None => String::from_utf8_lossy(bytes),
        }
    }
}

/// The text the proxy analyses for a statement's bytes: the bytes
/// themselves when they are UTF-8 in a UTF-8 connection (or ASCII), else
/// with raw bytes standing for themselves (see the module's doc).
pub fn analysis_text(bytes: &[u8], charset: ClientCharset) -> Cow<'_, str> {
    if bytes.is_ascii() {
        // ASCII is itself in every client character set.
        return Cow::Borrowed(std::str::from_utf8(bytes).unwrap_or_default());
    }
    if charset.layout == Layout::Utf8 && !holds_raw_characters(bytes) {
        if let Ok(text) = std::str::from_utf8(bytes) {
            return Cow::Borrowed(text);
        }
    }
    let mut out = String::with_capacity(bytes.len() * 2);
    let raw = |out: &mut String, b: u8| {
        out.push(char::from_u32(RAW_BASE + u32::from(b)).unwrap_or('\u{FFFD}'))
    };
    match charset.layout {
        Layout::Utf8 => {
            for chunk in bytes.utf8_chunks() {
                for c in chunk.valid().chars() {
                    if is_raw(c) {
                        // A character of the raw range the client really
                        // sent stands for its own bytes, so restore is exact.
                        let mut buf = [0; 4];
                        for &b in c.encode_utf8(&mut buf).as_bytes() {
                            raw(&mut out, b);
                        }
                    } else {
                        out.push(c);
                    }
                }
                for &b in chunk.invalid() {
                    raw(&mut out, b);
                }
            }
        }
        Layout::AsciiTrail { lead_from } => {
            let mut i = 0;
            while i < bytes.len() {
                let b = bytes[i];
                if b < 0x80 {
                    out.push(char::from(b));
                    i += 1;
                    continue;
                }
                raw(&mut out, b);
                i += 1;
                if b >= lead_from && b != 0xFF {
                    if let Some(&trail) = bytes.get(i) {
                        if trail >= 0x40 && trail != 0x7F {
                            raw(&mut out, trail);
                            i += 1;
                        }
                    }
                }
            }
        }
        Layout::Other => {
            for &b in bytes {
                if b < 0x80 {
                    out.push(char::from(b));
                } else {
                    raw(&mut out, b);
                }
            }
        }
    }
    Cow::Owned(out)
}

fn is_raw(c: char) -> bool {
    (RAW_BASE..=RAW_BASE + 0xFF).contains(&u32::from(c))
}

/// Whether UTF-8 `bytes` hold characters of the raw range (U+10FF00..):
/// their encoding starts F4 8F BC..BF.
fn holds_raw_characters(bytes: &[u8]) -> bool {
    bytes
        .windows(3)
        .any(|w| w[0] == 0xF4 && w[1] == 0x8F && (0xBC..=0xBF).contains(&w[2]))
}

/// The client's bytes of a text cut from an analysis text: characters that
/// stand for raw bytes become those bytes again.
pub fn restore(text: &str) -> Cow<'_, [u8]> {
    if !text.as_bytes().contains(&0xF4) {
        return Cow::Borrowed(text.as_bytes());
    }
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        if is_raw(c) {
            out.push((u32::from(c) - RAW_BASE) as u8);
        } else {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    Cow::Owned(out)
}

/// The length of [`restore`]'s bytes of `text`, without building them: a
/// character of the raw range is one byte.
pub fn restored_len(text: &str) -> usize {
    if !text.as_bytes().contains(&0xF4) {
        return text.len();
    }
    text.chars()
        .map(|c| if is_raw(c) { 1 } else { c.len_utf8() })
        .sum()
}

/// A string value (a literal's contents) from an analysis text, as the
/// server reads it: decoded from the client's character set.
pub fn value_text(value: &str, charset: ClientCharset) -> Cow<'_, str> {
    match restore(value) {
        Cow::Borrowed(_) => Cow::Borrowed(value),
        Cow::Owned(bytes) => Cow::Owned(charset.decode(&bytes).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lex::{Lexer, Token};

    fn latin1() -> ClientCharset {
        ClientCharset::named("latin1")
    }

    #[test]
    fn utf8_and_ascii_are_their_own_analysis_text() {
        let sql = "SELECT 'été' FROM t".as_bytes();
        assert!(matches!(
            analysis_text(sql, ClientCharset::UTF8),
            Cow::Borrowed(_)
        ));
        assert!(matches!(
            analysis_text(b"SELECT 1", latin1()),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn other_bytes_round_trip() {
        let cases: [(&[u8], ClientCharset); 4] = [
            (b"INSERT INTO t VALUES ('\xe9t\xe9')", latin1()),
            (b"SELECT '\x00\xff\xfe' , x", ClientCharset::UTF8),
            (b"SELECT '\xbf\x5c' , 1", ClientCharset::named("gbk")),
            ("SELECT '\u{10FF41}'".as_bytes(), ClientCharset::UTF8),
        ];
        for (bytes, charset) in cases {
            let text = analysis_text(bytes, charset);
            assert_eq!(restore(&text).as_ref(), bytes);
            // Splicing keeps every byte: what is cut is restored exactly.
            let cut = &text[7..];
            assert_eq!(restore(cut).as_ref(), &bytes[7..]);
        }
    }

    #[test]
    fn a_gbk_character_ending_in_a_backslash_byte_is_not_an_escape() {
        // 0xBF 0x5C is one gbk character; the quote after it ends the string.
        let text = analysis_text(b"SELECT '\xbf\x5c', 2", ClientCharset::named("gbk"));
        let tokens: Vec<_> = Lexer::new(&text).map(|s| s.token).collect();
        assert_eq!(tokens.len(), 4, "{tokens:?}");
        assert!(matches!(tokens[3], Token::Number("2")));
    }

    #[test]
    fn values_decode_from_the_client_charset() {
        let text = analysis_text(b"'\xe9t\xe9'", latin1());
        assert_eq!(value_text(&text[1..text.len() - 1], latin1()), "été");
        let text = analysis_text("'été'".as_bytes(), ClientCharset::UTF8);
        assert_eq!(value_text(&text, ClientCharset::UTF8), "'été'");
        let text = analysis_text(b"'\xd6\xd0'", ClientCharset::named("gbk"));
        assert_eq!(value_text(&text, ClientCharset::named("gbk")), "'中'");
    }
}
