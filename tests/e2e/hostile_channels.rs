//! A step granted `reveal` tries to get the value past the runner through
//! every channel a reader or a program sees: terminal escapes between its
//! bytes, a fake runner line, and the encodings a step publishes by
//! accident (PEM-wrapped base64, percent-encoding, JSON escapes, UTF-16).
//! Reviewed names with control characters must not draw on the terminal
//! either, and a secret too short to redact is refused before anything runs.
//!
//! Every test ends with [`assert_value_nowhere`]: the value, in every form
//! below, is in no file of the workspace and state directory and in no
//! byte the runner printed.

use crate::harness::*;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use cordon_test_artifacts::{HOSTILE_STREAMS, PROBE};

/// Quotes, a backslash, NUL, a newline and bytes that are not UTF-8.
const AWKWARD: &[u8] = b"q\"uo\\;te \x00nul\nline \xff\xfe-end";
/// Two secrets where one is a prefix of the other.
const SHORTER: &[u8] = b"prefix-secret-0123";
const LONGER: &[u8] = b"prefix-secret-0123-and-more";

/// 200 bytes over the whole byte range (a binary key), ending in a byte
/// `cordon secret set` keeps.
fn long_value() -> Vec<u8> {
    let mut x: u32 = 0x2545_f491;
    let mut v: Vec<u8> = (0..200)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (x >> 16) as u8
        })
        .collect();
    v[199] = b'!';
    v
}

fn values() -> Vec<Vec<u8>> {
    vec![AWKWARD.to_vec(), long_value(), LONGER.to_vec()]
}

fn set(ws: &Workspace, name: &str, value: &[u8]) {
    let out = ws.cordon_with_input(&["secret", "set", name], &[], Some(value));
    assert_eq!(out.code, 0, "{out:?}");
}

fn grant(name: &str, uses: &str) -> String {
    format!("[[secret]]\nname = \"{name}\"\nuses = [{uses}]\n\n")
}

/// A workspace whose local store holds `value` as `tok`, with the hostile
/// step granted `reveal` of it and an output mount `/out`.
fn hostile(value: &[u8], args: &[&str]) -> Workspace {
    let ws = Workspace::new();
    set(&ws, "tok", value);
    ws.step(
        HOSTILE_STREAMS,
        args,
        &(mount("/out", "out", "write") + &grant("tok", "\"reveal\"")),
    );
    ws
}

/// `value` as the sanitizer would show it if it passed unredacted: control
/// bytes and bytes that are not UTF-8 as `\xNN`.
fn rendered(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in value.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() && c != '\n' && c != '\t' {
                out.extend(format!("\\x{:02x}", c as u32).bytes());
            } else {
                out.extend(c.to_string().bytes());
            }
        }
        for b in chunk.invalid() {
            out.extend(format!("\\x{b:02x}").bytes());
        }
    }
    out
}

/// Every form of `value` this test suite knows a reader or a program can
/// turn back into it: raw, with control bytes dropped, as the sanitizer
/// renders it, hex in both cases, base64 (both alphabets, without its last
/// group, which a standalone encoding may keep), percent-encoded (every
/// byte, upper and lower case; only the reserved ones), the body of a JSON
/// string, and UTF-16 in both byte orders.
fn forms(value: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut forms = vec![
        ("raw", value.to_vec()),
        ("rendered", rendered(value)),
        ("hex", hex::encode(value).into_bytes()),
        ("HEX", hex::encode_upper(value).into_bytes()),
    ];
    let dropped: Vec<u8> = value.iter().copied().filter(|b| *b >= 0x20).collect();
    if dropped.len() >= 8 {
        forms.push(("controls dropped", dropped));
    }
    for (name, b64) in [
        ("base64", STANDARD.encode(value)),
        ("base64url", URL_SAFE.encode(value)),
    ] {
        forms.push((name, b64.as_bytes()[..b64.len() - 4].to_vec()));
    }
    let percent = |upper: bool, all: bool| -> Vec<u8> {
        value
            .iter()
            .flat_map(|&b| {
                if !all && (b.is_ascii_alphanumeric() || b"-._~".contains(&b)) {
                    vec![b]
                } else if upper {
                    format!("%{b:02X}").into_bytes()
                } else {
                    format!("%{b:02x}").into_bytes()
                }
            })
            .collect()
    };
    forms.push(("percent", percent(true, true)));
    forms.push(("percent lower", percent(false, true)));
    forms.push(("percent reserved", percent(true, false)));
    let text: String = match std::str::from_utf8(value) {
        Ok(s) => s.to_string(),
        Err(_) => value.iter().map(|&b| char::from(b)).collect(),
    };
    let json = serde_json::to_string(&text).unwrap();
    forms.push(("json", json.as_bytes()[1..json.len() - 1].to_vec()));
    let ascii: String = text
        .chars()
        .map(|c| {
            if c.is_ascii() {
                let s = serde_json::to_string(&c.to_string()).unwrap();
                s[1..s.len() - 1].to_string()
            } else {
                let mut units = [0u16; 2];
                c.encode_utf16(&mut units)
                    .iter()
                    .map(|u| format!("\\u{u:04x}"))
                    .collect()
            }
        })
        .collect();
    forms.push(("json ascii", ascii.into_bytes()));
    let units: Vec<u16> = text.encode_utf16().collect();
    forms.push((
        "utf-16le",
        units.iter().flat_map(|u| u.to_le_bytes()).collect(),
    ));
    forms.push((
        "utf-16be",
        units.iter().flat_map(|u| u.to_be_bytes()).collect(),
    ));
    forms
}

/// Where bytes of a run can end up: every file under the workspace (the
/// state directory is `.cordon` inside it) and what the runner printed.
/// Left out: the partial output of a step that failed the leak check,
/// which `.cordon/failed/` keeps for inspection by design (it is what the
/// step wrote, never published).
fn sinks(ws: &Workspace, out: &Output) -> Vec<(String, Vec<u8>)> {
    fn walk(dir: &std::path::Path, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                if !(p.ends_with(".cordon/failed") || p.ends_with(".cordon/compiled")) {
                    walk(&p, out);
                }
            } else if ft.is_file() {
                out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut all = vec![
        ("runner stdout".to_string(), out.raw_stdout.clone()),
        ("runner stderr".to_string(), out.raw_stderr.clone()),
    ];
    walk(ws.root(), &mut all);
    all
}

/// The value, in no form of [`forms`], in no sink of [`sinks`]: searched
/// as the bytes are, and with every byte below 0x20 removed (so line
/// breaks, NUL padding or a `\r` between its characters hide nothing).
fn assert_value_nowhere(ws: &Workspace, out: &Output, value: &[u8]) {
    let forms = forms(value);
    for (sink, bytes) in sinks(ws, out) {
        let squeezed: Vec<u8> = bytes.iter().copied().filter(|b| *b >= 0x20).collect();
        for (form, needle) in &forms {
            let squeezed_needle: Vec<u8> = needle.iter().copied().filter(|b| *b >= 0x20).collect();
            assert!(
                !contains(&bytes, needle)
                    && (squeezed_needle.len() < 8 || !contains(&squeezed, &squeezed_needle)),
                "the value ({form}) is in {sink}:\n{}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }
}

/// No byte the runner printed can move the cursor, retitle the window, set
/// the clipboard or reorder text: no control but `\n` and `\t`, no C1
/// control, no bidirectional control.
fn assert_inert(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let bad: Vec<char> = text
        .chars()
        .filter(|&c| {
            (c.is_control() && c != '\n' && c != '\t')
                || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect();
    assert!(bad.is_empty(), "{what} holds {bad:?}:\n{text}");
    assert!(
        !bytes.iter().any(|b| (0x80..0xa0).contains(b)) || std::str::from_utf8(bytes).is_ok(),
        "{what} holds a raw C1 byte"
    );
}

fn assert_runner_output_inert(out: &Output) {
    assert_inert("runner stdout", &out.raw_stdout);
    assert_inert("runner stderr", &out.raw_stderr);
}

fn stdout_log(ws: &Workspace) -> Vec<u8> {
    let rec = ws.record();
    std::fs::read(rec["stdout"]["log"].as_str().expect("a stdout log")).unwrap()
}

#[test]
fn a_value_with_escape_sequences_interleaved_is_redacted_on_the_terminal_and_in_logs() {
    for value in values() {
        let mut args = Vec::new();
        for junk in ["sgr", "osc", "cr", "bs"] {
            args.extend(["interleave", "tok", junk, "--"]);
        }
        let ws = hostile(&value, &args);
        let out = ws.run(&[]);
        assert_eq!(out.code, 0, "{out:?}");
        let lines = out.stdout.matches("value: [REDACTED:tok]").count();
        assert_eq!(lines, 4, "each interleaving is redacted: {}", out.stdout);
        assert_eq!(out.stderr.matches("value: [REDACTED:tok]").count(), 4);
        let rec = ws.record();
        assert_eq!(rec["stdout"]["redacted"], true);
        assert_eq!(rec["stderr"]["redacted"], true);
        assert_inert("stdout.log", &stdout_log(&ws));
        assert_runner_output_inert(&out);
        assert_value_nowhere(&ws, &out, &value);
    }
}

#[test]
fn a_value_overstruck_with_backspaces_never_displays_in_the_clear() {
    // `X\b` before each byte: a terminal would draw the value alone. Shown
    // visibly, the backspaces no longer erase anything, so the line reads
    // as the junk it is; nothing can take the junk out again.
    let ws = hostile(LONGER, &["interleave", "tok", "overstrike"]);
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("value: pX\\x08rX\\x08e"),
        "{}",
        out.stdout
    );
    assert_inert("stdout.log", &stdout_log(&ws));
    assert_runner_output_inert(&out);
    assert_value_nowhere(&ws, &out, LONGER);
}

#[test]
fn a_step_cannot_draw_a_fake_runner_line() {
    let ws = hostile(LONGER, &["fake-line"]);
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_runner_output_inert(&out);
    assert_inert("stdout.log", &stdout_log(&ws));
    // The step's line stays one line under the step's prefix, with what it
    // tried to do written out.
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("cordon: step `hostile-streams` succeeded in 3 ms"))
        .expect("the step's line is shown");
    assert!(line.starts_with("[hostile-streams] working\\x0d"), "{line}");
    let own: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("cordon: step"))
        .collect();
    assert_eq!(own.len(), 1, "{}", out.stderr);
    assert!(!own[0].contains("fake.json"), "{own:?}");
    assert!(
        out.stderr.contains("\\u{202e}evil\\u{202c}"),
        "{}",
        out.stderr
    );
}

/// Runs the step writing `form` of the value into an output file; the
/// step must fail, publish nothing and say which file.
fn assert_output_fails(value: &[u8], form: &str) {
    let ws = hostile(value, &["encode", "tok", form, "/out/leak.txt"]);
    let out = ws.run(&[]);
    assert_eq!(out.code, 1, "{form}: {out:?}");
    assert!(
        out.stderr
            .contains("output file /out/leak.txt contains a secret value"),
        "{form}: {}",
        out.stderr
    );
    assert!(!ws.path("out").exists(), "{form}: nothing was published");
    assert_eq!(ws.record()["success"], false);
    assert_value_nowhere(&ws, &out, value);
}

/// Runs the step printing each of `forms` of the value on stdout; each
/// line must be redacted.
fn assert_stdout_redacted(value: &[u8], forms: &[&str]) {
    let mut args = Vec::new();
    for f in forms {
        args.extend(["encode", "tok", f, "--"]);
    }
    let ws = hostile(value, &args);
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("[REDACTED:tok]"), "{}", out.stdout);
    assert_eq!(ws.record()["stdout"]["redacted"], true);
    assert_runner_output_inert(&out);
    assert_value_nowhere(&ws, &out, value);
}

const PEM: &[&str] = &["pem64", "pem76", "pem64crlf", "pem76crlf"];

#[test]
fn pem_wrapped_base64_in_an_output_fails_the_step() {
    for value in [AWKWARD.to_vec(), long_value()] {
        for form in PEM {
            assert_output_fails(&value, form);
        }
    }
}

#[test]
fn pem_wrapped_base64_in_stdout_is_redacted() {
    for value in values() {
        assert_stdout_redacted(&value, PEM);
    }
}

#[test]
fn upper_and_lower_case_hex_in_an_output_fails_the_step() {
    for form in ["hex", "HEX"] {
        assert_output_fails(AWKWARD, form);
    }
}

#[test]
fn percent_encoded_value_in_stdout_is_redacted() {
    for value in values() {
        assert_stdout_redacted(&value, &["percent", "percent-lower", "percent-reserved"]);
    }
}

#[test]
fn percent_encoded_value_in_an_output_fails_the_step() {
    for value in [AWKWARD.to_vec(), long_value()] {
        for form in ["percent", "percent-lower", "percent-reserved"] {
            assert_output_fails(&value, form);
        }
    }
}

#[test]
fn json_escaped_value_in_an_output_fails_the_step() {
    for value in [AWKWARD.to_vec(), long_value()] {
        for form in ["json", "json-utf8"] {
            assert_output_fails(&value, form);
        }
    }
}

#[test]
fn json_escaped_value_in_stdout_is_redacted() {
    for value in values() {
        assert_stdout_redacted(&value, &["json", "json-utf8"]);
    }
}

#[test]
fn utf16_value_in_an_output_fails_the_step() {
    for value in [AWKWARD.to_vec(), long_value()] {
        for form in ["utf16le", "utf16be"] {
            assert_output_fails(&value, form);
        }
    }
}

#[test]
fn utf16_value_in_stdout_is_redacted() {
    assert_stdout_redacted(LONGER, &["utf16le", "utf16be"]);
}

#[test]
fn of_two_secrets_where_one_is_a_prefix_of_the_other_each_is_redacted_whole() {
    let ws = Workspace::new();
    set(&ws, "short", SHORTER);
    set(&ws, "long", LONGER);
    let mut args = Vec::new();
    for name in ["short", "long"] {
        for form in ["raw", "pem64", "percent", "json"] {
            args.extend(["encode", name, form, "--"]);
        }
        args.extend(["interleave", name, "sgr", "--"]);
    }
    ws.step(
        HOSTILE_STREAMS,
        &args,
        &(grant("short", "\"reveal\"") + &grant("long", "\"reveal\"")),
    );
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    // The longer value is never shown as the shorter one plus its tail.
    assert!(
        !out.stdout.contains("[REDACTED:short]-and-more"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("[REDACTED:long]"), "{}", out.stdout);
    assert!(out.stdout.contains("[REDACTED:short]"), "{}", out.stdout);
    assert_runner_output_inert(&out);
    assert_value_nowhere(&ws, &out, SHORTER);
    assert_value_nowhere(&ws, &out, LONGER);
}

#[test]
fn a_short_secret_with_reveal_is_refused_before_anything_runs() {
    for uses in ["\"reveal\"", "\"hmac\", \"reveal\"", "\"http-header\""] {
        let ws = Workspace::new();
        set(&ws, "pin", b"1234");
        let rest = if uses.contains("http-header") {
            format!(
                "[[secret]]\nname = \"pin\"\nuses = [{uses}]\nhosts = [\"api.example\"]\n\n[network]\nallow = [\"https://api.example/\"]\n"
            )
        } else {
            grant("pin", uses)
        };
        ws.step(HOSTILE_STREAMS, &["encode", "pin", "hex"], &rest);
        let out = ws.run(&[]);
        assert_eq!(out.code, 2, "{uses}: {out:?}");
        assert!(
            out.stderr.contains(
                "secret `pin` is 4 bytes long, shorter than the 8 bytes the runner can redact reliably"
            ),
            "{uses}: {}",
            out.stderr
        );
        assert!(out.stderr.contains("fix: "), "{}", out.stderr);
        assert!(ws.records().is_empty(), "{uses}: nothing ran");
        assert!(!out.stdout.contains("1234") && !out.stderr.contains("1234"));
    }
}

#[test]
fn a_short_secret_used_only_through_its_handle_runs() {
    let ws = Workspace::new();
    set(&ws, "pin", b"1234");
    ws.step(
        PROBE,
        &["secret-hmac", "pin", "data"],
        &grant("pin", "\"hmac\", \"sign\""),
    );
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.probe_lines("secret-hmac")[0].starts_with("secret-hmac: ok "));
    assert_eq!(ws.record()["secrets"]["pin"]["used"]["hmac"], 1);
}

/// A name with a carriage return, an erase sequence, an OSC title, BEL and
/// a right-to-left override, as TOML writes it.
const HOSTILE_NAME_TOML: &str = "x\\r\\u001b[2K\\u001b]0;owned\\u0007\\u202ey";

#[test]
fn plan_and_verify_escape_manifest_chosen_names() {
    let ws = Workspace::new();
    let digest = ws.component(HOSTILE_STREAMS, "hostile-streams.wasm");
    ws.write(
        "step.toml",
        format!(
            "[step]\nname = \"hostile-streams\"\ncomponent = \"hostile-streams.wasm\"\ndigest = \"{digest}\"\n\
             args = [\"write\", \"/out/{HOSTILE_NAME_TOML}\", \"data\"]\n\n\
             [[mount]]\nguest = \"/out\"\nhost = \"out-{HOSTILE_NAME_TOML}\"\naccess = \"write\"\npurpose = \"{HOSTILE_NAME_TOML}\"\n\n\
             [env]\nMODE = \"{HOSTILE_NAME_TOML}\"\n"
        ),
    );
    let plan = ws.cordon(&["plan", "step.toml"], &[]);
    assert_eq!(plan.code, 0, "{plan:?}");
    assert_runner_output_inert(&plan);
    assert!(
        plan.stdout
            .contains("x\\r\\u{1b}[2K\\u{1b}]0;owned\\u{7}\\u{202e}y"),
        "{}",
        plan.stdout
    );

    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_runner_output_inert(&out);
    // Change the published file: verify names it.
    let dir = std::fs::read_dir(ws.root())
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("out-"))
        .expect("the output was published")
        .path();
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    std::fs::write(&file, "changed").unwrap();
    let verify = ws.cordon(&["verify"], &[]);
    assert_eq!(verify.code, 1, "{verify:?}");
    assert_runner_output_inert(&verify);
    assert!(
        verify.stdout.contains("\\u{202e}y changed"),
        "{}",
        verify.stdout
    );
}

#[test]
fn an_output_file_name_in_the_leak_message_is_escaped() {
    let ws = Workspace::new();
    set(&ws, "tok", LONGER);
    let digest = ws.component(HOSTILE_STREAMS, "hostile-streams.wasm");
    ws.write(
        "step.toml",
        format!(
            "[step]\nname = \"hostile-streams\"\ncomponent = \"hostile-streams.wasm\"\ndigest = \"{digest}\"\n\
             args = [\"encode\", \"tok\", \"hex\", \"/out/{HOSTILE_NAME_TOML}\"]\n\n{}{}",
            mount("/out", "out", "write"),
            grant("tok", "\"reveal\"")
        ),
    );
    let out = ws.run(&[]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_runner_output_inert(&out);
    assert!(
        out.stderr.contains("output file /out/x\\r\\u{1b}[2K"),
        "{}",
        out.stderr
    );
    assert_value_nowhere(&ws, &out, LONGER);
}

#[test]
fn a_secret_rotated_to_a_short_value_is_refused_by_reexecution_too() {
    let ws = Workspace::new();
    set(&ws, "pin", b"a-long-enough-pin");
    ws.step(
        HOSTILE_STREAMS,
        &["encode", "pin", "hex"],
        &grant("pin", "\"reveal\""),
    );
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    // Re-execution reads the environment's current value, as a run would:
    // the same rule applies before the step sees it.
    let rotated = ws.cordon_with_input(&["secret", "rotate", "pin"], &[], Some(b"1234"));
    assert_eq!(rotated.code, 0, "{rotated:?}");
    let out = ws.cordon(&["verify", "--reexecute"], &[]);
    assert_ne!(out.code, 0, "{out:?}");
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains(
            "secret `pin` is 4 bytes long, shorter than the 8 bytes the runner can redact reliably"
        ),
        "{all}"
    );
    assert!(!all.contains("1234"), "{all}");
}
