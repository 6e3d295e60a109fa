//! in-toto artifact rules, as `in-toto-verify` (PyPI `in-toto` 3.x,
//! `in_toto.rulelib`) reads them from a layout.
//!
//! A step's or inspection's rules are applied in order to a queue holding
//! its materials (or products): `ALLOW`, `CREATE` and `MATCH` consume the
//! artifacts they apply to, `DISALLOW` fails when any artifact it names is
//! still queued, and `REQUIRE` fails when the one file it names is not
//! queued. So every rule list here ends with a `DISALLOW` or an `ALLOW *`
//! that says what happens to the rest, and `REQUIRE` rules come before
//! anything consumes.
//!
//! Patterns are Python `fnmatch` globs, where `*` also matches `/`; a path
//! is turned into a pattern with [`literal`], so a file or directory whose
//! name holds `*`, `?` or `[` matches only itself. `REQUIRE` takes a file
//! name, not a pattern, and is never escaped.

use serde_json::{Value, json};

/// One artifact rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// `ALLOW <pattern>`: consume what matches.
    Allow(String),
    /// `DISALLOW <pattern>`: fail if anything still queued matches.
    Disallow(String),
    /// `CREATE <pattern>`: consume products that are not materials.
    Create(String),
    /// `REQUIRE <file>`: fail unless this exact file is still queued.
    Require(String),
    /// `MATCH <pattern> WITH PRODUCTS FROM <step>`: consume what matches and
    /// has the same name and digest among `step`'s products.
    MatchProducts {
        /// Which queued artifacts to match.
        pattern: String,
        /// The step whose products they must equal.
        step: String,
    },
}

impl Rule {
    /// The rule as the layout's JSON holds it: a list of words.
    pub fn to_json(&self) -> Value {
        match self {
            Rule::Allow(p) => json!(["ALLOW", p]),
            Rule::Disallow(p) => json!(["DISALLOW", p]),
            Rule::Create(p) => json!(["CREATE", p]),
            Rule::Require(f) => json!(["REQUIRE", f]),
            Rule::MatchProducts { pattern, step } => {
                json!(["MATCH", pattern, "WITH", "PRODUCTS", "FROM", step])
            }
        }
    }
}

/// The rules as a JSON list.
pub fn to_json(rules: &[Rule]) -> Value {
    Value::Array(rules.iter().map(Rule::to_json).collect())
}

/// A glob that matches exactly `path`: `fnmatch`'s metacharacters `*`, `?`
/// and `[` are each put in a one-character class.
pub fn literal(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '*' | '?' | '[' => {
                out.push('[');
                out.push(c);
                out.push(']');
            }
            c => out.push(c),
        }
    }
    out
}

/// A glob for everything below the directory `dir` (base-relative; empty
/// for the base directory itself).
pub fn under(dir: &str) -> String {
    if dir.is_empty() {
        "*".into()
    } else {
        format!("{}/*", literal(dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_have_the_in_toto_word_forms() {
        assert_eq!(
            Rule::MatchProducts {
                pattern: "a/*".into(),
                step: "train".into()
            }
            .to_json(),
            json!(["MATCH", "a/*", "WITH", "PRODUCTS", "FROM", "train"])
        );
        assert_eq!(
            Rule::Require("a/b".into()).to_json(),
            json!(["REQUIRE", "a/b"])
        );
        assert_eq!(
            to_json(&[Rule::Allow("x".into()), Rule::Disallow("*".into())]),
            json!([["ALLOW", "x"], ["DISALLOW", "*"]])
        );
    }

    #[test]
    fn glob_metacharacters_in_names_match_only_themselves() {
        assert_eq!(literal("data/a*b?[c].txt"), "data/a[*]b[?][[]c].txt");
        assert_eq!(under(""), "*");
        assert_eq!(under("out/[x]"), "out/[[]x]/*");
    }
}
