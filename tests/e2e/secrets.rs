//! Secret handles backed by the local store: sign, reveal, denied uses,
//! redaction of encoded forms, and the store's own promises (stdin only,
//! never echoed, key file 0600 outside the workspace, versions, a wrong key
//! or a damaged store loses nothing).

use crate::harness::*;
use cordon_test_artifacts::PROBE;
use std::os::unix::fs::PermissionsExt;

/// An ed25519 seed as 64 hex characters.
const SEED_HEX: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
/// A value that must never show up anywhere but the store.
const VALUE: &str = "v4lue-that-must-never-print-42";

fn set(ws: &Workspace, name: &str, value: &str) -> Output {
    ws.cordon_with_input(&["secret", "set", name], &[], Some(value.as_bytes()))
}

fn secret_toml(name: &str, uses: &str) -> String {
    format!("[[secret]]\nname = \"{name}\"\nuses = [{uses}]\n")
}

fn assert_never_seen(ws: &Workspace, out: &Output, value: &str) {
    assert!(
        !out.stdout.contains(value) && !out.stderr.contains(value),
        "value printed: {out:?}"
    );
    assert!(
        !contains(&ws.state_bytes(), value.as_bytes()),
        "value under the state directory"
    );
}

#[test]
fn a_step_signs_with_a_seed_it_never_sees() {
    let ws = Workspace::new();
    let out = set(&ws, "release-key", &format!("{SEED_HEX}\n"));
    assert_eq!(out.code, 0, "{out:?}");
    ws.step(
        PROBE,
        &[
            "secret-sign",
            "release-key",
            "artifact-bytes",
            "--",
            "secret-pubkey",
            "release-key",
        ],
        &secret_toml("release-key", "\"sign\""),
    );
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    let sig_hex = out.probe_lines("secret-sign")[0]
        .strip_prefix("secret-sign: ok ")
        .unwrap()
        .to_string();
    let pk_hex = out.probe_lines("secret-pubkey")[0]
        .strip_prefix("secret-pubkey: ok ")
        .unwrap()
        .to_string();

    let mut seed = [0u8; 32];
    hex::decode_to_slice(SEED_HEX, &mut seed).unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    assert_eq!(pk_hex, hex::encode(key.verifying_key().to_bytes()));
    let mut sig = [0u8; 64];
    hex::decode_to_slice(&sig_hex, &mut sig).unwrap();
    key.verifying_key()
        .verify_strict(
            b"artifact-bytes",
            &ed25519_dalek::Signature::from_bytes(&sig),
        )
        .expect("the signature verifies with the seed's public key");

    let rec = ws.record();
    let s = &rec["secrets"]["release-key"];
    assert_eq!(s["provider"], "local");
    assert_eq!(s["version"], "1");
    assert_eq!(s["used"]["sign"], 2);
    assert_never_seen(&ws, &out, SEED_HEX);
}

#[test]
fn sign_and_reveal_without_their_uses_are_denied_and_recorded() {
    let ws = Workspace::new();
    assert_eq!(set(&ws, "api-key", VALUE).code, 0);
    ws.step(
        PROBE,
        &[
            "secret-reveal",
            "api-key",
            "raw",
            "--",
            "secret-sign",
            "api-key",
            "data",
            "--",
            "secret-pubkey",
            "api-key",
            "--",
            "secret-hmac",
            "api-key",
            "data",
        ],
        &secret_toml("api-key", "\"hmac\""),
    );
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    let denied = "err this use of the secret is not granted";
    assert_eq!(
        out.probe_lines("secret-reveal")[0],
        format!("secret-reveal: {denied}")
    );
    assert_eq!(
        out.probe_lines("secret-sign")[0],
        format!("secret-sign: {denied}")
    );
    assert_eq!(
        out.probe_lines("secret-pubkey")[0],
        format!("secret-pubkey: {denied}")
    );
    assert!(out.probe_lines("secret-hmac")[0].starts_with("secret-hmac: ok "));
    let rec = ws.record();
    let s = &rec["secrets"]["api-key"];
    assert_eq!(s["denied"]["reveal"], 1);
    assert_eq!(s["denied"]["sign"], 2);
    assert_eq!(s["used"]["hmac"], 1);
    assert_never_seen(&ws, &out, VALUE);
}

#[test]
fn a_value_that_is_not_a_seed_cannot_sign() {
    let ws = Workspace::new();
    assert_eq!(set(&ws, "api-key", VALUE).code, 0);
    ws.step(
        PROBE,
        &["secret-sign", "api-key", "data"],
        &secret_toml("api-key", "\"sign\""),
    );
    let out = ws.run(&[]);
    assert_eq!(
        out.probe_lines("secret-sign")[0],
        "secret-sign: err secret unavailable: the secret is not an ed25519 seed (expected 64 hex characters or 32 raw bytes)"
    );
    assert_never_seen(&ws, &out, VALUE);
}

#[test]
fn a_revealed_value_is_redacted_raw_hex_and_base64() {
    use base64::Engine;
    let ws = Workspace::new();
    assert_eq!(set(&ws, "token", VALUE).code, 0);
    ws.step(
        PROBE,
        &[
            "secret-reveal",
            "token",
            "raw",
            "--",
            "secret-reveal",
            "token",
            "hex",
            "--",
            "secret-reveal",
            "token",
            "base64",
        ],
        &secret_toml("token", "\"reveal\""),
    );
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    let lines = out.probe_lines("secret-reveal");
    assert_eq!(lines.len(), 3, "{out:?}");
    for line in &lines {
        assert!(line.contains("[REDACTED:token]"), "{line}");
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode(VALUE);
    for form in [VALUE.to_string(), hex::encode(VALUE), b64.clone()] {
        assert_never_seen(&ws, &out, &form);
    }
    // Most of the base64 form is gone (at most its last character and
    // padding, a few bits of the value, can stay).
    assert!(!out.stdout.contains(&b64[..b64.len() - 3]));
    assert_eq!(ws.record()["secrets"]["token"]["used"]["reveal"], 3);
}

#[test]
fn a_revealed_value_hex_encoded_in_an_output_file_fails_the_step() {
    let ws = Workspace::new();
    assert_eq!(set(&ws, "token", VALUE).code, 0);
    ws.step(
        PROBE,
        &["secret-reveal", "token", "hex", "/out/token.txt"],
        &(mount("/out", "out", "write") + &secret_toml("token", "\"reveal\"")),
    );
    let out = ws.run(&[]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("output file /out/token.txt contains a secret value"),
        "{}",
        out.stderr
    );
    assert!(!ws.path("out").exists(), "nothing was published");
    assert_eq!(ws.record()["success"], false);
}

#[test]
fn secret_set_reads_stdin_never_echoes_and_keeps_the_key_private() {
    let ws = Workspace::new();
    let out = set(&ws, "deploy-token", VALUE);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("secret `deploy-token` version 1 stored"),
        "{out:?}"
    );
    assert!(!out.stdout.contains(VALUE) && !out.stderr.contains(VALUE));

    let key = ws.secrets_home().join("keys/dev.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "key file mode");
    assert!(
        !key.starts_with(ws.root()),
        "the key lives outside the workspace"
    );
    let store = std::fs::read(ws.secrets_home().join("stores/dev.store")).unwrap();
    assert!(
        !contains(&store, VALUE.as_bytes()),
        "the store is encrypted"
    );
    assert!(
        !contains(&store, b"deploy-token"),
        "names are encrypted too"
    );

    let list = ws.cordon(&["secret", "list"], &[]);
    assert_eq!(list.code, 0, "{list:?}");
    let line = list.stdout.lines().next().unwrap();
    assert!(line.starts_with("deploy-token\tversion 1\t20"), "{line}");
    assert!(!list.stdout.contains(VALUE) && !list.stderr.contains(VALUE));

    // There is no way to pass a value as an argument.
    let argv = ws.cordon(&["secret", "set", "other", "some-value"], &[]);
    assert_eq!(argv.code, 2, "{argv:?}");
}

#[test]
fn a_rotated_secret_shows_its_new_version_in_the_next_record() {
    let ws = Workspace::new();
    assert_eq!(set(&ws, "api-key", "first-value-1234").code, 0);
    ws.step(
        PROBE,
        &["secret-hmac", "api-key", "data"],
        &secret_toml("api-key", "\"hmac\""),
    );
    assert_eq!(ws.run(&[]).code, 0);
    let rotate = ws.cordon_with_input(
        &["secret", "rotate", "api-key"],
        &[],
        Some(b"second-value-5678"),
    );
    assert_eq!(rotate.code, 0, "{rotate:?}");
    assert!(rotate.stderr.contains("version 2"), "{rotate:?}");
    let out = ws.run(&[]);
    assert_eq!(out.code, 0);
    let records = ws.records();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["secrets"]["api-key"]["version"], "1");
    assert_eq!(records[1]["secrets"]["api-key"]["version"], "2");
    assert_never_seen(&ws, &out, "second-value-5678");

    let list = ws.cordon(&["secret", "list"], &[]);
    assert_eq!(list.stdout.lines().count(), 2, "{list:?}");

    // Which runs used version 2? Exactly the second.
    let q = ws.cordon(&["records", "--secret", "api-key", "--version", "2"], &[]);
    assert_eq!(q.code, 0, "{q:?}");
    let rows: Vec<&str> = q.stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{q:?}");
    assert!(
        rows[0].starts_with(records[1]["run_id"].as_str().unwrap()),
        "{q:?}"
    );
    assert!(rows[0].contains("\tlocal\t2\thmac=1\t"), "{q:?}");
    let all = ws.cordon(&["records", "--secret", "api-key"], &[]);
    assert_eq!(all.stdout.lines().count(), 3, "{all:?}");
    let none = ws.cordon(&["records", "--secret", "other"], &[]);
    assert_eq!(none.code, 0);
    assert!(
        none.stderr.contains("no recorded run used secret `other`"),
        "{none:?}"
    );
}

#[test]
fn a_removed_secret_stops_runs_before_they_start() {
    let ws = Workspace::new();
    assert_eq!(set(&ws, "api-key", VALUE).code, 0);
    let rm = ws.cordon(&["secret", "rm", "api-key"], &[]);
    assert_eq!(rm.code, 0, "{rm:?}");
    ws.step(
        PROBE,
        &["secret-hmac", "api-key", "data"],
        &secret_toml("api-key", "\"hmac\""),
    );
    let out = ws.run(&[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("environment `dev`: secret `api-key` is not in the local store"),
        "{}",
        out.stderr
    );
    assert!(ws.records().is_empty(), "no step ran");
}

#[test]
fn a_wrong_key_or_a_damaged_store_is_a_clear_error_and_loses_nothing() {
    let ws = Workspace::new();
    assert_eq!(set(&ws, "api-key", VALUE).code, 0);
    ws.step(
        PROBE,
        &["secret-hmac", "api-key", "data"],
        &secret_toml("api-key", "\"hmac\""),
    );
    let key_path = ws.secrets_home().join("keys/dev.key");
    let store_path = ws.secrets_home().join("stores/dev.store");
    let key = std::fs::read(&key_path).unwrap();
    let store = std::fs::read(&store_path).unwrap();

    // Wrong key: every command refuses, nothing is rewritten.
    std::fs::write(&key_path, format!("{}\n", "ab".repeat(32))).unwrap();
    for out in [
        ws.run(&[]),
        ws.cordon(&["secret", "list"], &[]),
        ws.cordon_with_input(&["secret", "rotate", "api-key"], &[], Some(b"new-value-99")),
        ws.cordon_with_input(&["secret", "set", "other"], &[], Some(b"new-value-99")),
        ws.cordon(&["secret", "rm", "api-key"], &[]),
    ] {
        assert_eq!(out.code, 2, "{out:?}");
        assert!(
            out.stderr
                .contains("the key is wrong or the store is damaged; nothing was changed"),
            "{}",
            out.stderr
        );
        assert_eq!(
            std::fs::read(&store_path).unwrap(),
            store,
            "store untouched"
        );
    }
    assert!(ws.records().is_empty(), "no step ran");

    // A damaged store: the same clear error, the file left as it was.
    std::fs::write(&key_path, &key).unwrap();
    let mut damaged = store.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0x01;
    std::fs::write(&store_path, &damaged).unwrap();
    let out = ws.run(&[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("the key is wrong or the store is damaged"),
        "{out:?}"
    );
    assert_eq!(std::fs::read(&store_path).unwrap(), damaged);

    // With the right key and the intact store, the secret is all there.
    std::fs::write(&store_path, &store).unwrap();
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(ws.record()["secrets"]["api-key"]["version"], "1");
}

#[test]
fn a_key_file_readable_by_others_is_refused() {
    let ws = Workspace::new();
    assert_eq!(set(&ws, "api-key", VALUE).code, 0);
    let key_path = ws.secrets_home().join("keys/dev.key");
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = ws.cordon(&["secret", "list"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("readable by other users"), "{out:?}");
    assert!(out.stderr.contains("chmod 600"), "{out:?}");
}

#[test]
fn environments_do_not_share_stores() {
    let ws = Workspace::new();
    ws.write("cordon.toml", "[env.dev]\n[env.prod]\n");
    assert_eq!(set(&ws, "api-key", VALUE).code, 0);
    ws.step(
        PROBE,
        &["secret-hmac", "api-key", "data"],
        &secret_toml("api-key", "\"hmac\""),
    );
    assert_eq!(ws.run(&[]).code, 0);
    let out = ws.cordon(&["run", "step.toml", "--env", "prod"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("environment `prod`"), "{out:?}");
    // The prod store has its own key.
    let prod = ws.cordon_with_input(
        &["secret", "set", "api-key", "--env", "prod"],
        &[],
        Some(b"prod-value-7777"),
    );
    assert_eq!(prod.code, 0, "{prod:?}");
    assert_ne!(
        std::fs::read(ws.secrets_home().join("keys/dev.key")).unwrap(),
        std::fs::read(ws.secrets_home().join("keys/prod.key")).unwrap()
    );
}

#[test]
fn provider_settings_are_checked_and_located() {
    let ws = Workspace::new();
    ws.write(
        "cordon.toml",
        "[env.dev.secrets]\nprovider = \"env\"\nrole_id = \"x\"\n\n[env.prod.secrets]\nprovider = \"vault\"\n",
    );
    let out = ws.cordon(&["secret", "list"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("cordon.toml:3:11: `role_id` is a setting of the `vault` provider, but environment `dev` uses `env`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("the vault provider of environment `prod` needs `address`"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_env_provider_names_the_missing_variable() {
    let ws = Workspace::new();
    ws.write("cordon.toml", "[env.ci.secrets]\nprovider = \"env\"\n");
    ws.step(
        PROBE,
        &["secret-hmac", "signing-key", "data"],
        &secret_toml("signing-key", "\"hmac\""),
    );
    let out = ws.cordon(&["run", "step.toml", "--env", "ci"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert_eq!(
        out.stderr,
        "error: environment `ci`: secret `signing-key` is granted but the runner's environment has no CORDON_SECRET_SIGNING_KEY\n  fix: export CORDON_SECRET_SIGNING_KEY in the environment that runs cordon (never pass secrets as arguments)\n"
    );
    assert!(ws.records().is_empty());
    // `cordon secret` manages local stores only.
    let out = ws.cordon_with_input(&["secret", "set", "k", "--env", "ci"], &[], Some(b"v"));
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("uses the `env` secret provider"),
        "{out:?}"
    );
}

#[test]
fn a_manifest_key_maps_the_name_to_the_providers_entry() {
    let ws = Workspace::new();
    assert_eq!(set(&ws, "team-release-seed", SEED_HEX).code, 0);
    ws.step(
        PROBE,
        &["secret-pubkey", "release-key"],
        "[[secret]]\nname = \"release-key\"\nkey = \"team-release-seed\"\nuses = [\"sign\"]\n",
    );
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.probe_lines("secret-pubkey")[0].starts_with("secret-pubkey: ok "));
    let rec = ws.record();
    assert_eq!(rec["secrets"]["release-key"]["version"], "1");
}

#[test]
fn an_encoded_value_split_across_two_writes_is_still_redacted() {
    use base64::Engine;
    let ws = Workspace::new();
    assert_eq!(set(&ws, "token", VALUE).code, 0);
    let hex_form = hex::encode(VALUE);
    let b64 = base64::engine::general_purpose::STANDARD.encode(VALUE);
    let (h1, h2) = hex_form.split_at(hex_form.len() / 2);
    let (b1, b2) = b64.split_at(b64.len() / 2);
    ws.step(
        PROBE,
        &[
            "print-parts",
            "hex=",
            h1,
            h2,
            "--",
            "print-parts",
            "b64=",
            b1,
            b2,
        ],
        &secret_toml("token", "\"hmac\""),
    );
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("hex=[REDACTED:token]"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("b64=[REDACTED:token]"),
        "{}",
        out.stdout
    );
    assert_never_seen(&ws, &out, &hex_form);
    assert_never_seen(&ws, &out, &b64[..b64.len() - 3]);
}

#[test]
fn store_and_key_paths_come_from_the_named_config() {
    let ws = Workspace::new();
    let key = ws.secrets_home().join("team/ci.key");
    let store = ws.secrets_home().join("team/ci.store");
    ws.write(
        "conf/cordon.toml",
        format!(
            "[env.ci.secrets]\nstore = \"{}\"\nkey_file = \"{}\"\n",
            store.display(),
            key.display()
        ),
    );
    let out = ws.cordon_with_input(
        &[
            "secret",
            "set",
            "api-key",
            "--env",
            "ci",
            "--config",
            "conf/cordon.toml",
        ],
        &[],
        Some(VALUE.as_bytes()),
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(key.is_file() && store.is_file());
    assert!(!ws.secrets_home().join("keys").exists());
    ws.step(
        PROBE,
        &["secret-hmac", "api-key", "data"],
        &secret_toml("api-key", "\"hmac\""),
    );
    let out = ws.cordon(
        &[
            "run",
            "step.toml",
            "--env",
            "ci",
            "--config",
            "conf/cordon.toml",
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(ws.record()["secrets"]["api-key"]["provider"], "local");

    // A key file inside the workspace is refused.
    ws.write(
        "conf/cordon.toml",
        "[env.ci.secrets]\nkey_file = \"keys/ci.key\"\n",
    );
    let out = ws.cordon(
        &[
            "secret",
            "list",
            "--env",
            "ci",
            "--config",
            "conf/cordon.toml",
        ],
        &[],
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("lies inside the workspace"), "{out:?}");
}

#[test]
fn a_secret_spelled_like_json_syntax_cannot_corrupt_the_record() {
    // Values used only through the handle may be short; text redaction of
    // the serialized record turned every `"` into a replacement and every
    // digest's `sha256:` prefix into garbage. Values are redacted as values.
    let ws = Workspace::new();
    assert_eq!(set(&ws, "quote", "\"").code, 0);
    assert_eq!(set(&ws, "algo", "sha256").code, 0);
    assert_eq!(ws.cordon(&["key", "generate", "--env", "dev"], &[]).code, 0);
    ws.write("data/a.txt", "alpha\n");
    ws.step(
        PROBE,
        &[
            "secret-hmac",
            "quote",
            "x",
            "--",
            "secret-hmac",
            "algo",
            "y",
            "--",
            "write",
            "/out/f.txt",
            "z",
        ],
        &(secret_toml("quote", "\"hmac\"")
            + &secret_toml("algo", "\"hmac\"")
            + &mount("/out", "out", "write")),
    );
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    let rec = ws.record();
    assert!(
        rec["component"]["sha256"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:")),
        "digests are intact: {rec}"
    );
    let v = ws.cordon(&["verify"], &[]);
    assert_eq!(v.code, 0, "the record and its outputs verify: {v:?}");
}

#[test]
fn a_name_asked_for_that_spells_a_value_with_quotes_and_backslashes_is_redacted_as_a_value() {
    let ws = Workspace::new();
    let value = "tok\"en\\with-json-syntax-77";
    assert_eq!(set(&ws, "deploy", value).code, 0);
    assert_eq!(ws.cordon(&["key", "generate", "--env", "dev"], &[]).code, 0);
    // The step never sees the value, but a step that learned it elsewhere
    // must not get it into the record through a name it asks for, a metric
    // name or an annotation. The longest name is past the 128-character cut.
    // Cut at 128 characters, it would keep 18 characters of the value.
    let long = format!("{}{value}", "p".repeat(110));
    ws.step(
        PROBE,
        &[
            "secret-name",
            &format!("x-{value}"),
            "--",
            "secret-name",
            &long,
            "--",
            "metric",
            &format!("m-{value}"),
            "1",
            "--",
            "secret-hmac",
            "deploy",
            "data",
        ],
        &secret_toml("deploy", "\"hmac\""),
    );
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    let rec = std::fs::read_to_string(&ws.records_paths()[0]).unwrap();
    let escaped = serde_json::to_string(value).unwrap();
    let escaped = escaped.trim_matches('"');
    let part = serde_json::to_string(&value[..14]).unwrap();
    let part = part.trim_matches('"');
    for form in [value, escaped, &value[..14], part] {
        assert!(!rec.contains(form), "`{form}` is in the record:\n{rec}");
    }
    assert!(rec.contains("[REDACTED:deploy]"), "{rec}");
    assert!(!contains(&ws.state_bytes(), value.as_bytes()));
    assert_eq!(ws.cordon(&["verify"], &[]).code, 0);
}

#[test]
fn a_planted_control_sequence_in_a_record_is_escaped_by_the_secret_query() {
    let ws = Workspace::new();
    assert_eq!(set(&ws, "api-key", VALUE).code, 0);
    ws.step(
        PROBE,
        &["secret-hmac", "api-key", "data"],
        &secret_toml("api-key", "\"hmac\""),
    );
    assert_eq!(ws.run(&[]).code, 0);
    // Someone who can write the state directory edits a record: the
    // listing must not hand an erase sequence to the reader's terminal.
    let dir = ws.path(".cordon/records");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| is_record_file(p))
        .unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    v["step"] = "probe\u{1b}[2J\rcordon: all clear".into();
    std::fs::write(&file, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    let q = ws.cordon(&["records", "--secret", "api-key"], &[]);
    assert_eq!(q.code, 0, "{q:?}");
    assert!(
        !q.stdout.contains('\u{1b}') && !q.stdout.contains('\r'),
        "{q:?}"
    );
    assert!(
        q.stdout.contains("probe\\u{1b}[2J\\rcordon: all clear"),
        "{q:?}"
    );
}
