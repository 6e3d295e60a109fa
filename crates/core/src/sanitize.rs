//! Neutralizing untrusted text before a terminal or a log file sees it.
//!
//! Every string a step or a reviewed file chooses — a step's stdout and
//! stderr, an output file name, a purpose, a host path, a name in a record —
//! is hostile to the terminal that shows it: a carriage return or an erase
//! sequence can overwrite the runner's own line (`cordon: step … succeeded`),
//! an OSC sequence can retitle the window or set the clipboard, a
//! right-to-left override can reorder what the reader sees, and a control
//! byte between the characters of a secret can keep it from being matched
//! while the terminal still draws it whole. This module owns the one way
//! Cordon neutralizes such text:
//!
//! - [`escape_for_terminal`]: one string (a name, a path, a purpose) for a
//!   line of the runner's own output. Every control character (newlines
//!   included) and every bidirectional control is written as a Rust-style
//!   escape (`\n`, `\u{1b}`, `\u{202e}`), so the value stays on one line and
//!   shows what it holds.
//! - [`StreamSanitizer`]: a step's stdout or stderr, byte by byte, before
//!   redaction. Whole CSI sequences and OSC (DCS, APC, …) strings are removed;
//!   every other control byte except `\n` and `\t`, every C1 control, every
//!   bidirectional control and every byte that is not UTF-8 is written
//!   visibly (`\x0d`, `\x08`, `\u{202e}`, `\xff`). The result is UTF-8 a
//!   terminal draws as it is, and a value with escape sequences between its
//!   characters becomes contiguous again, so the redactor finds it.
//!
//! What it must never do: drop or reorder printable text, interpret a
//! sequence (no colors, no cursor moves), hold back more than
//! [`MAX_SEQUENCE`] bytes, or see a secret value: redaction is
//! [`cordon_secrets::Redactor`]'s job and runs on this module's output.

/// Characters that can hide or reorder text on a terminal or a web page:
/// C0/C1 controls (newlines included) and the Unicode bidirectional
/// controls ("Trojan Source": U+200E/U+200F marks, U+202A–U+202E embeddings
/// and overrides, U+2066–U+2069 isolates).
pub fn is_deceptive(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `value` with every deceptive character (see [`is_deceptive`]) written as
/// a Rust-style escape (`\n`, `\r`, `\u{1b}`, `\u{202e}`), so it stays on
/// one line of the runner's output and shows what it holds. Printable text,
/// backslashes included, is kept as it is. Escaping twice changes nothing
/// more: the result holds no deceptive character.
pub fn escape_for_terminal(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if is_deceptive(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Like [`escape_for_terminal`], for bytes that need not be UTF-8 (a file
/// name, a stream): valid UTF-8 is escaped as text, every byte that is not
/// part of valid UTF-8 is written as `\xNN`, so nothing is lost or
/// replaced by a lookalike.
pub fn escape_bytes_for_terminal(value: &[u8]) -> String {
    let mut out = String::with_capacity(value.len());
    for chunk in value.utf8_chunks() {
        out.push_str(&escape_for_terminal(chunk.valid()));
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// [`escape_for_terminal`] for a message that is several lines by design
/// (an error with its `fix:` line): each line is escaped, the line breaks
/// between them are kept. Values placed inside such a message must be
/// escaped where they are placed, or a newline in one can still start a
/// line of its own.
pub fn escape_lines(message: &str) -> String {
    message
        .split('\n')
        .map(escape_for_terminal)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Longest escape sequence held back while its end has not arrived. A
/// step that opens an OSC string and never closes it would otherwise make
/// the runner buffer without bound; past this length the `ESC` is written
/// visibly and what follows is shown as text. 4 KiB holds an OSC 8
/// hyperlink with any practical URL.
pub const MAX_SEQUENCE: usize = 4096;

const ESC: u8 = 0x1b;
const BEL: u8 = 0x07;

/// How a held-back sequence ended.
enum Sequence {
    /// Not complete yet: more bytes are needed.
    Open,
    /// A whole sequence of this many bytes: removed.
    Whole(usize),
    /// Not a valid sequence: the `ESC` is written visibly.
    Broken,
}

/// Whether `s` (starting with `ESC`) is a whole escape sequence, a prefix
/// of one, or not one. Removed whole (ECMA-48): `ESC [` CSI (parameters
/// `0x30..=0x3f`, intermediates `0x20..=0x2f`, a final `0x40..=0x7e`), and
/// `ESC ]` OSC and `ESC P`/`X`/`^`/`_` strings ended by BEL or `ESC \`.
fn sequence(s: &[u8]) -> Sequence {
    let Some(&kind) = s.get(1) else {
        return Sequence::Open;
    };
    match kind {
        b'[' => {
            for (i, &b) in s.iter().enumerate().skip(2) {
                match b {
                    0x20..=0x3f => {}
                    0x40..=0x7e => return Sequence::Whole(i + 1),
                    _ => return Sequence::Broken,
                }
            }
            Sequence::Open
        }
        b']' | b'P' | b'X' | b'^' | b'_' => {
            let mut i = 2;
            while i < s.len() {
                match s[i] {
                    BEL => return Sequence::Whole(i + 1),
                    ESC => {
                        return match s.get(i + 1) {
                            None => Sequence::Open,
                            Some(b'\\') => Sequence::Whole(i + 2),
                            Some(_) => Sequence::Broken,
                        };
                    }
                    // A line break or another control inside the string: not
                    // a sequence a well-behaved program writes.
                    b'\n' | b'\r' | 0x00 => return Sequence::Broken,
                    _ => i += 1,
                }
            }
            Sequence::Open
        }
        // Every other escape (`ESC 7`, `ESC c`, `ESC ( B`) is written
        // visibly rather than removed: removing it would also remove the
        // byte after the `ESC`, which may be part of a secret value.
        _ => Sequence::Broken,
    }
}

/// Writes `\xNN` for byte `b`.
fn push_byte_escape(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(&[b'\\', b'x', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
}

/// A step's output stream made safe to show: see the module doc. Feed it
/// bytes as the step writes them ([`StreamSanitizer::push`]); it holds back
/// at most an unfinished escape sequence (up to [`MAX_SEQUENCE`] bytes) or
/// an unfinished UTF-8 character, and [`StreamSanitizer::finish`] writes
/// what is held back, visibly.
#[derive(Debug, Default)]
pub struct StreamSanitizer {
    held: Vec<u8>,
    /// Backslashes the step wrote that are not written out yet: doubled
    /// when what follows is shown as an escape, so `\` then a CR reads
    /// back as a backslash and a CR (`\\\x0d`), not as the text `\x0d`.
    backslashes: usize,
    /// Whether anything was removed or escaped so far.
    changed: bool,
}

impl StreamSanitizer {
    /// A sanitizer with nothing held back.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether any byte so far was removed or escaped.
    pub fn changed(&self) -> bool {
        self.changed
    }

    /// Sanitizes `data` (the next bytes of the stream) onto `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.held.is_empty() {
            let done = self.run(data, out, false);
            self.held.extend_from_slice(&data[done..]);
        } else {
            let mut all = std::mem::take(&mut self.held);
            all.extend_from_slice(data);
            let done = self.run(&all, out, false);
            self.held.extend_from_slice(&all[done..]);
        }
    }

    /// Writes what is held back (an unfinished sequence or character,
    /// visibly) onto `out`. The sanitizer can be used again afterwards.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let all = std::mem::take(&mut self.held);
        let done = self.run(&all, out, true);
        debug_assert_eq!(done, all.len());
    }

    /// Sanitizes a whole text at once.
    pub fn sanitize(data: &[u8]) -> (Vec<u8>, bool) {
        let mut s = StreamSanitizer::new();
        let mut out = Vec::with_capacity(data.len());
        s.push(data, &mut out);
        s.finish(&mut out);
        (out, s.changed)
    }

    /// Sanitizes `data` onto `out` and returns how many bytes it consumed;
    /// the rest (an unfinished sequence or character) waits for more,
    /// unless `last`.
    fn run(&mut self, data: &[u8], out: &mut Vec<u8>, last: bool) -> usize {
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            match b {
                b'\\' => {
                    self.backslashes += 1;
                    i += 1;
                }
                b'\n' | b'\t' | 0x20..=0x7e => {
                    // The common case: a run of printable ASCII.
                    let run = data[i..]
                        .iter()
                        .position(|&b| !matches!(b, b'\n' | b'\t' | 0x20..=0x7e) || b == b'\\')
                        .unwrap_or(data.len() - i);
                    self.text(out);
                    out.extend_from_slice(&data[i..i + run]);
                    i += run;
                }
                ESC => {
                    let window = &data[i..data.len().min(i + MAX_SEQUENCE)];
                    match sequence(window) {
                        Sequence::Whole(n) => {
                            self.changed = true;
                            i += n;
                        }
                        Sequence::Open if !last && window.len() < MAX_SEQUENCE => return i,
                        Sequence::Open | Sequence::Broken => {
                            self.escape(out);
                            push_byte_escape(out, ESC);
                            i += 1;
                        }
                    }
                }
                0x00..=0x1f | 0x7f => {
                    self.escape(out);
                    push_byte_escape(out, b);
                    i += 1;
                }
                _ => {
                    let need = match b {
                        0xc2..=0xdf => 2,
                        0xe0..=0xef => 3,
                        0xf0..=0xf4 => 4,
                        _ => 1,
                    };
                    if i + need > data.len() && !last {
                        // Possibly the start of a character cut by the write.
                        let tail = &data[i..];
                        if std::str::from_utf8(tail)
                            .err()
                            .is_some_and(|e| e.error_len().is_none())
                        {
                            return i;
                        }
                    }
                    match data
                        .get(i..i + need)
                        .and_then(|s| std::str::from_utf8(s).ok())
                    {
                        Some(s) => {
                            let c = s.chars().next().unwrap_or('\u{fffd}');
                            if is_deceptive(c) {
                                self.escape(out);
                                out.extend(c.escape_unicode().to_string().bytes());
                            } else {
                                self.text(out);
                                out.extend_from_slice(s.as_bytes());
                            }
                            i += need;
                        }
                        None => {
                            self.escape(out);
                            push_byte_escape(out, b);
                            i += 1;
                        }
                    }
                }
            }
        }
        if last {
            self.text(out);
        }
        i
    }

    /// Writes the backslashes held back as they are: text follows.
    fn text(&mut self, out: &mut Vec<u8>) {
        out.extend(std::iter::repeat_n(b'\\', self.backslashes));
        self.backslashes = 0;
    }

    /// Writes the backslashes held back doubled: an escape follows.
    fn escape(&mut self, out: &mut Vec<u8>) {
        self.changed = true;
        out.extend(std::iter::repeat_n(b'\\', 2 * self.backslashes));
        self.backslashes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_that_are_not_utf8_are_written_as_hex_escapes() {
        assert_eq!(
            escape_bytes_for_terminal(b"ok\xff\xfe\n\xc3\xa9"),
            "ok\\xff\\xfe\\n\u{e9}"
        );
    }

    fn clean(data: &[u8]) -> String {
        String::from_utf8(StreamSanitizer::sanitize(data).0).expect("sanitized output is UTF-8")
    }

    #[test]
    fn a_name_cannot_fake_a_line_or_hide_text() {
        assert_eq!(
            escape_for_terminal("data\r\n  ! ESCALATION\u{1b}]0;t\u{7}\u{202e}"),
            "data\\r\\n  ! ESCALATION\\u{1b}]0;t\\u{7}\\u{202e}"
        );
        assert_eq!(escape_for_terminal("plain /path é"), "plain /path é");
        let once = escape_for_terminal("a\u{2066}b\u{85}c");
        assert_eq!(escape_for_terminal(&once), once);
        assert_eq!(
            escape_lines("one \u{1b}[2K\nfix: two\r"),
            "one \\u{1b}[2K\nfix: two\\r"
        );
    }

    #[test]
    fn whole_sequences_are_removed() {
        assert_eq!(clean(b"s\x1b[0me\x1b[1;31mc\x1b]0;title\x07ret"), "secret");
        assert_eq!(clean(b"a\x1b]8;;https://x\x1b\\b\x1bPq\x1b\\c"), "abc");
        assert_eq!(clean(b"\x1b(Bx\x1bcy"), "\\x1b(Bx\\x1bcy");
        assert_eq!(clean(b"\x1b[?25l\x1b[2K\x1b[1Ag"), "g");
    }

    #[test]
    fn other_controls_are_shown_escaped() {
        assert_eq!(
            clean(b"a\rb\x08c\x00d\x7f\te\n"),
            "a\\x0db\\x08c\\x00d\\x7f\te\n"
        );
        assert_eq!(
            clean("x\u{202e}y\u{2066}z\u{9b}w".as_bytes()),
            "x\\u{202e}y\\u{2066}z\\u{9b}w"
        );
        assert_eq!(clean(b"\xff\xfe\x9b[31m"), "\\xff\\xfe\\x9b[31m");
        assert_eq!(clean("é ✓ 😀".as_bytes()), "é ✓ 😀");
    }

    #[test]
    fn backslashes_before_a_shown_escape_are_doubled() {
        assert_eq!(clean(br"C:\dir\file \n"), r"C:\dir\file \n");
        assert_eq!(clean(b"a\\\rb"), r"a\\\x0db");
        assert_eq!(clean(b"a\\\x1b[0m\r"), r"a\\\x0d");
        assert_eq!(clean(b"\\\\\r"), r"\\\\\x0d");
        assert_eq!(clean(b"x\\"), r"x\");
    }

    #[test]
    fn a_broken_or_endless_sequence_shows_its_escape() {
        assert_eq!(clean(b"\x1b[31\nm"), "\\x1b[31\nm");
        assert_eq!(clean(b"\x1b\x01"), "\\x1b\\x01");
        assert_eq!(clean(b"end\x1b"), "end\\x1b");
        let mut endless = b"\x1b]0;".to_vec();
        endless.extend(std::iter::repeat_n(b'a', MAX_SEQUENCE + 10));
        let mut s = StreamSanitizer::new();
        let mut out = Vec::new();
        for chunk in endless.chunks(100) {
            s.push(chunk, &mut out);
            assert!(s.held.len() < MAX_SEQUENCE, "bounded");
        }
        s.finish(&mut out);
        assert!(out.starts_with(b"\\x1b]0;aaa"));
        assert_eq!(out.len(), endless.len() + 3);
    }

    #[test]
    fn sequences_and_characters_split_across_writes_are_handled_whole() {
        let input = "p\x1b[0mq\x1b]0;t\x1b\\r é\u{202e}😀\u{1b}7s\r\n".as_bytes();
        let whole = clean(input);
        assert_eq!(whole, "pqr é\\u{202e}😀\\x1b7s\\x0d\n");
        for cut in 0..=input.len() {
            let mut s = StreamSanitizer::new();
            let mut out = Vec::new();
            s.push(&input[..cut], &mut out);
            s.push(&input[cut..], &mut out);
            s.finish(&mut out);
            assert_eq!(String::from_utf8(out).unwrap(), whole, "cut at {cut}");
        }
        // One byte at a time.
        let mut s = StreamSanitizer::new();
        let mut out = Vec::new();
        for b in input {
            s.push(std::slice::from_ref(b), &mut out);
        }
        s.finish(&mut out);
        assert_eq!(String::from_utf8(out).unwrap(), whole);
        assert!(s.changed());
    }
}
