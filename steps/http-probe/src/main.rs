//! Test step for the network tests. Each argument group (separated by
//! `--`) is one request:
//!
//! ```text
//! METHOD URL [header NAME VALUE]... [secret-header NAME SECRET PREFIX] [body TEXT]
//! ```
//!
//! `secret-header` puts `PREFIX` + the placeholder of secret `SECRET` into
//! header `NAME`. For each request it prints `METHOD URL -> STATUS BODY`
//! or `METHOD URL -> error: ...`, and exits 0 either way (the tests read
//! the lines and the record).
//!
//! Two groups are attacks on the runner's memory instead of requests:
//!
//! - `hoard-fields N BYTES`: creates `N` `wasi:http` header maps, fills
//!   each with up to `BYTES` bytes of 1 KiB values (going past the
//!   runner's per-map limit traps, so the caller picks a size just under
//!   it), and never drops one. It prints `hoard-fields: MAPS maps, TOTAL
//!   bytes` if the runner lets it finish.
//! - `refused N LEN URL`: `N` requests to `URL` followed by a path of
//!   `LEN` bytes (a host the grant does not name, so each is refused),
//!   printing `refused: N requests` at the end.

use cordon_sdk::{http, secrets};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    for group in args.split(|a| a == "--") {
        if group.len() < 2 {
            continue;
        }
        match group[0].as_str() {
            "hoard-fields" => {
                hoard_fields(group[1].parse().unwrap(), group[2].parse().unwrap());
                continue;
            }
            "refused" => {
                let n: usize = group[1].parse().unwrap();
                let len: usize = group[2].parse().unwrap();
                let url = format!("{}/{}", group[3], "a".repeat(len));
                for _ in 0..n {
                    let _ = http::Request::get(&url).send();
                }
                println!("refused: {n} requests");
                continue;
            }
            _ => {}
        }
        let (method, url) = (&group[0], &group[1]);
        let mut req = http::Request::new(method, url);
        let mut rest = group[2..].iter();
        while let Some(op) = rest.next() {
            match op.as_str() {
                "header" => {
                    let (n, v) = (rest.next().unwrap(), rest.next().unwrap());
                    req = req.header(n, v);
                }
                "secret-header" => {
                    let (n, s, prefix) = (
                        rest.next().unwrap(),
                        rest.next().unwrap(),
                        rest.next().unwrap(),
                    );
                    match secrets::get(s).and_then(|h| h.http_header_placeholder()) {
                        Ok(p) => req = req.header(n, &format!("{prefix}{p}")),
                        Err(e) => println!("placeholder {s}: error: {e}"),
                    }
                }
                "body" => req = req.body(rest.next().unwrap().as_bytes().to_vec()),
                other => panic!("unknown op {other}"),
            }
        }
        match req.send() {
            Ok(r) => println!(
                "{method} {url} -> {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ),
            Err(e) => println!("{method} {url} -> error: {e}"),
        }
    }
}

/// Header maps that are created, filled and kept: each is host memory the
/// step's memory limit does not see.
#[cfg(target_arch = "wasm32")]
fn hoard_fields(n: usize, per_map: usize) {
    use wasip2::http::types::Fields;
    let value = vec![b'v'; 1024];
    let mut kept = Vec::with_capacity(n);
    let mut bytes = 0usize;
    for _ in 0..n {
        let fields = Fields::new();
        let mut in_map = 0;
        while in_map + value.len() <= per_map {
            fields
                .append(&format!("x-fill-{in_map}"), &value)
                .expect("append a header");
            in_map += value.len();
        }
        bytes += in_map;
        kept.push(fields);
    }
    println!("hoard-fields: {} maps, {bytes} bytes", kept.len());
    std::mem::forget(kept);
}

#[cfg(not(target_arch = "wasm32"))]
fn hoard_fields(_n: usize, _per_map: usize) {
    panic!("hoard-fields runs only as a component");
}
