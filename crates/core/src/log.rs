//! The runner's own lines: plain text for people (`cordon: ...` on
//! stderr), or, with `--log-format json`, one JSON object per line for a
//! log pipeline or a SIEM. Every line the runner writes goes through here
//! (the [`say!`](crate::say) family of macros and the step-output
//! forwarder), so switching the format switches all of them.
//!
//! A JSON event has `timestamp` (RFC 3339, UTC), `level` (`info`, `warn`,
//! `error`), `message` (the plain line without its `cordon: ` prefix) and
//! `event` (`runner` for the runner's own lines, `step-output` for a line a
//! step wrote), plus what the line names: `step`, `stream` (`stdout` or
//! `stderr`), `record` (a record file) and `exit_code`. Callers have
//! already escaped and redacted what they pass; JSON escaping is the only
//! change made here.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

static JSON: AtomicBool = AtomicBool::new(false);

/// Switches every line to JSON events (`--log-format json`).
pub fn set_json(on: bool) {
    JSON.store(on, Ordering::SeqCst);
}

/// Whether lines are JSON events.
pub fn is_json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// The level a runner line carries, read from its wording.
fn level_of(message: &str) -> &'static str {
    let m = message.trim_start();
    let m = m.strip_prefix("cordon: ").unwrap_or(m);
    let failed_step = (m.starts_with("step `") && m.contains("` failed"))
        || (m.starts_with('[') && m.contains("] FAILED"));
    if m.starts_with("error:") || failed_step {
        "error"
    } else if m.starts_with("warning:") || m.starts_with("BREAK-GLASS") {
        "warn"
    } else {
        "info"
    }
}

/// The event for one runner line.
pub fn runner_event(line: &str) -> serde_json::Value {
    let message = line.strip_prefix("cordon: ").unwrap_or(line);
    let mut event = serde_json::json!({
        "timestamp": crate::clock::now_rfc3339(),
        "level": level_of(line),
        "event": "runner",
        "message": message,
    });
    // `cordon: [step] ...`: the step the line is about.
    if let Some(rest) = message.strip_prefix('[')
        && let Some((step, _)) = rest.split_once(']')
    {
        event["step"] = step.into();
    }
    let record = message
        .strip_prefix("record: ")
        .or_else(|| message.split_once(" record: ").map(|(_, r)| r));
    if let Some(after) = record {
        event["record"] = after.split_whitespace().next().unwrap_or("").into();
    }
    if let Some((_, after)) = message.split_once("exited with code ")
        && let Ok(code) = after
            .trim_start()
            .split(|c: char| !c.is_ascii_digit() && c != '-')
            .next()
            .unwrap_or("")
            .parse::<i64>()
    {
        event["exit_code"] = code.into();
    }
    event
}

/// Writes one runner line (or, with JSON events, one event per line of
/// `text`) to stderr; a closed stderr is ignored (see `emit!`).
pub fn say(text: &str) {
    let mut err = std::io::stderr().lock();
    if is_json() {
        for block in blocks(text) {
            let _ = writeln!(err, "{}", runner_event(&block));
        }
    } else {
        let _ = writeln!(err, "{text}");
    }
}

/// The events of `text`: one per line, except that an indented line (the
/// `  fix: ...` under an error, a violation's details) belongs to the line
/// above it. Blank lines are dropped.
fn blocks(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match out.last_mut() {
            Some(last) if line.starts_with([' ', '\t']) => {
                last.push('\n');
                last.push_str(line);
            }
            _ => out.push(line.to_string()),
        }
    }
    out
}

/// Writes `text` to stderr without adding a newline (a block the caller
/// ends itself); with JSON events, each of its lines becomes an event.
pub fn say_raw(text: &str) {
    if is_json() {
        say(text);
    } else {
        let _ = write!(std::io::stderr().lock(), "{text}");
    }
}

/// The event for one line a step wrote to `stream`, forwarded under
/// `prefix` (`[step] `).
pub fn step_output_event(prefix: &str, stream: &str, line: &str) -> serde_json::Value {
    let step = prefix
        .trim()
        .strip_prefix('[')
        .and_then(|p| p.strip_suffix(']'))
        .unwrap_or(prefix.trim());
    serde_json::json!({
        "timestamp": crate::clock::now_rfc3339(),
        "level": "info",
        "event": "step-output",
        "step": step,
        "stream": stream,
        "message": line.strip_suffix('\n').unwrap_or(line),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runner_lines_become_events_with_what_they_name() {
        let e =
            runner_event("cordon: [train] FAILED in 12 ms: exited with code 3 record: /s/r.json");
        assert_eq!(e["level"], "error");
        assert_eq!(e["event"], "runner");
        assert_eq!(e["step"], "train");
        assert_eq!(e["record"], "/s/r.json");
        assert_eq!(e["exit_code"], 3);
        assert!(e["message"].as_str().unwrap().starts_with("[train]"));
        assert!(e["timestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(runner_event("cordon: warning: unsigned")["level"], "warn");
        assert_eq!(runner_event("error: bad manifest")["level"], "error");
        assert_eq!(runner_event("cordon: record: /r.json")["record"], "/r.json");
        assert_eq!(runner_event("cordon: [a] done in 3 ms")["level"], "info");
    }

    #[test]
    fn an_error_and_its_fix_are_one_event() {
        let b = blocks("error: step.toml:3:1: bad\n  fix: do this\n\ncordon: next\n");
        assert_eq!(
            b,
            vec!["error: step.toml:3:1: bad\n  fix: do this", "cordon: next"]
        );
    }

    #[test]
    fn a_step_line_keeps_its_bytes_as_one_json_string() {
        let e = step_output_event("[s] ", "stderr", "say \"hi\" \\ there\n");
        assert_eq!(e["step"], "s");
        assert_eq!(e["stream"], "stderr");
        assert_eq!(e["message"], "say \"hi\" \\ there");
        let text = e.to_string();
        assert!(!text.contains('\n'));
    }
}
