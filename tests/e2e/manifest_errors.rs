//! Manifest errors are product surface: each case in `tests/ui/*.toml` is
//! run and its stderr compared with `tests/ui/*.err` (first line: the
//! expected exit code). `UPDATE_UI=1 cargo test` rewrites the `.err` files.
//!
//! Placeholders: `@PROBE_DIGEST@` (the probe component's digest) and
//! `@GARBAGE_DIGEST@` (a file that is not wasm), `@CORE_DIGEST@` (a core
//! module, not a component).

use crate::harness::*;
use cordon_test_artifacts::PROBE;
use std::path::Path;

const GARBAGE: &[u8] = b"this is not a WebAssembly component";
/// The smallest core module: valid wasm, but not a component.
const CORE: &[u8] = b"\0asm\x01\0\0\0";

#[test]
fn manifest_errors_match_their_expected_messages() {
    let ui = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/ui");
    let mut cases: Vec<_> = std::fs::read_dir(&ui)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "ui cases missing");
    let update = std::env::var_os("UPDATE_UI").is_some();
    let mut failures = Vec::new();
    for case in &cases {
        let ws = Workspace::new();
        let probe_digest = ws.component(PROBE, "probe.wasm");
        std::fs::write(ws.path("garbage.wasm"), GARBAGE).unwrap();
        let garbage_digest = format!("sha256:{}", sha256_hex(GARBAGE));
        std::fs::write(ws.path("core.wasm"), CORE).unwrap();
        let core_digest = format!("sha256:{}", sha256_hex(CORE));
        ws.mkdir("data");
        let toml = std::fs::read_to_string(case)
            .unwrap()
            .replace("@PROBE_DIGEST@", &probe_digest)
            .replace("@GARBAGE_DIGEST@", &garbage_digest)
            .replace("@CORE_DIGEST@", &core_digest);
        ws.write("step.toml", &toml);
        let out = ws.run(&[]);
        let actual = format!(
            "exit: {}\n{}",
            out.code,
            out.stderr
                .replace(&probe_digest, "@PROBE_DIGEST@")
                .replace(&garbage_digest, "@GARBAGE_DIGEST@")
                .replace(&core_digest, "@CORE_DIGEST@")
                .replace(
                    &ws.root().canonicalize().unwrap().display().to_string(),
                    "$WORKSPACE"
                )
                .replace(&ws.secrets_home().display().to_string(), "$SECRETS_HOME")
        );
        assert!(
            ws.records().is_empty(),
            "{}: a rejected manifest wrote a record",
            case.display()
        );
        let expected_path = case.with_extension("err");
        if update {
            std::fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != actual {
            failures.push(format!(
                "--- {}\nexpected:\n{expected}\nactual:\n{actual}",
                case.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
