//! Escaping untrusted text before it reaches a terminal or a log line.
//!
//! Text a step or a reviewed file chooses (file names, link targets,
//! purposes, stream bytes) is hostile: a newline can fake a line of our
//! output, ESC can drive the terminal, CR can overwrite what came before,
//! and bidirectional overrides can reorder what a reader sees ("Trojan
//! Source"). This module owns the one rule for showing such text: every
//! such character is written as a visible Rust-style escape (`\n`, `\r`,
//! `\u{1b}`, `\u{202e}`), so the text stays on one line and shows what it
//! holds.
//!
//! It never redacts: it does not know secret values. A caller that shows
//! step-chosen text redacts it first, as a value, with the secrets
//! module's `Redactor`, and then escapes it here; escaping first would
//! change the value's bytes so the redactor could no longer find them.
//! Output formats other than a terminal (Markdown) add their own rules on
//! top of this one (see `review`).

/// Characters that can hide or reorder text on a terminal or a web page:
/// C0/C1 controls (newline, CR, ESC and the rest) and the Unicode
/// bidirectional controls.
fn is_deceptive(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `value` with every deceptive character written as a Rust-style escape
/// (`\n`, `\u{1b}`, `\u{202e}`); everything else as it is.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_bidi_characters_are_shown_not_obeyed() {
        assert_eq!(
            escape_for_terminal("a\nb\rc\u{1b}[2Jd\u{202e}e\u{2066}"),
            "a\\nb\\rc\\u{1b}[2Jd\\u{202e}e\\u{2066}"
        );
        assert_eq!(escape_for_terminal("plain/path.txt"), "plain/path.txt");
    }

    #[test]
    fn bytes_that_are_not_utf8_are_written_as_hex_escapes() {
        assert_eq!(
            escape_bytes_for_terminal(b"ok\xff\xfe\n\xc3\xa9"),
            "ok\\xff\\xfe\\n\u{e9}"
        );
    }
}
