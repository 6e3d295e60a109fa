//! Structured mutations of a valid document: what a fuzz target feeds a
//! parser besides plain arbitrary bytes. Arbitrary bytes rarely get past a
//! JSON or TOML parser's first byte; a valid document with one field
//! changed, removed or added, or with its text cut short or a few bytes
//! flipped, reaches the checks behind the parser.

use proptest::prelude::*;
use proptest::sample::Index;

/// Strings a hostile writer would try: separators and escapes of the
/// formats involved, path tricks, line and paragraph separators, controls,
/// digests one character off, and multibyte characters where a byte count
/// might cut one in half.
pub const AWKWARD: &[&str] = &[
    "",
    "\0",
    "\n",
    "\r\n",
    "\u{2028}",
    "\u{2029}",
    "\u{85}",
    "\u{1b}[31m",
    "\"",
    "'",
    "\\",
    "${{ github.head_ref }}",
    "${data_root}",
    "../../etc/passwd",
    "/",
    ".",
    "..",
    "a/../b",
    "%2e%2e",
    "é",
    "ééééééééé",
    "\u{10ffff}",
    "sha256:",
    "sha256:0000000000000000000000000000000000000000000000000000000000000000",
    "sha256:000000000000000000000000000000000000000000000000000000000000000",
    "sha256:000000000000000000000000000000000000000000000000000000000000000é",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "-1",
    "18446744073709551616",
    "1e999",
    "NaN",
    "cordon-secret:",
];

/// A string: one of [`AWKWARD`], or arbitrary printable Unicode.
pub fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(AWKWARD).prop_map(String::from),
        "\\PC{0,24}",
        any::<String>().prop_map(|s| s.chars().take(24).collect()),
    ]
}

/// A JSON value to put where a field was: any type, numbers at their
/// edges, strings from [`string`], small nested arrays and objects.
pub fn json_value() -> BoxedStrategy<serde_json::Value> {
    use serde_json::{Value, json};
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop_oneof![
            Just(json!(0)),
            Just(json!(-1)),
            Just(json!(u64::MAX)),
            Just(json!(i64::MIN)),
            Just(json!(1.5)),
            Just(json!(f64::MAX)),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
        ],
        string().prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            proptest::collection::vec((string(), inner), 0..3)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
    .boxed()
}

/// A TOML value to put where a key was: any type, integers and floats at
/// their edges (infinities and NaN included), strings from [`string`].
pub fn toml_value() -> BoxedStrategy<toml::Value> {
    use toml::Value;
    let leaf = prop_oneof![
        any::<bool>().prop_map(Value::Boolean),
        prop_oneof![
            Just(0i64),
            Just(-1),
            Just(i64::MAX),
            Just(i64::MIN),
            any::<i64>()
        ]
        .prop_map(Value::Integer),
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(-0.0),
            Just(1e300),
            any::<f64>()
        ]
        .prop_map(Value::Float),
        string().prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            proptest::collection::vec((string(), inner), 0..3)
                .prop_map(|kv| Value::Table(kv.into_iter().collect())),
        ]
    })
    .boxed()
}

/// One change to a tree-shaped document (JSON or TOML). The node is
/// chosen by an index into every node of the document in order.
#[derive(Debug, Clone)]
pub enum Edit<V> {
    /// The node becomes `V`.
    Replace(Index, V),
    /// The node goes (from its object or array).
    Remove(Index),
    /// The object gains a key (an unknown field, or a duplicate meaning).
    Add(Index, String, V),
}

fn edits<V: std::fmt::Debug + Clone>(
    value: impl Strategy<Value = V> + Clone,
) -> impl Strategy<Value = Vec<Edit<V>>> {
    let edit = prop_oneof![
        4 => (any::<Index>(), value.clone()).prop_map(|(i, v)| Edit::Replace(i, v)),
        2 => any::<Index>().prop_map(Edit::Remove),
        1 => (any::<Index>(), string(), value).prop_map(|(i, k, v)| Edit::Add(i, k, v)),
    ];
    proptest::collection::vec(edit, 1..4)
}

/// A tree the edits can walk: JSON values and TOML values.
trait Tree: Sized {
    fn children(&mut self) -> Vec<&mut Self>;
    fn count(&mut self) -> usize {
        1 + self
            .children()
            .into_iter()
            .map(|c| c.count())
            .sum::<usize>()
    }
    /// Removes child `n` (in [`Tree::children`] order).
    fn remove_child(&mut self, n: usize);
    fn add(&mut self, key: String, value: Self) -> bool;
}

impl Tree for serde_json::Value {
    fn children(&mut self) -> Vec<&mut Self> {
        match self {
            serde_json::Value::Array(a) => a.iter_mut().collect(),
            serde_json::Value::Object(o) => o.values_mut().collect(),
            _ => Vec::new(),
        }
    }
    fn remove_child(&mut self, n: usize) {
        match self {
            serde_json::Value::Array(a) => {
                a.remove(n);
            }
            serde_json::Value::Object(o) => {
                let k = o.keys().nth(n).cloned().expect("child exists");
                o.remove(&k);
            }
            _ => {}
        }
    }
    fn add(&mut self, key: String, value: Self) -> bool {
        match self {
            serde_json::Value::Object(o) => {
                o.insert(key, value);
                true
            }
            _ => false,
        }
    }
}

impl Tree for toml::Value {
    fn children(&mut self) -> Vec<&mut Self> {
        match self {
            toml::Value::Array(a) => a.iter_mut().collect(),
            toml::Value::Table(t) => t.iter_mut().map(|(_, v)| v).collect(),
            _ => Vec::new(),
        }
    }
    fn remove_child(&mut self, n: usize) {
        match self {
            toml::Value::Array(a) => {
                a.remove(n);
            }
            toml::Value::Table(t) => {
                let k = t.keys().nth(n).cloned().expect("child exists");
                t.remove(&k);
            }
            _ => {}
        }
    }
    fn add(&mut self, key: String, value: Self) -> bool {
        match self {
            toml::Value::Table(t) => {
                t.insert(key, value);
                true
            }
            _ => false,
        }
    }
}

/// Applies `f` to node `n` of `tree` in pre-order (the root is node 0,
/// handled by the caller). Returns whether the node was found.
fn visit<T: Tree>(tree: &mut T, n: &mut usize, f: &mut dyn FnMut(&mut T)) -> bool {
    let kids = tree.children().len();
    for i in 0..kids {
        *n -= 1;
        let child = tree.children().into_iter().nth(i).expect("child exists");
        if *n == 0 {
            f(child);
            return true;
        }
        if visit(child, n, f) {
            return true;
        }
    }
    false
}

fn apply<T: Tree + Clone>(mut doc: T, edits: &[Edit<T>]) -> T {
    for e in edits {
        let total = doc.count();
        match e {
            Edit::Replace(i, v) => {
                let mut n = i.index(total);
                if n == 0 {
                    doc = v.clone();
                } else {
                    visit(&mut doc, &mut n, &mut |node| *node = v.clone());
                }
            }
            Edit::Remove(i) if total > 1 => {
                // Node n (1-based past the root) is removed from its parent.
                let mut n = i.index(total - 1) + 1;
                remove_nth(&mut doc, &mut n);
            }
            Edit::Remove(_) => {}
            Edit::Add(i, k, v) => {
                let mut n = i.index(total);
                if n == 0 {
                    doc.add(k.clone(), v.clone());
                } else {
                    visit(&mut doc, &mut n, &mut |node| {
                        node.add(k.clone(), v.clone());
                    });
                }
            }
        }
    }
    doc
}

fn remove_nth<T: Tree>(tree: &mut T, n: &mut usize) -> bool {
    let kids = tree.children().len();
    for i in 0..kids {
        *n -= 1;
        if *n == 0 {
            tree.remove_child(i);
            return true;
        }
        let child = tree.children().into_iter().nth(i).expect("child exists");
        if remove_nth(child, n) {
            return true;
        }
    }
    false
}

/// A change to the bytes of a document.
#[derive(Debug, Clone)]
pub enum ByteEdit {
    /// Cut the document at this point.
    Truncate(Index),
    /// XOR one byte with a non-zero mask.
    Flip(Index, u8),
    /// Insert bytes here.
    Insert(Index, Vec<u8>),
    /// Remove up to this many bytes here.
    Delete(Index, usize),
    /// Copy a piece of the document (up to this many bytes) to another
    /// place: a repeated key, a doubled entry.
    Repeat(Index, usize, Index),
}

/// One to four byte edits.
pub fn byte_edits() -> impl Strategy<Value = Vec<ByteEdit>> {
    let insert = prop_oneof![
        proptest::sample::select(AWKWARD).prop_map(|s| s.as_bytes().to_vec()),
        proptest::collection::vec(any::<u8>(), 1..8),
        proptest::sample::select(
            &[
                "{",
                "}",
                "[",
                "]",
                ",",
                ":",
                "=",
                "\"\"\"",
                "'''",
                "[[step]]\n",
                "#",
                "null",
                "\\u",
                "\\ud800",
            ][..]
        )
        .prop_map(|s| s.as_bytes().to_vec()),
    ];
    let edit = prop_oneof![
        1 => any::<Index>().prop_map(ByteEdit::Truncate),
        3 => (any::<Index>(), 1u8..).prop_map(|(i, m)| ByteEdit::Flip(i, m)),
        3 => (any::<Index>(), insert).prop_map(|(i, b)| ByteEdit::Insert(i, b)),
        2 => (any::<Index>(), 1usize..16).prop_map(|(i, n)| ByteEdit::Delete(i, n)),
        1 => (any::<Index>(), 1usize..64, any::<Index>()).prop_map(|(a, n, b)| ByteEdit::Repeat(a, n, b)),
    ];
    proptest::collection::vec(edit, 1..5)
}

/// `bytes` with `edits` applied in order.
pub fn apply_bytes(mut bytes: Vec<u8>, edits: &[ByteEdit]) -> Vec<u8> {
    for e in edits {
        let len = bytes.len();
        match e {
            ByteEdit::Truncate(i) => bytes.truncate(i.index(len + 1)),
            ByteEdit::Flip(i, m) if len > 0 => bytes[i.index(len)] ^= m,
            ByteEdit::Flip(..) => {}
            ByteEdit::Insert(i, b) => {
                let at = i.index(len + 1);
                bytes.splice(at..at, b.iter().copied());
            }
            ByteEdit::Delete(i, n) if len > 0 => {
                let at = i.index(len);
                bytes.drain(at..(at + n).min(len));
            }
            ByteEdit::Delete(..) => {}
            ByteEdit::Repeat(a, n, b) if len > 0 => {
                let from = a.index(len);
                let piece = bytes[from..(from + n).min(len)].to_vec();
                let to = b.index(len + 1);
                bytes.splice(to..to, piece);
            }
            ByteEdit::Repeat(..) => {}
        }
    }
    bytes
}

/// Mutations of the JSON document `seed`: field edits, serialized compact
/// or pretty, then byte edits (or none), or plain arbitrary bytes.
pub fn json(seed: serde_json::Value) -> impl Strategy<Value = Vec<u8>> {
    let fields = (
        edits(json_value()),
        any::<bool>(),
        proptest::option::of(byte_edits()),
    )
        .prop_map(move |(e, pretty, bytes)| {
            let doc = apply(seed.clone(), &e);
            let text = if pretty {
                serde_json::to_vec_pretty(&doc)
            } else {
                serde_json::to_vec(&doc)
            }
            .expect("JSON values serialize");
            match bytes {
                Some(b) => apply_bytes(text, &b),
                None => text,
            }
        });
    prop_oneof![
        6 => fields,
        1 => proptest::collection::vec(any::<u8>(), 0..256),
    ]
}

/// Like [`json`], for the bytes of a document that is JSON only inside
/// (no field edits): byte edits of `seed`, or arbitrary bytes.
pub fn bytes(seed: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => byte_edits().prop_map(move |e| apply_bytes(seed.clone(), &e)),
        1 => proptest::collection::vec(any::<u8>(), 0..256),
    ]
}

/// Mutations of the TOML document `seed`: key edits written back as
/// TOML, or byte edits of the text as written (read back lossily as
/// UTF-8, since the parsers take text), or arbitrary text.
pub fn toml_text(seed: &'static str) -> impl Strategy<Value = String> {
    let doc: toml::Value = toml::from_str(seed).expect("the seed is valid TOML");
    let fields = edits(toml_value()).prop_filter_map("not a table", move |e| {
        let edited = apply(doc.clone(), &e);
        // The root must stay a table to be written back as a document.
        edited.as_table().and_then(|t| toml::to_string(t).ok())
    });
    let text = byte_edits().prop_map(move |e| {
        String::from_utf8_lossy(&apply_bytes(seed.as_bytes().to_vec(), &e)).into_owned()
    });
    prop_oneof![
        4 => fields,
        4 => text,
        1 => "\\PC{0,256}",
    ]
}
