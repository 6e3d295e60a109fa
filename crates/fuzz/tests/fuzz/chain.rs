//! The hash chain: log lines, and `verify` over a state directory whose
//! log, records or envelopes anyone with write access may have changed.
//! "A flipped byte anywhere is detected by `cordon verify`" is the
//! property: any change to any of those files is a finding, and no change
//! is a panic.

use crate::envelopes::{signer, trusted};
use crate::mutate;
use crate::records::step_record;
use cordon_core::redact::NoSecrets;
use cordon_manifest::config::WorkspaceConfig;
use cordon_record::chain::{self, LogEntry};
use cordon_record::record::StepRecord;
use cordon_record::trust::TrustRoots;
use cordon_record::verify::{self, Checks, Scope};
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A state directory with two signed, chained records, and the public
/// key that verifies them; built once, copied for each case.
struct Template {
    _dir: tempfile::TempDir,
    state: PathBuf,
    key: PathBuf,
    /// The records directory's files, by name.
    files: Vec<(String, Vec<u8>)>,
}

fn template() -> &'static Template {
    static T: OnceLock<Template> = OnceLock::new();
    T.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let records = state.join("records");
        std::fs::create_dir_all(&records).unwrap();
        let s = signer(1);
        for run in [
            "20260101T000000.000Z-train-0123abcd",
            "20260101T000001.000Z-sign-4567ef01",
        ] {
            let mut r: StepRecord = serde_json::from_value(step_record()).unwrap();
            r.run_id = run.into();
            r.chain = None;
            r.signed_by = None;
            chain::seal(&records, &mut r, &NoSecrets, Some(&s)).unwrap();
        }
        let key = dir.path().join("dev.pub");
        std::fs::write(&key, cordon_engine::keys::public_pem(&s)).unwrap();
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&records)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file() && p.file_name().unwrap() != chain::LOCK_FILE)
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&p).unwrap())
            })
            .collect();
        files.sort();
        Template {
            _dir: dir,
            state,
            key,
            files,
        }
    })
}

fn verify_state(state: &Path) -> verify::Verdict {
    let t = template();
    let workspace = WorkspaceConfig::implicit(state);
    let roots = TrustRoots {
        command_line: vec![t.key.clone()],
        environment: Vec::new(),
    };
    verify::verify_with(
        state,
        &workspace,
        &roots,
        &Scope::All,
        Checks { outputs: false },
    )
    .expect("a state directory with a log verifies to a verdict")
}

#[test]
fn the_template_verifies() {
    let t = template();
    assert_eq!(
        t.files.len(),
        5,
        "{:?}",
        t.files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    let v = verify_state(&t.state);
    assert!(v.findings.is_empty(), "{:?}", v.findings);
    assert_eq!(v.records, 2);
    let _ = trusted(&signer(1));
}

fn a_line() -> serde_json::Value {
    let t = template();
    let log = &t.files.iter().find(|f| f.0 == chain::LOG_FILE).unwrap().1;
    let first = String::from_utf8(log.clone()).unwrap();
    serde_json::from_str(first.lines().nth(1).unwrap()).unwrap()
}

proptest! {
    #![proptest_config(crate::config(256))]

    #[test]
    fn a_mutated_log_line_parses_checked_or_fails_and_round_trips(bytes in mutate::json(a_line())) {
        let line = String::from_utf8_lossy(&bytes);
        if let Ok(e) = LogEntry::parse(&line) {
            prop_assert!(chain::is_run_id(&e.run));
            prop_assert_eq!(LogEntry::parse(&e.to_line()), Ok(e));
        }
    }
}

proptest! {
    #![proptest_config(crate::config(64))]

    #[test]
    fn any_change_to_a_record_an_envelope_or_the_log_is_a_finding(
        which in any::<proptest::sample::Index>(),
        edits in mutate::byte_edits(),
    ) {
        let t = template();
        let d = tempfile::tempdir().unwrap();
        let records = d.path().join("records");
        std::fs::create_dir(&records).unwrap();
        let which = which.index(t.files.len());
        let mut changed = false;
        for (i, (name, bytes)) in t.files.iter().enumerate() {
            let bytes = if i == which {
                let m = mutate::apply_bytes(bytes.clone(), &edits);
                changed = m != *bytes;
                m
            } else {
                bytes.clone()
            };
            std::fs::write(records.join(name), bytes).unwrap();
        }
        let v = verify_state(d.path());
        for f in &v.findings {
            let _ = f.to_string();
        }
        if changed {
            prop_assert!(
                !v.findings.is_empty(),
                "{} was changed and verify found nothing", t.files[which].0
            );
        } else {
            prop_assert!(v.findings.is_empty(), "{:?}", v.findings);
        }
    }
}
