//! A hostile step for Cordon's end-to-end tests of the output channels.
//!
//! `hostile-streams OP ARGS... [-- OP ARGS...]...` runs each operation in
//! turn. Each one reveals a granted secret (or draws on the terminal) and
//! writes it where the runner must catch it: interleaved with terminal
//! escapes on stdout and stderr, or in an encoding a real step might use by
//! accident, on stdout or in an output file. The tests check that the value
//! shows up nowhere.
//!
//! - `interleave NAME sgr|osc|cr|bs|overstrike`: the value on stdout and
//!   stderr with `ESC[0m`, an OSC title, `\r`, `\b` or `X\b` between its
//!   bytes.
//! - `fake-line`: a line that erases itself and draws a runner line.
//! - `encode NAME FORM [FILE]`: the value in FORM (see [`encode`]) on
//!   stdout, or in FILE.
//! - `write FILE TEXT`: writes TEXT to FILE.

use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    for op in args.split(|a| a == "--") {
        if op.is_empty() {
            continue;
        }
        if let Err(e) = run(&op[0], &op[1..]) {
            println!("{}: err {e}", op[0]);
        }
    }
}

fn arg(args: &[String], i: usize) -> Result<&str, String> {
    args.get(i)
        .map(String::as_str)
        .ok_or_else(|| format!("missing argument {i}"))
}

fn reveal(name: &str) -> Result<Vec<u8>, String> {
    let s = cordon_sdk::secrets::get(name).map_err(|e| e.to_string())?;
    s.reveal().map_err(|e| e.to_string())
}

fn both(bytes: &[u8]) {
    let _ = std::io::stdout().write_all(bytes);
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().write_all(bytes);
    let _ = std::io::stderr().flush();
}

fn run(op: &str, a: &[String]) -> Result<(), String> {
    match op {
        "interleave" => {
            let value = reveal(arg(a, 0)?)?;
            let junk: &[u8] = match arg(a, 1)? {
                "sgr" => b"\x1b[0m",
                "osc" => b"\x1b]0;title\x07",
                "cr" => b"\r",
                "bs" => b"\x08",
                "overstrike" => b"X\x08",
                other => return Err(format!("unknown interleaving {other}")),
            };
            let mut line = b"value: ".to_vec();
            for (i, b) in value.iter().enumerate() {
                if i > 0 {
                    line.extend_from_slice(junk);
                }
                line.push(*b);
            }
            line.push(b'\n');
            both(&line);
            Ok(())
        }
        "fake-line" => {
            both(
                b"working\r\x1b[2K\x1b[1Acordon: step `hostile-streams` succeeded in 3 ms (fuel 1, peak memory 1 KiB); record: fake.json\n\
                  \x1b]0;owned\x07\x1b]52;c;b3duZWQ=\x07\xe2\x80\xaeevil\xe2\x80\xac\x9b2J\n",
            );
            Ok(())
        }
        "encode" => {
            let value = reveal(arg(a, 0)?)?;
            let mut text = encode(&value, arg(a, 1)?)?;
            match a.get(2) {
                Some(path) => std::fs::write(path, &text).map_err(|e| e.to_string()),
                None => {
                    text.push(b'\n');
                    std::io::stdout()
                        .write_all(&text)
                        .map_err(|e| e.to_string())
                }
            }
        }
        "write" => std::fs::write(arg(a, 0)?, arg(a, 1)?).map_err(|e| e.to_string()),
        other => Err(format!("unknown operation {other}")),
    }
}

/// `value` in one of the encodings a step might publish by accident:
///
/// - `raw`, `hex`, `HEX`; `base64`; `pem64`, `pem76`, `pem64crlf`, `pem76crlf`
///   (base64 wrapped at 64 or 76 columns, as PEM and MIME do, inside a PEM
///   block);
/// - `percent` (`%XX` for every byte), `percent-lower`, `percent-reserved`
///   (only bytes outside RFC 3986's unreserved set);
/// - `json` (a JSON document with the value as an ASCII-only string:
///   `\"`, `\\`, `\n`, `\uXXXX`; bytes that are not UTF-8 as `\u00XX`),
///   `json-utf8` (only the escapes JSON requires);
/// - `utf16le`, `utf16be` (bytes that are not UTF-8 as Latin-1).
fn encode(value: &[u8], form: &str) -> Result<Vec<u8>, String> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";
    let hex = |digits: &[u8; 16]| -> Vec<u8> {
        value
            .iter()
            .flat_map(|b| [digits[(b >> 4) as usize], digits[(b & 15) as usize]])
            .collect()
    };
    let percent = |digits: &[u8; 16], all: bool| -> Vec<u8> {
        let mut out = Vec::new();
        for &b in value {
            if !all && (b.is_ascii_alphanumeric() || b"-._~".contains(&b)) {
                out.push(b);
            } else {
                out.extend_from_slice(&[
                    b'%',
                    digits[(b >> 4) as usize],
                    digits[(b & 15) as usize],
                ]);
            }
        }
        out
    };
    let pem = |width: usize, eol: &[u8]| -> Vec<u8> {
        let b64 = base64(value);
        let mut out = b"-----BEGIN PRIVATE KEY-----".to_vec();
        out.extend_from_slice(eol);
        for line in b64.chunks(width) {
            out.extend_from_slice(line);
            out.extend_from_slice(eol);
        }
        out.extend_from_slice(b"-----END PRIVATE KEY-----");
        out.extend_from_slice(eol);
        out
    };
    Ok(match form {
        "raw" => value.to_vec(),
        "hex" => hex(HEX),
        "HEX" => hex(HEX_UPPER),
        "base64" => base64(value),
        "pem64" => pem(64, b"\n"),
        "pem76" => pem(76, b"\n"),
        "pem64crlf" => pem(64, b"\r\n"),
        "pem76crlf" => pem(76, b"\r\n"),
        "percent" => percent(HEX_UPPER, true),
        "percent-lower" => percent(HEX, true),
        "percent-reserved" => percent(HEX_UPPER, false),
        "json" | "json-utf8" => {
            let mut out = b"{\"token\": \"".to_vec();
            out.extend_from_slice(&json_string(value, form == "json"));
            out.extend_from_slice(b"\"}\n");
            out
        }
        "utf16le" | "utf16be" => {
            let units: Vec<u16> = match std::str::from_utf8(value) {
                Ok(s) => s.encode_utf16().collect(),
                Err(_) => value.iter().map(|&b| u16::from(b)).collect(),
            };
            units
                .iter()
                .flat_map(|u| {
                    if form == "utf16le" {
                        u.to_le_bytes()
                    } else {
                        u.to_be_bytes()
                    }
                })
                .collect()
        }
        other => return Err(format!("unknown form {other}")),
    })
}

/// The body of a JSON string holding `value`: ASCII only (`\uXXXX`, with
/// surrogate pairs) when `ascii`, else only the required escapes. A value
/// that is not UTF-8 is read as Latin-1 first, the way a program that must
/// hand bytes to a JSON encoder often does.
fn json_string(value: &[u8], ascii: bool) -> Vec<u8> {
    let text: String = match std::str::from_utf8(value) {
        Ok(s) => s.to_string(),
        Err(_) => value.iter().map(|&b| char::from(b)).collect(),
    };
    let mut out = Vec::new();
    for c in text.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 || (ascii && !c.is_ascii()) => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.extend_from_slice(format!("\\u{:04x}", u).as_bytes());
                }
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out
}

fn base64(data: &[u8]) -> Vec<u8> {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
    out
}
