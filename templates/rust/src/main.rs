//! `{{name}}`: a Cordon step. Summarizes every file in its input mount
//! (files, lines, bytes) into `summary.json` in its output mount, and
//! reports the counts as metrics in its execution record.
//!
//! ```text
//! {{name}} [--input DIR] [--output DIR]     (defaults: /in, /out)
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The Cordon interfaces (`secrets`, `report`), generated from `wit/`.
/// Outside wasm32 (the unit tests) they are not callable, so the step's
/// logic below never touches them; only `main` does.
mod cordon {
    wit_bindgen::generate!({
        path: "wit",
        world: "cordon:step/host-api",
    });
    // `secrets::get(name)` opens a granted secret's handle; unused until
    // the step needs one (and its manifest grants it).
    #[allow(unused_imports)]
    pub use self::cordon::step::{report, secrets};
}

/// What the step found in its input.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Summary {
    files: u64,
    lines: u64,
    bytes: u64,
}

impl Summary {
    fn to_json(&self) -> String {
        format!(
            "{{\"files\": {}, \"lines\": {}, \"bytes\": {}}}\n",
            self.files, self.lines, self.bytes
        )
    }
}

/// Counts the regular files directly in `dir`, their lines and bytes.
fn summarize(dir: &Path) -> Result<Summary, String> {
    let mut s = Summary {
        files: 0,
        lines: 0,
        bytes: 0,
    };
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let data =
            std::fs::read(entry.path()).map_err(|e| format!("{}: {e}", entry.path().display()))?;
        s.files += 1;
        s.bytes += data.len() as u64;
        s.lines += data.iter().filter(|&&b| b == b'\n').count() as u64;
    }
    Ok(s)
}

/// `--name value` from the granted arguments (the manifest's `args`).
fn option(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let input = PathBuf::from(option(&args, "--input").unwrap_or_else(|| "/in".into()));
    let output = PathBuf::from(option(&args, "--output").unwrap_or_else(|| "/out".into()));
    let summary = summarize(&input)?;
    let target = output.join("summary.json");
    std::fs::write(&target, summary.to_json()).map_err(|e| format!("{}: {e}", target.display()))?;
    cordon::report::metric("files", summary.files as f64);
    cordon::report::metric("lines", summary.lines as f64);
    cordon::report::metric("bytes", summary.bytes as f64);
    println!(
        "summarized {} files ({} lines)",
        summary.files, summary.lines
    );
    Ok(())
}

/// An error ends the step with exit code 1 and its message on stderr,
/// which the runner keeps in the record.
fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The step's logic, natively: `cargo test` (no wasm, no runner).
    #[test]
    fn counts_files_lines_and_bytes() {
        let dir = std::env::temp_dir().join(format!("{{name}}-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a.csv"), "id,x\n1,2\n").unwrap();
        std::fs::write(dir.join("b.txt"), "one line\n").unwrap();
        let s = summarize(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            s,
            Summary {
                files: 2,
                lines: 3,
                bytes: 18
            }
        );
        assert_eq!(s.to_json(), "{\"files\": 2, \"lines\": 3, \"bytes\": 18}\n");
    }

    #[test]
    fn a_missing_input_is_an_error_naming_it() {
        let err = summarize(Path::new("/no/such/dir")).unwrap_err();
        assert!(err.starts_with("/no/such/dir: "), "{err}");
    }
}
