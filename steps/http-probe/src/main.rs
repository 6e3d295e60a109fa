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

use cordon_sdk::{http, secrets};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    for group in args.split(|a| a == "--") {
        if group.len() < 2 {
            continue;
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
