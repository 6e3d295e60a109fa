//! Plain-language wording shared by the reviewer tools ([`crate::audit`],
//! [`crate::capdiff`], [`crate::inspect`]), and the rules that keep it
//! honest when rendered.
//!
//! A review report mixes our words with text from the files under review:
//! purposes, host paths, argument values, producer names. That text is
//! untrusted. A manifest must not be able to fake a line of the report (a
//! purpose with a newline and `! ESCALATION` in it), hide text from the
//! terminal (control and bidirectional-override characters), or inject
//! markup into a pull-request comment (a link, an image, an `@` mention, a
//! closing tag). A [`Phrase`] keeps the two kinds apart: our words are
//! written as they are, quoted values are escaped for the output format
//! (for a terminal by [`cordon_core::sanitize`], the one escaping every sink uses).

use cordon_core::sanitize::escape_for_terminal as plain;
use cordon_manifest::manifest::{Classification, Limits, SecretUse};
use std::fmt::Write as _;
use std::time::Duration;

/// The output formats of the reviewer tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Lines for a terminal or a CI log.
    Text,
    /// GitHub-flavoured Markdown, for a pull-request comment.
    Markdown,
    /// One JSON document, for programs.
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Our own words, written as they are.
    Words(String),
    /// An identifier or a path from the reviewed files: `code` in Markdown.
    Code(String),
    /// Free text from the reviewed files (a purpose): quoted.
    Quote(String),
    /// A sentence that mixes our words with text from the reviewed files
    /// (an approval problem naming a file): escaped, not quoted.
    Escaped(String),
}

/// A sentence built from our words and quoted, untrusted values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Phrase(Vec<Piece>);

impl Phrase {
    /// A phrase that starts with our `words`.
    pub fn new(words: impl Into<String>) -> Phrase {
        Phrase(vec![Piece::Words(words.into())])
    }

    /// Appends our own words.
    pub fn words(mut self, words: impl Into<String>) -> Phrase {
        self.0.push(Piece::Words(words.into()));
        self
    }

    /// Appends a name or path taken from a reviewed file.
    pub fn code(mut self, value: impl ToString) -> Phrase {
        self.0.push(Piece::Code(value.to_string()));
        self
    }

    /// Appends free text taken from a reviewed file, in quotes.
    pub fn quote(mut self, value: impl Into<String>) -> Phrase {
        self.0.push(Piece::Quote(value.into()));
        self
    }

    /// Appends a sentence that may quote the reviewed files without
    /// saying where: escaped as a value, shown without quotes.
    pub fn escaped(mut self, value: impl Into<String>) -> Phrase {
        self.0.push(Piece::Escaped(value.into()));
        self
    }

    /// Appends another phrase.
    pub fn then(mut self, other: Phrase) -> Phrase {
        self.0.extend(other.0);
        self
    }

    /// The phrase for a terminal: values with control and bidirectional
    /// characters escaped, free text in double quotes.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Piece::Words(w) => out.push_str(w),
                Piece::Code(c) | Piece::Escaped(c) => out.push_str(&plain(c)),
                Piece::Quote(q) => {
                    out.push('"');
                    out.push_str(&plain(q));
                    out.push('"');
                }
            }
        }
        out
    }

    /// The phrase in Markdown: names and paths as inline code, free text
    /// with every punctuation character escaped, so neither can start a
    /// link, an image, a mention, HTML or a new block.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Piece::Words(w) => out.push_str(w),
                Piece::Code(c) => out.push_str(&md_code(c)),
                Piece::Escaped(t) => out.push_str(&md_text(t)),
                Piece::Quote(q) => {
                    out.push('"');
                    out.push_str(&md_text(q));
                    out.push('"');
                }
            }
        }
        out
    }

    /// The phrase in `format` (JSON gets the text form).
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Markdown => self.markdown(),
            Format::Text | Format::Json => self.text(),
        }
    }
}

impl serde::Serialize for Phrase {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text())
    }
}

/// Punctuation that can start markup in the middle of a GitHub-flavoured
/// Markdown line: emphasis, code, links and images, HTML and entities,
/// tables, strikethrough, math, mentions and issue references, autolinks
/// (`https:`, `www.`), and the backslash itself.
const MARKDOWN_ACTIVE: &str = "\\`*_{}[]<>()#!|~&@:.$";

/// `value` as Markdown text: deceptive characters escaped as in
/// [`escape_for_terminal`](cordon_core::sanitize::escape_for_terminal),
/// and every character that could start markup backslash-escaped
/// (CommonMark allows a backslash before any ASCII punctuation). Our own
/// text always comes first on a line, so line-start markup (`-`, `+`, `1.`)
/// cannot begin inside a value.
pub fn md_text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in plain(value).chars() {
        if MARKDOWN_ACTIVE.contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `value` as a Markdown code span, with a fence longer than any run of
/// backticks inside it.
pub fn md_code(value: &str) -> String {
    let v = plain(value);
    let mut longest = 0;
    let mut run = 0;
    for c in v.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    let pad = if v.starts_with('`') || v.ends_with('`') || v.is_empty() {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{v}{pad}{fence}")
}

/// `value` in a GitHub-flavoured Markdown table cell, as a code span
/// where it can be one: GFM splits a row at every unescaped `|`, code
/// spans included, so `|` is escaped; a value with a backslash is written
/// as [`md_text`] instead, because the row splitter reads `\\|` as an
/// escaped backslash and a cell break, and a code span cannot escape it.
pub fn md_code_cell(value: &str) -> String {
    if value.contains('\\') {
        md_text(value)
    } else {
        md_code(value).replace('|', "\\|")
    }
}

/// A classification as manifests write it.
pub fn classification_name(c: Classification) -> &'static str {
    match c {
        Classification::Public => "public",
        Classification::Internal => "internal",
        Classification::Confidential => "confidential",
        Classification::Restricted => "restricted",
    }
}

/// A secret use as manifests write it.
pub fn use_name(u: SecretUse) -> &'static str {
    match u {
        SecretUse::Hmac => "hmac",
        SecretUse::Sign => "sign",
        SecretUse::HttpHeader => "http-header",
        SecretUse::Reveal => "reveal",
    }
}

/// What use `u` of secret `name` lets a step do, in plain language.
pub fn secret_use_phrase(name: &str, u: SecretUse) -> Phrase {
    match u {
        SecretUse::Hmac => Phrase::new("may compute HMAC-SHA256 with ")
            .code(name)
            .words("; never sees it"),
        SecretUse::Sign => Phrase::new("may sign with ")
            .code(name)
            .words("; never sees it"),
        SecretUse::HttpHeader => Phrase::new("may send ")
            .code(name)
            .words(" as an HTTP header to bound hosts; never sees it"),
        SecretUse::Reveal => Phrase::new("may READ the value of ")
            .code(name)
            .words(" (reveal)"),
    }
}

/// What the `http-header` use of secret `name`, bound to `hosts`, lets a
/// step do.
pub fn http_header_phrase(name: &str, hosts: &[String]) -> Phrase {
    let mut p = Phrase::new("may send ")
        .code(name)
        .words(" as an HTTP header, only to ");
    for (i, h) in hosts.iter().enumerate() {
        if i > 0 {
            p = p.words(", ");
        }
        p = p.code(h);
    }
    p.words("; never sees it")
}

/// `n` with thousands separators: `5,000,000,000`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// A byte size, exact: `128 MiB` when it is a whole number of a binary
/// unit, else bytes (`10,000,000 B`). Reviewers compare limits; a rounded
/// figure would hide a change.
pub fn size(bytes: u64) -> String {
    for (unit, name) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        let u = 1u64 << unit;
        if bytes >= u && bytes.is_multiple_of(u) {
            return format!("{} {name}", count(bytes / u));
        }
    }
    format!("{} B", count(bytes))
}

/// A duration, exact: `2 h`, `5 min`, `60 s`, `250 ms`.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    if ms >= 3_600_000 && ms.is_multiple_of(3_600_000) {
        format!("{} h", count(ms / 3_600_000))
    } else if ms >= 60_000 && ms.is_multiple_of(60_000) {
        format!("{} min", count(ms / 60_000))
    } else if ms >= 1000 && ms.is_multiple_of(1000) {
        format!("{} s", count(ms / 1000))
    } else {
        format!("{} ms", count(ms))
    }
}

/// One limit of a step, for reports and comparisons.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LimitValue {
    /// `fuel`, `memory`, `timeout`, `output` or `stdout` (the manifest key).
    pub name: &'static str,
    /// The value in `unit`.
    pub value: u64,
    /// `instructions` (fuel), `bytes` or `ms`.
    pub unit: &'static str,
    /// The value for people (`128 MiB`).
    pub text: String,
    /// Whether the value is the runner's default for this limit.
    pub default: bool,
}

/// Every limit of `limits`, in manifest order, each marked when it equals
/// the default. The HTTP limits (`requests`, `request-bytes`,
/// `request-timeout`) come last, and only for a step with a network grant,
/// where they mean something.
pub fn limit_values(limits: &Limits, network: bool) -> Vec<LimitValue> {
    let d = Limits::default();
    let bytes = |name, v: u64, dv: u64| LimitValue {
        name,
        value: v,
        unit: "bytes",
        text: size(v),
        default: v == dv,
    };
    vec![
        LimitValue {
            name: "fuel",
            value: limits.fuel,
            unit: "instructions",
            text: count(limits.fuel),
            default: limits.fuel == d.fuel,
        },
        bytes("memory", limits.memory, d.memory),
        LimitValue {
            name: "timeout",
            value: limits.timeout.as_millis() as u64,
            unit: "ms",
            text: duration(limits.timeout),
            default: limits.timeout == d.timeout,
        },
        bytes("output", limits.output, d.output),
        bytes("stdout", limits.stdout, d.stdout),
    ]
    .into_iter()
    .chain(
        network
            .then(|| {
                [
                    LimitValue {
                        name: "requests",
                        value: limits.requests,
                        unit: "requests",
                        text: count(limits.requests),
                        default: limits.requests == d.requests,
                    },
                    bytes("request-bytes", limits.request_bytes, d.request_bytes),
                    LimitValue {
                        name: "request-timeout",
                        value: limits.request_timeout.as_millis() as u64,
                        unit: "ms",
                        text: duration(limits.request_timeout),
                        default: limits.request_timeout == d.request_timeout,
                    },
                ]
            })
            .into_iter()
            .flatten(),
    )
    .collect()
}

/// `items` joined as `a, b and c`.
pub fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => {
            let mut s = init.join(", ");
            let _ = write!(s, " and {last}");
            s
        }
    }
}

/// The noun `word` for `n` things (`1 escalation`, `2 escalations`).
pub fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// An error about a whole file (no line), read like a manifest error:
/// `FILE: what is wrong`, then `fix: ...`.
pub fn file_problem(
    path: &std::path::Path,
    message: impl Into<String>,
    fix: Option<String>,
) -> cordon_manifest::manifest::ManifestError {
    cordon_manifest::manifest::ManifestError {
        path: path.to_path_buf(),
        problems: vec![cordon_manifest::manifest::Problem {
            line: 0,
            column: 0,
            message: message.into(),
            fix,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_purpose_cannot_fake_a_report_line() {
        let p = Phrase::new("purpose: ").quote("data\n  ! ESCALATION none\u{202e}");
        assert_eq!(p.text(), "purpose: \"data\\n  ! ESCALATION none\\u{202e}\"");
        assert!(!p.text().contains('\n'));
    }

    #[test]
    fn a_purpose_cannot_inject_markdown() {
        let p = Phrase::new("").quote("[click](https://x) <img src=x> @admin **no**");
        assert_eq!(
            p.markdown(),
            r#""\[click\]\(https\://x\) \<img src=x\> \@admin \*\*no\*\*""#
        );
        assert_eq!(md_code("a`b"), "``a`b``");
        assert_eq!(md_code("`x"), "`` `x ``");
        assert_eq!(md_code("/in"), "`/in`");
    }

    #[test]
    fn sizes_and_durations_are_exact() {
        assert_eq!(size(128 << 20), "128 MiB");
        assert_eq!(size(1 << 30), "1 GiB");
        assert_eq!(size(10_000_000), "10,000,000 B");
        assert_eq!(size((1 << 20) + 1), "1,048,577 B");
        assert_eq!(count(5_000_000_000), "5,000,000,000");
        assert_eq!(count(999), "999");
        assert_eq!(duration(Duration::from_secs(300)), "5 min");
        assert_eq!(duration(Duration::from_secs(90)), "90 s");
        assert_eq!(duration(Duration::from_millis(250)), "250 ms");
        assert_eq!(duration(Duration::from_secs(7200)), "2 h");
    }

    #[test]
    fn defaults_are_marked() {
        let l = Limits {
            fuel: 7,
            ..Limits::default()
        };
        let v = limit_values(&l, false);
        assert!(!v[0].default && v[1..].iter().all(|x| x.default), "{v:?}");
        assert_eq!(v[2].value, 300_000);
    }

    #[test]
    fn secret_uses_say_whether_the_value_is_seen() {
        assert_eq!(
            secret_use_phrase("k", SecretUse::Sign).text(),
            "may sign with k; never sees it"
        );
        assert_eq!(
            secret_use_phrase("k", SecretUse::Reveal).markdown(),
            "may READ the value of `k` (reveal)"
        );
    }
}

/// What the renderers' property tests compare: the structure a
/// CommonMark parser with GitHub's extensions sees in a document, and
/// strings to feed them.
#[cfg(test)]
pub(crate) mod structure {
    use proptest::prelude::*;
    use pulldown_cmark::{Event, Options, Parser, Tag};

    /// Every block and inline element of `md` as GFM parses it (headings,
    /// tables, rows, cells, lists, items, links, images, emphasis, raw
    /// HTML, breaks), in order, without the text inside. Code spans are
    /// left out: a value may be written as one or as escaped text.
    pub(crate) fn of_markdown(md: &str) -> Vec<String> {
        let options = Options::ENABLE_TABLES
            | Options::ENABLE_STRIKETHROUGH
            | Options::ENABLE_TASKLISTS
            | Options::ENABLE_FOOTNOTES
            | Options::ENABLE_GFM;
        Parser::new_ext(md, options)
            .filter_map(|e| match e {
                Event::Start(t) => Some(format!("<{:?}", t.to_end())),
                Event::End(t) => Some(format!(">{t:?}")),
                Event::Html(_) => Some("html".into()),
                Event::InlineHtml(_) => Some("inline-html".into()),
                Event::FootnoteReference(_) => Some("footnote".into()),
                Event::TaskListMarker(_) => Some("task".into()),
                Event::Rule => Some("rule".into()),
                Event::SoftBreak => Some("soft-break".into()),
                Event::HardBreak => Some("hard-break".into()),
                Event::Text(_) | Event::Code(_) => None,
                Event::InlineMath(_) | Event::DisplayMath(_) => Some("math".into()),
            })
            .collect()
    }

    /// Links, images and raw HTML in `md`: what a step's text must never
    /// open in a document a person clicks through.
    pub(crate) fn active(md: &str) -> usize {
        let options = Options::ENABLE_TABLES | Options::ENABLE_GFM;
        Parser::new_ext(md, options)
            .filter(|e| {
                matches!(
                    e,
                    Event::Start(Tag::Link { .. } | Tag::Image { .. } | Tag::HtmlBlock)
                        | Event::Html(_)
                        | Event::InlineHtml(_)
                )
            })
            .count()
    }

    /// Strings a hostile step or manifest author would try: Markdown,
    /// HTML, links, table pipes, backslashes, line breaks and other
    /// controls, bidirectional overrides, and any Unicode at all.
    pub(crate) fn hostile() -> impl Strategy<Value = String> {
        prop_oneof![
            "[\\[\\]()<>!`*_|\\\\#&:;@~=+.$^{}\"' \n\r\t\u{0}\u{1b}\u{85}\u{2028}\u{202e}a-z0-9/-]{0,40}",
            any::<String>(),
            Just("[approve](https://evil.example/approve)".to_string()),
            Just("<img src=x onerror=alert(1)>".to_string()),
            Just("![x](https://evil.example/x.png)".to_string()),
            Just("https://evil.example www.evil.example a@evil.example".to_string()),
            Just("`| x |` \\| \\\\| \\".to_string()),
            Just("</td></tr></table><script>alert(1)</script>".to_string()),
            Just("\n# heading\n\n| a | b |\n| - | - |\n".to_string()),
        ]
    }
}
