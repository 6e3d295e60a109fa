//! Every grant path, and every attempt to do more than granted.

use crate::harness::*;
use cordon_test_artifacts::PROBE;

const SECRET_TEXT: &str = "host-only: do not leak";

/// A workspace with `in/data.txt`, a host file outside every mount, and
/// the probe mounted with `/in` read and `/out` write.
fn setup(args: &[&str]) -> Workspace {
    let ws = Workspace::new();
    ws.write("in/data.txt", "input data");
    ws.write("outside/secret.txt", SECRET_TEXT);
    ws.step(
        PROBE,
        args,
        &(mount("/in", "in", "read") + &mount("/out", "out", "write")),
    );
    ws
}

fn assert_no_leak(ws: &Workspace, out: &Output) {
    assert!(
        !out.stdout.contains(SECRET_TEXT) && !out.stderr.contains(SECRET_TEXT),
        "leaked: {out:?}"
    );
    assert!(
        !contains(&ws.state_bytes(), SECRET_TEXT.as_bytes()),
        "secret text reached the state directory"
    );
    if ws.path("out").exists() {
        for (_, bytes) in snapshot(&ws.path("out")) {
            assert!(
                !contains(&bytes, SECRET_TEXT.as_bytes()),
                "secret text reached the outputs"
            );
        }
    }
}

#[test]
fn path_traversal_out_of_a_read_mount_is_refused() {
    let ws = setup(&[
        "read",
        "/in/../outside/secret.txt",
        "--",
        "read",
        "/in/../../../../../../etc/passwd",
        "--",
        "read",
        "/in/./../in/../outside/secret.txt",
        "--",
        "read",
        "/in/data.txt",
    ]);
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    let reads = out.probe_lines("read");
    assert_eq!(reads.len(), 4, "{out:?}");
    for line in &reads[..3] {
        assert!(line.starts_with("read: err"), "traversal must fail: {line}");
    }
    assert_eq!(reads[3], "read: ok 10 bytes: input data");
    assert_no_leak(&ws, &out);
}

#[test]
fn absolute_paths_outside_the_mounts_do_not_exist() {
    let ws = setup(&[
        "read",
        "/etc/passwd",
        "--",
        "list",
        "/",
        "--",
        "read",
        &format!("{}/outside/secret.txt", "/tmp"),
        "--",
        "write",
        "/tmp/planted",
        "x",
        "--",
        "cwd",
    ]);
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.probe_lines("read")
            .iter()
            .all(|l| l.starts_with("read: err")),
        "{out:?}"
    );
    assert!(
        out.probe_lines("list")[0].starts_with("list: err"),
        "no root directory is visible: {out:?}"
    );
    assert!(
        out.probe_lines("write")[0].starts_with("write: err"),
        "{out:?}"
    );
    assert!(!std::path::Path::new("/tmp/planted").exists());
    assert_no_leak(&ws, &out);
}

#[test]
fn a_symlinked_file_pointing_out_of_a_mount_is_not_followed() {
    let ws = setup(&["read", "/in/link", "--", "read", "/in/abs-link"]);
    std::os::unix::fs::symlink("../outside/secret.txt", ws.path("in/link")).unwrap();
    std::os::unix::fs::symlink(ws.path("outside/secret.txt"), ws.path("in/abs-link")).unwrap();
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    for line in out.probe_lines("read") {
        assert!(line.starts_with("read: err"), "{line}");
    }
    assert_no_leak(&ws, &out);
    // The input digest records the links as links, not the target's bytes.
    let rec = ws.record();
    assert_eq!(rec["mounts"][0]["before"]["files"], 1);
}

#[test]
fn a_symlinked_directory_pointing_out_of_a_mount_is_not_followed() {
    let ws = setup(&[
        "read",
        "/in/dirlink/secret.txt",
        "--",
        "list",
        "/in/dirlink",
        "--",
        "write",
        "/in/dirlink/planted",
        "x",
    ]);
    std::os::unix::fs::symlink("../outside", ws.path("in/dirlink")).unwrap();
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.probe_lines("read")[0].starts_with("read: err"),
        "{out:?}"
    );
    assert!(
        out.probe_lines("list")[0].starts_with("list: err"),
        "{out:?}"
    );
    assert!(
        out.probe_lines("write")[0].starts_with("write: err"),
        "{out:?}"
    );
    assert!(!ws.path("outside/planted").exists());
    assert_no_leak(&ws, &out);
}

#[test]
fn writes_renames_and_deletes_in_a_read_mount_are_refused() {
    let ws = setup(&[
        "write",
        "/in/new.txt",
        "x",
        "--",
        "append",
        "/in/data.txt",
        "more",
        "--",
        "truncate",
        "/in/data.txt",
        "--",
        "rm",
        "/in/data.txt",
        "--",
        "rename",
        "/in/data.txt",
        "/in/moved.txt",
        "--",
        "rename",
        "/in/data.txt",
        "/out/stolen.txt",
        "--",
        "mkdir",
        "/in/dir",
        "--",
        "rmdir",
        "/in",
        "--",
        "symlink",
        "data.txt",
        "/in/link",
    ]);
    let before = snapshot(&ws.path("in"));
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    let results: Vec<&str> = out.stdout.lines().filter(|l| l.contains(": ")).collect();
    assert_eq!(results.len(), 9, "{out:?}");
    for line in results {
        assert!(line.contains(": err"), "must be refused: {line}");
    }
    assert_eq!(
        snapshot(&ws.path("in")),
        before,
        "the read mount changed on the host"
    );
    assert!(!ws.path("out/stolen.txt").exists());
}

#[test]
fn a_hard_link_from_a_read_mount_into_an_output_is_refused() {
    // A hard link would let a later write through the output change the
    // read-only input on the host.
    let ws = setup(&[
        "hardlink",
        "/in/data.txt",
        "/out/link.txt",
        "--",
        "write",
        "/out/link.txt",
        "changed",
    ]);
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.probe_lines("hardlink")[0].starts_with("hardlink: err"),
        "{out:?}"
    );
    assert_eq!(
        std::fs::read_to_string(ws.path("in/data.txt")).unwrap(),
        "input data"
    );
}

#[test]
fn ungranted_environment_variables_and_arguments_are_absent() {
    let ws = Workspace::new();
    ws.step(
        PROBE,
        &["env"],
        "[env]\nMODEL = \"linear\"\nEPOCHS = \"3\"\n",
    );
    let out = ws.run(&[
        ("HOME", "/root"),
        ("HOST_ONLY_VAR", "should-not-be-seen"),
        ("CORDON_SECRET_TOKEN", "tok-value-never-seen"),
        ("AWS_SECRET_ACCESS_KEY", "aws-value-never-seen"),
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let line = &out.probe_lines("env")[0];
    assert_eq!(
        line,
        r#"env: ok vars=[EPOCHS=3;MODEL=linear] args=["probe", "env"]"#
    );
}

#[test]
fn tcp_is_absent_without_a_network_grant() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    for op in ["tcp", "std-tcp"] {
        let ws = setup(&[op, &addr]);
        let out = ws.run(&[]);
        let rec = ws.record();
        if op == "tcp" {
            // The WASI socket import itself is a trap: there is no socket to deny.
            assert_eq!(out.code, 1, "{out:?}");
            assert_eq!(rec["termination"]["kind"], "trapped");
            let msg = rec["termination"]["message"].as_str().unwrap();
            assert!(
                msg.contains("network access denied")
                    && msg.contains("wasi:sockets/tcp-create-socket"),
                "{msg}"
            );
        } else {
            // std may refuse before reaching the import; either way no connection.
            assert!(
                out.code == 1 || out.probe_lines("std-tcp")[0].starts_with("std-tcp: err"),
                "{out:?}"
            );
        }
        match listener.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("the step reached the host listener via {op}: {other:?}"),
        }
    }
}

#[test]
fn udp_is_absent_without_a_network_grant() {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_nonblocking(true).unwrap();
    let addr = sock.local_addr().unwrap().to_string();
    let ws = setup(&["udp", &addr]);
    let out = ws.run(&[]);
    assert_eq!(out.code, 1, "{out:?}");
    let msg = ws.record()["termination"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("network access denied") && msg.contains("wasi:sockets/udp"),
        "{msg}"
    );
    let mut buf = [0u8; 16];
    match sock.recv(&mut buf) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("a datagram arrived: {other:?}"),
    }
}

#[test]
fn dns_is_absent_without_a_network_grant() {
    let ws = setup(&["dns", "localhost"]);
    let out = ws.run(&[]);
    assert_eq!(out.code, 1, "{out:?}");
    let msg = ws.record()["termination"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    // Looking up a name needs the network instance first; that call traps.
    assert!(
        msg.contains("network access denied") && msg.contains("wasi:sockets/"),
        "{msg}"
    );
}

#[test]
fn a_symlink_planted_in_an_output_fails_the_step_and_publishes_nothing() {
    let target = ws_outside_target();
    let ws = setup(&[
        "write",
        "/out/ok.txt",
        "fine",
        "--",
        "symlink",
        &target,
        "/out/leak",
        "--",
        "symlink",
        "../../outside/secret.txt",
        "/out/rel-leak",
    ]);
    let out = ws.run(&[]);
    let links = out.probe_lines("symlink");
    if links.iter().all(|l| l.starts_with("symlink: err")) {
        // The filesystem layer refused both links; then the output is plain.
        assert_eq!(out.code, 0, "{out:?}");
        return;
    }
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("symbolic link"), "{}", out.stderr);
    assert!(!ws.path("out").exists(), "nothing may be published");
    let rec = ws.record();
    assert_eq!(rec["success"], false);
    assert!(
        rec["outputs"]["withheld"]["reason"]
            .as_str()
            .unwrap()
            .contains("symbolic link")
    );
    let kept = rec["outputs"]["withheld"]["kept_at"].as_str().unwrap();
    assert!(
        std::path::Path::new(kept).exists(),
        "partial output kept for inspection"
    );
    assert_no_leak(&ws, &out);
}

fn ws_outside_target() -> String {
    // An absolute host path that exists: the worst case for a planted link.
    "/etc/hostname".to_string()
}

#[test]
fn the_state_directory_cannot_be_mounted() {
    // Mounting the manifest's own directory would expose records and the
    // compiled-code cache to the step.
    let ws = Workspace::new();
    ws.step(PROBE, &["list", "/ws"], &mount("/ws", ".", "read-write"));
    let out = ws.run(&[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("overlaps the state directory"),
        "{}",
        out.stderr
    );
    assert!(ws.records().is_empty());
}

#[test]
fn a_read_write_mount_is_changed_in_place_and_marked() {
    let ws = Workspace::new();
    ws.write("rw/a.txt", "a");
    ws.step(
        PROBE,
        &["write", "/rw/b.txt", "b", "--", "exit", "3"],
        &mount("/rw", "rw", "read-write"),
    );
    // WASI 0.2's exit carries success or failure only: any non-zero code is 1.
    let out = ws.run(&[]);
    assert_eq!(out.code, 1, "{out:?}");
    // In place: the change survives the failed step, and the record says so.
    assert_eq!(std::fs::read_to_string(ws.path("rw/b.txt")).unwrap(), "b");
    let rec = ws.record();
    assert_eq!(rec["mounts"][0]["access"], "read-write");
    assert_eq!(rec["mounts"][0]["before"]["files"], 1);
    assert_eq!(rec["mounts"][0]["after"]["files"], 2);
    assert_eq!(
        rec["termination"],
        serde_json::json!({"kind": "exited", "code": 1})
    );
}

/// Runs a probe step with one read mount of `host` (absolute or relative to
/// the workspace) and asserts that planning refuses it, naming the mount
/// and `what`, and that nothing ran.
fn assert_mount_refused(ws: &Workspace, host: &str, what: &str) {
    ws.step(PROBE, &["list", "/m"], &mount("/m", host, "read"));
    let out = ws.run(&[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("mount /m (") && out.stderr.contains(what),
        "the error names the mount and the protected path: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("which no step may reach"),
        "{}",
        out.stderr
    );
    assert!(ws.records().is_empty(), "nothing ran");
}

#[test]
fn the_secrets_home_cannot_be_mounted() {
    let ws = Workspace::new();
    // Make the stores and their keys exist, as they do once a secret is set.
    let out = ws.cordon(&["key", "generate", "--env", "dev"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let home = ws.secrets_home().to_str().unwrap().to_string();
    assert_mount_refused(&ws, &home, "the secrets home");
    assert_mount_refused(
        &ws,
        &format!("{home}/stores"),
        "lies inside the secrets home",
    );
    assert_mount_refused(
        &ws,
        &format!("{home}/trusted"),
        "lies inside the secrets home",
    );
}

#[test]
fn a_directory_containing_the_secrets_home_cannot_be_mounted() {
    let ws = Workspace::new();
    let out = ws.cordon(&["key", "generate", "--env", "dev"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let parent = ws
        .secrets_home()
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert_mount_refused(&ws, &parent, "contains the secrets home");
}

#[test]
fn a_symlink_to_the_secrets_home_cannot_be_mounted() {
    let ws = Workspace::new();
    std::os::unix::fs::symlink(ws.secrets_home(), ws.path("innocent")).unwrap();
    assert_mount_refused(&ws, "innocent", "the secrets home");
}

#[test]
fn a_store_and_key_file_configured_elsewhere_cannot_be_mounted() {
    let ws = Workspace::new();
    let elsewhere = tempfile::tempdir().unwrap();
    let dir = elsewhere.path().to_str().unwrap();
    std::fs::create_dir_all(elsewhere.path().join("stores")).unwrap();
    std::fs::create_dir_all(elsewhere.path().join("keys")).unwrap();
    ws.write(
        "cordon.toml",
        format!(
            "[env.dev.secrets]\nstore = \"{dir}/stores/dev.store\"\nkey_file = \"{dir}/keys/dev.key\"\n"
        ),
    );
    assert_mount_refused(
        &ws,
        &format!("{dir}/stores"),
        "the secret store of environment `dev`",
    );
    assert_mount_refused(
        &ws,
        &format!("{dir}/keys"),
        "the key of environment `dev`'s secret store",
    );
}

#[test]
fn the_directory_of_a_signing_key_file_cannot_be_mounted() {
    let ws = Workspace::new();
    let out = ws.cordon(&["key", "reviewer", "signer", "--dir", "keys"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    ws.write(
        "cordon.toml",
        "[env.dev.records]\nsigning-key = \"keys/signer.key\"\n",
    );
    assert_mount_refused(&ws, "keys", "the record-signing key");
}

#[test]
fn the_workspace_configuration_cannot_be_mounted() {
    let ws = Workspace::new();
    ws.write("conf/cordon.toml", "[env.dev]\n");
    ws.write("conf/data/a.txt", "a");
    ws.step(PROBE, &["list", "/m"], &mount("/m", "conf", "read"));
    let out = ws.cordon(&["run", "step.toml", "--config", "conf/cordon.toml"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("the workspace configuration"),
        "{}",
        out.stderr
    );
    // Its data directory alone is fine.
    ws.step(PROBE, &["list", "/m"], &mount("/m", "conf/data", "read"));
    let out = ws.cordon(&["run", "step.toml", "--config", "conf/cordon.toml"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
}

#[test]
fn the_compile_cache_cannot_be_mounted() {
    let ws = Workspace::new();
    let cache = ws.mkdir("cache");
    ws.step(PROBE, &["list", "/m"], &mount("/m", "cache", "read"));
    let out = ws.cordon(
        &["run", "step.toml"],
        &[("CORDON_COMPILE_CACHE", cache.to_str().unwrap())],
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("the compiled-component cache"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_vault_secret_id_file_cannot_be_mounted() {
    let ws = Workspace::new();
    ws.write("ci/secret-id", "s3cr3t-id");
    let id = ws.path("ci/secret-id");
    ws.write(
        "cordon.toml",
        format!(
            "[env.dev.secrets]\nprovider = \"vault\"\naddress = \"http://127.0.0.1:1\"\nrole_id = \"r\"\nsecret_id_file = \"{}\"\n",
            id.display()
        ),
    );
    assert_mount_refused(&ws, "ci", "the vault AppRole secret id file");
}
