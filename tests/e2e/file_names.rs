//! Any file name Linux allows is an ordinary output: a step that names a
//! file `models\v1.bin`, `a<newline>b.txt`, `tab<TAB>here` or `--rf` gets
//! it stored, recorded, published, served from the cache, restored and
//! exported under exactly that name, never an escaped spelling of it. A
//! WASI step can only write UTF-8 names (WASI paths are strings), so names
//! that are not UTF-8 come from the host side: an input tree holding one is
//! recorded byte-exact.

use crate::harness::*;
use cordon_test_artifacts::PROBE;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

/// Names Linux allows that escaping once mangled, each with its contents:
/// (path under the mount, contents).
const NAMES: [(&str, &str); 5] = [
    ("models\\v1.bin", "weights"),
    ("a\nb.txt", "two lines"),
    ("tab\there", "tabbed"),
    ("--rf", "dashed"),
    ("dir\\n/inner\r\n.txt", "nested"),
];

/// A workspace whose `dev` environment signs its records, so `cordon
/// verify` has signatures to check.
fn signed_workspace() -> Workspace {
    let ws = Workspace::new();
    let out = ws.cordon(&["key", "generate", "--env", "dev"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    ws
}

/// Writes `<name>.toml`, a probe step with `args` and the TOML `rest`.
fn probe_step(ws: &Workspace, name: &str, args: &[String], rest: &str) {
    let digest = ws.component(PROBE, "probe.wasm");
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    ws.write(
        &format!("{name}.toml"),
        format!(
            "[step]\nname = \"{name}\"\ncomponent = \"probe.wasm\"\ndigest = \"{digest}\"\nargs = [{}]\n\n{rest}",
            args.join(", ")
        ),
    );
}

/// Probe arguments that write every name of [`NAMES`] under `/out`.
fn write_names() -> Vec<String> {
    let mut args = vec!["mkdir".to_string(), "/out/dir\\n".to_string()];
    for (name, body) in NAMES {
        args.extend([
            "--".into(),
            "write".into(),
            format!("/out/{name}"),
            body.into(),
        ]);
    }
    args
}

/// A pipeline: `a` writes every name of [`NAMES`] into `a-out`; `b` reads
/// `models\v1.bin` from it (so the names are an input tree, too) and
/// writes `b-out/-copy\n`.
fn named_outputs_pipeline(ws: &Workspace) {
    let args = write_names();
    probe_step(ws, "a", &args, &mount("/out", "a-out", "write"));
    let args: Vec<String> = [
        "read",
        "/in/models\\v1.bin",
        "--",
        "write",
        "/out/-copy\n",
        "copied",
    ]
    .map(String::from)
    .to_vec();
    probe_step(
        ws,
        "b",
        &args,
        &(mount("/in", "a-out", "read") + &mount("/out", "b-out", "write")),
    );
    ws.write(
        "pipeline.toml",
        "[pipeline]\nname = \"names\"\n\n[[step]]\nmanifest = \"a.toml\"\n\n[[step]]\nmanifest = \"b.toml\"\n",
    );
}

/// Every file under `dir`, by its exact relative name, with its contents.
fn files_of(dir: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out: Vec<_> = walk_files(dir)
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(dir).unwrap().as_os_str().as_bytes().to_vec();
            (rel, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

/// What `a` must have published, exactly.
fn expected_a() -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut v: Vec<_> = NAMES
        .iter()
        .map(|(n, b)| (n.as_bytes().to_vec(), b.as_bytes().to_vec()))
        .collect();
    v.sort();
    v
}

/// Runs the pipeline and checks both outputs, exactly.
fn run_and_check(ws: &Workspace) -> Output {
    let out = ws.cordon(&["run", "pipeline.toml"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(files_of(&ws.path("a-out")), expected_a());
    assert_eq!(
        files_of(&ws.path("b-out")),
        vec![(b"-copy\n".to_vec(), b"copied".to_vec())]
    );
    out
}

#[test]
fn output_named_with_backslash_newline_tab_or_dash_is_published_exactly() {
    let ws = signed_workspace();
    named_outputs_pipeline(&ws);
    let run = run_and_check(&ws);
    assert!(
        run.stdout.contains("read: ok 7 bytes: weights"),
        "b read `models\\v1.bin` by its name: {}",
        run.stdout
    );
    // The record names each file as it is, and the chain verifies.
    let rec = ws.latest_record("a");
    let recorded: Vec<&str> = rec["mounts"][0]["after"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["sha256"].is_string())
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    let mut names: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
    names.sort();
    assert_eq!(recorded, names);
    let verify = ws.cordon(&["verify"], &[]);
    assert_eq!(verify.code, 0, "{verify:?}");
}

#[test]
fn output_named_with_backslash_or_newline_is_published_from_the_store_on_a_cache_hit() {
    let ws = Workspace::new();
    named_outputs_pipeline(&ws);
    run_and_check(&ws);
    // Outputs gone: a hit must bring every name back from the store.
    std::fs::remove_dir_all(ws.path("a-out")).unwrap();
    std::fs::remove_dir_all(ws.path("b-out")).unwrap();
    let second = run_and_check(&ws);
    for step in ["a", "b"] {
        let r = ws.latest_record(step);
        assert_eq!(r["cache"]["hit"], true, "{step}: {second:?}");
    }
}

#[test]
fn output_named_with_backslash_or_newline_is_restored_exactly() {
    let ws = Workspace::new();
    named_outputs_pipeline(&ws);
    run_and_check(&ws);
    let run = ws.latest_record("a")["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::remove_dir_all(ws.path("a-out")).unwrap();
    ws.write("a-out/models\\v1.bin", "tampered");
    let out = ws.cordon(&["restore", "--run", &run], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(files_of(&ws.path("a-out")), expected_a());
}

#[test]
fn output_named_with_backslash_or_newline_is_exported_and_passes_in_toto_verify() {
    let ws = signed_workspace();
    let out = ws.cordon(&["key", "reviewer", "owner", "--dir", "keys"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let args = write_names();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ws.step(PROBE, &args, &mount("/out", "sums", "write"));
    let run = ws.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(files_of(&ws.path("sums")), expected_a());
    let run_id = ws.record()["run_id"].as_str().unwrap().to_string();
    let out = ws.cordon(
        &[
            "export",
            "in-toto",
            "--run",
            &run_id,
            "--layout-key",
            "keys/owner.key",
            "meta",
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let verify_meta = [
        "--layout",
        "meta/root.layout",
        "--verification-keys",
        "keys/owner.pub",
        "--link-dir",
        "meta",
    ];
    let Some(ok) = crate::intoto::in_toto_verify(&ws, &verify_meta) else {
        return;
    };
    assert!(ok.status.success(), "{ok:?}");
    // And it checks those very files: one changed is caught.
    std::fs::write(ws.path("sums/a\nb.txt"), "changed").unwrap();
    let changed = crate::intoto::in_toto_verify(&ws, &verify_meta).unwrap();
    assert_eq!(changed.status.code(), Some(1), "{changed:?}");
}

#[test]
fn input_named_with_bytes_not_utf8_is_recorded_byte_exact() {
    let ws = signed_workspace();
    let data = ws.mkdir("data");
    let raw: &[u8] = b"caf\xe9\\x.csv";
    std::fs::write(data.join(std::ffi::OsStr::from_bytes(raw)), "raw").unwrap();
    std::fs::write(data.join("caf\u{fffd}\\x.csv"), "lossy twin").unwrap();
    ws.write("data/plain.txt", "plain");
    probe_step(
        &ws,
        "a",
        &["read".into(), "/in/plain.txt".into()],
        &mount("/in", "data", "read"),
    );
    let out = ws.cordon(&["run", "a.toml"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let rec = ws.latest_record("a");
    let entries = rec["mounts"][0]["before"]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3, "{entries:?}");
    // The lossy twin and the name that is not UTF-8 are two entries: one
    // by its path, the other by its exact bytes.
    let exact: Vec<&serde_json::Value> = entries
        .iter()
        .filter(|e| e.get("path_hex").is_some())
        .collect();
    assert_eq!(exact.len(), 1, "{entries:?}");
    assert_eq!(exact[0]["path_hex"], hex::encode(raw));
    assert_eq!(exact[0]["sha256"], sha256_hex(b"raw"));
    let verify = ws.cordon(&["verify"], &[]);
    assert_eq!(verify.code, 0, "{verify:?}");
}

#[test]
fn output_named_with_backslash_or_newline_reaches_another_machine_through_step() {
    let weed = crate::store::seaweed();
    let prefix = crate::store::prefix("file-names");
    let first = crate::store::machine(weed, &prefix);
    let second = crate::store::machine(weed, &prefix);
    named_outputs_pipeline(&first);
    named_outputs_pipeline(&second);
    let keys = format!(
        "{}:{}",
        first.trusted_key("dev").display(),
        second.trusted_key("dev").display()
    );
    let mut env = weed.env();
    env.push(("CORDON_TRUSTED_KEYS", keys.as_str()));
    let a = first.cordon(&["run", "pipeline.toml", "--step", "a"], &env);
    assert_eq!(a.code, 0, "{a:?}");
    // `b` on another machine takes `a`'s outputs from the shared store, by
    // the exact names `a`'s record lists, and reads one of them by name.
    let b = second.cordon(&["run", "pipeline.toml", "--step", "b"], &env);
    assert_eq!(b.code, 0, "{b:?}");
    assert!(
        b.stdout.contains("read: ok 7 bytes: weights"),
        "{}",
        b.stdout
    );
    assert_eq!(files_of(&second.path("a-out")), expected_a());
    assert_eq!(
        files_of(&second.path("b-out")),
        vec![(b"-copy\n".to_vec(), b"copied".to_vec())]
    );
}

/// `s` as a TOML basic string: quote and backslash escaped, control
/// characters as `\uXXXX`, everything else as it is.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A name a WASI step can write: any characters but `/` and NUL, not `.`
/// or `..`, weighted toward the ones escaping and quoting change.
fn step_name() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let tricky = prop::sample::select(vec![
        '\\', '\n', '\r', '\t', '-', ' ', '"', '\'', '$', '*', '?', '[', '#', ':', '%', '\u{7f}',
        '\u{85}', '\u{2028}', '\u{fffd}', 'é', 'x',
    ]);
    let any_char = any::<char>().prop_filter("no / or NUL", |c| *c != '/' && *c != '\0');
    prop::collection::vec(prop_oneof![3 => tricky, 1 => any_char], 1..10)
        .prop_map(|cs| cs.into_iter().collect::<String>())
        .prop_filter("not . or ..", |n| n != "." && n != "..")
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(16))]

    /// Through the real binary: run, a cache hit after the outputs are
    /// removed, and `cordon restore`, each leaving exactly the names the
    /// step wrote.
    #[test]
    fn any_name_a_step_writes_is_published_cached_and_restored_exactly(
        names in proptest::collection::btree_set(step_name(), 1..4),
    ) {
        let ws = Workspace::new();
        let digest = ws.component(PROBE, "probe.wasm");
        let mut args = Vec::new();
        for (i, n) in names.iter().enumerate() {
            if i > 0 {
                args.push("--".to_string());
            }
            args.extend(["write".to_string(), format!("/out/{n}"), format!("body {i}")]);
        }
        let args: Vec<String> = args.iter().map(|a| toml_string(a)).collect();
        ws.write(
            "a.toml",
            format!(
                "[step]\nname = \"a\"\ncomponent = \"probe.wasm\"\ndigest = \"{digest}\"\nargs = [{}]\n\n{}",
                args.join(", "),
                mount("/out", "a-out", "write")
            ),
        );
        ws.write(
            "pipeline.toml",
            "[pipeline]\nname = \"names\"\n\n[[step]]\nmanifest = \"a.toml\"\n",
        );
        let mut expected: Vec<(Vec<u8>, Vec<u8>)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_bytes().to_vec(), format!("body {i}").into_bytes()))
            .collect();
        expected.sort();
        let run = ws.cordon(&["run", "pipeline.toml"], &[]);
        proptest::prop_assert_eq!(run.code, 0, "{:?}", run);
        proptest::prop_assert_eq!(&files_of(&ws.path("a-out")), &expected);
        std::fs::remove_dir_all(ws.path("a-out")).unwrap();
        let hit = ws.cordon(&["run", "pipeline.toml"], &[]);
        proptest::prop_assert_eq!(hit.code, 0, "{:?}", hit);
        proptest::prop_assert_eq!(&ws.latest_record("a")["cache"]["hit"], true);
        proptest::prop_assert_eq!(&files_of(&ws.path("a-out")), &expected);
        let first = ws.records()[0]["run_id"].as_str().unwrap().to_string();
        std::fs::remove_dir_all(ws.path("a-out")).unwrap();
        let restore = ws.cordon(&["restore", "--run", &first], &[]);
        proptest::prop_assert_eq!(restore.code, 0, "{:?}", restore);
        proptest::prop_assert_eq!(&files_of(&ws.path("a-out")), &expected);
    }
}
