//! Human-readable quantities in manifests: byte sizes (`"256MiB"`) and
//! durations (`"60s"`). Parsing is strict so that a typo is an error, never a
//! silently different limit.

use std::time::Duration;

/// A size or duration that does not parse; the message says the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnitError(pub String);

/// Parses a byte size such as `"512"`, `"64KiB"`, `"256MiB"`, `"1GiB"` or
/// `"10MB"`. Binary (`KiB`, `MiB`, `GiB`, `TiB`) and decimal (`KB`, `MB`,
/// `GB`, `TB`) suffixes are accepted; a bare number is bytes.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    parse_size_message(text).map_err(UnitError)
}

fn parse_size_message(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '_')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: u64 = num
        .replace('_', "")
        .parse()
        .map_err(|_| format!("`{text}` is not a size; write it like \"256MiB\" or \"1GiB\""))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{text}`; use B, KiB, MiB, GiB, TiB (or KB, MB, GB, TB)"
            ));
        }
    };
    num.checked_mul(mult)
        .ok_or_else(|| format!("size `{text}` is too large"))
}

/// Parses a duration such as `"250ms"`, `"60s"`, `"5m"` or `"2h"`.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    parse_duration_message(text).map_err(UnitError)
}

fn parse_duration_message(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '_')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: u64 = num
        .replace('_', "")
        .parse()
        .map_err(|_| format!("`{text}` is not a duration; write it like \"60s\" or \"5m\""))?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(num),
        "s" => Duration::from_secs(num),
        "m" => Duration::from_secs(num.saturating_mul(60)),
        "h" => Duration::from_secs(num.saturating_mul(3600)),
        "" => return Err(format!("duration `{text}` needs a unit: ms, s, m or h")),
        other => {
            return Err(format!(
                "unknown duration unit `{other}` in `{text}`; use ms, s, m or h"
            ));
        }
    };
    Ok(d)
}

/// Formats a byte count for people: `1.5 MiB`, `512 B`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_size("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("10MB").unwrap(), 10_000_000);
        assert_eq!(parse_size("1_000").unwrap(), 1000);
        assert!(
            parse_size("12 parsecs")
                .unwrap_err()
                .0
                .contains("unknown size unit")
        );
        assert!(parse_size("MiB").is_err());
        assert!(
            parse_size("99999999999TiB")
                .unwrap_err()
                .0
                .contains("too large")
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert!(parse_duration("60").unwrap_err().0.contains("needs a unit"));
        assert!(
            parse_duration("3d")
                .unwrap_err()
                .0
                .contains("unknown duration unit")
        );
    }

    #[test]
    fn formatting() {
        assert_eq!(format_size(512), "512 B");
        assert_eq!(format_size(1536), "1.5 KiB");
    }
}
