//! The names a pipeline file and a manifest give: which characters a
//! pipeline's and a step's name may hold, and how a refused one is shown.
//!
//! A name is chosen by whoever writes the file, and it travels: into the
//! state directory's layout, records, reports, the terminal, and the jobs,
//! keys and labels of an exported GitHub Actions workflow, where a line
//! break, a `#`, a `: ` or a `${{` would be structure instead of text. So a
//! name is a short run of ASCII from a fixed set, checked once, when the
//! file is parsed; nothing downstream has to guess what a name may hold.
//!
//! | name | characters | first | at most |
//! | --- | --- | --- | --- |
//! | step ([`STEP_NAME`]) | `a`–`z`, `0`–`9`, `-` | a letter | 63 |
//! | pipeline ([`PIPELINE_NAME`]) | ASCII letters, digits, `-`, `_`, `.` | a letter or a digit | 128 |
//!
//! A refused name is shown escaped ([`shown`]): every character outside
//! printable ASCII is written as an escape, so the message that names it
//! cannot itself carry a line break or a control sequence.

use std::fmt;

/// One set of names: the characters allowed first and after, and a bound.
#[derive(Debug, Clone, Copy)]
pub struct NameSet {
    /// What is named, for messages (`step name`).
    pub what: &'static str,
    /// Longest name, in characters (all of them ASCII).
    pub max: usize,
    first: fn(char) -> bool,
    rest: fn(char) -> bool,
    /// The set in words, for a `fix:` line.
    pub rule: &'static str,
}

/// Step names: they are also the jobs of an exported workflow, directory
/// names of the state directory and the `--step` argument, so the set is
/// the narrowest that reads well in all of them.
pub const STEP_NAME: NameSet = NameSet {
    what: "step name",
    max: 63,
    first: |c| c.is_ascii_lowercase(),
    rest: |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-',
    rule: "use lowercase letters, digits and `-`, starting with a letter (at most 63 characters)",
};

/// Pipeline names: what the existing pipelines use (`churn-model`,
/// `wide-train`, file stems such as `pipeline`), with `_` and `.` for
/// names taken from file stems; no space, quote, `#`, `:`, `$` or braces.
pub const PIPELINE_NAME: NameSet = NameSet {
    what: "pipeline name",
    max: 128,
    first: |c| c.is_ascii_alphanumeric(),
    rest: |c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'),
    rule: "use ASCII letters, digits, `-`, `_` and `.`, starting with a letter or a digit (at most 128 characters)",
};

/// Why a name is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// The name is empty.
    Empty,
    /// The name is longer than the set allows.
    TooLong {
        /// Its length in characters.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A character the set does not allow where it stands.
    Char {
        /// The character.
        ch: char,
        /// Its 1-based position, in characters.
        position: usize,
    },
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => write!(f, "it is empty"),
            NameError::TooLong { len, max } => {
                write!(f, "it is {len} characters long, more than {max}")
            }
            NameError::Char { ch, position } => write!(
                f,
                "{} at character {position} is not allowed",
                character(*ch)
            ),
        }
    }
}

impl NameSet {
    /// Checks `name` against the set: the first character refused, if any,
    /// then the length.
    pub fn check(&self, name: &str) -> Result<(), NameError> {
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        for (i, ch) in name.chars().enumerate() {
            let ok = if i == 0 {
                (self.first)(ch)
            } else {
                (self.rest)(ch)
            };
            if !ok {
                return Err(NameError::Char {
                    ch,
                    position: i + 1,
                });
            }
        }
        // Every character is ASCII by now: bytes are characters.
        if name.len() > self.max {
            return Err(NameError::TooLong {
                len: name.len(),
                max: self.max,
            });
        }
        Ok(())
    }

    /// Whether `name` is in the set.
    pub fn is_valid(&self, name: &str) -> bool {
        self.check(name).is_ok()
    }

    /// The message for a refused `name`: what it is, shown escaped, and
    /// why (`` step name `a\nb` is invalid: U+000A (a line break) at character 2 is not allowed ``).
    pub fn refusal(&self, name: &str, why: &NameError) -> String {
        format!("{} `{}` is invalid: {why}", self.what, shown(name))
    }
}

/// Longest part of a refused name a message shows: a name of a megabyte
/// stays one line of the terminal.
const SHOWN_MAX: usize = 80;

/// `name` for a message: printable ASCII as it is, every other character
/// escaped (`\n`, `\u{2028}`), at most [`SHOWN_MAX`] characters of it.
pub fn shown(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if i == SHOWN_MAX {
            out.push_str("...");
            break;
        }
        if c.is_ascii_graphic() || c == ' ' {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    out
}

/// One character for a message: its code point, the character itself when
/// it is printable ASCII, and what it is when it breaks lines or is
/// invisible.
fn character(c: char) -> String {
    let code = format!("U+{:04X}", c as u32);
    match c {
        ' ' => format!("{code} (a space)"),
        '`' => format!("{code} (a backtick)"),
        _ if c.is_ascii_graphic() => format!("`{c}` ({code})"),
        '\n' | '\r' | '\u{0b}' | '\u{0c}' | '\u{85}' | '\u{2028}' | '\u{2029}' => {
            format!("{code} (a line break)")
        }
        _ if c.is_control() => format!("{code} (a control character)"),
        _ => format!("{code} ({})", c.escape_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_in_use_today_are_valid() {
        for name in [
            "churn-model",
            "wide-train",
            "pipeline",
            "p",
            "test",
            "ml_v2.1",
        ] {
            assert!(PIPELINE_NAME.is_valid(name), "{name}");
        }
        for name in ["validate", "train", "a", "hello-rs", "s3-sync"] {
            assert!(STEP_NAME.is_valid(name), "{name}");
        }
    }

    #[test]
    fn a_line_break_of_any_kind_is_refused_and_shown_escaped() {
        for brk in ['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}'] {
            let name = format!("a{brk}b");
            let why = PIPELINE_NAME.check(&name).unwrap_err();
            assert_eq!(
                why,
                NameError::Char {
                    ch: brk,
                    position: 2
                }
            );
            let message = PIPELINE_NAME.refusal(&name, &why);
            assert!(message.contains("a line break"), "{message}");
            assert!(
                message.chars().all(|c| c.is_ascii_graphic() || c == ' '),
                "{message:?}"
            );
        }
    }

    #[test]
    fn workflow_syntax_is_refused_in_pipeline_names() {
        for name in [
            "a b",
            "a#b",
            "a:b",
            "${{ github.head_ref }}",
            "a\"b",
            "a'b",
            "-a",
            ".a",
            "_a",
        ] {
            assert!(!PIPELINE_NAME.is_valid(name), "{name}");
        }
        assert_eq!(PIPELINE_NAME.check(""), Err(NameError::Empty));
        assert!(PIPELINE_NAME.is_valid(&"a".repeat(128)));
        assert_eq!(
            PIPELINE_NAME.check(&"a".repeat(129)),
            Err(NameError::TooLong { len: 129, max: 128 })
        );
    }

    #[test]
    fn the_step_name_set_is_the_one_manifests_always_had() {
        for name in ["Bad", "a_b", "1a", "-a", "a.b", "a b"] {
            assert!(!STEP_NAME.is_valid(name), "{name}");
        }
        assert!(STEP_NAME.is_valid(&"a".repeat(63)));
        assert!(!STEP_NAME.is_valid(&"a".repeat(64)));
    }

    #[test]
    fn a_huge_name_is_shown_cut() {
        let s = shown(&"x".repeat(10_000));
        assert_eq!(s.len(), SHOWN_MAX + 3);
    }
}
