//! `publish --input DIR --to URL [--token SECRET]`: uploads every regular
//! file under `DIR` with `PUT URL/<relative path>`. With `--token`, the
//! request carries `Authorization: Bearer <token>`, where the token is the
//! secret's placeholder: the runner puts the real value in only for the
//! hosts the manifest binds it to, so the step never holds it. Reports the
//! number of files and bytes published; any non-2xx answer fails the step.

use cordon_sdk::{http, report, secrets};
use std::path::Path;

fn usage() -> ! {
    eprintln!("usage: publish --input DIR --to URL [--token SECRET]");
    std::process::exit(2)
}

fn files(
    dir: &Path,
    rel: &str,
    out: &mut Vec<(String, std::path::PathBuf)>,
) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let ft = e.file_type()?;
        if ft.is_dir() {
            files(&e.path(), &rel, out)?;
        } else if ft.is_file() {
            out.push((rel, e.path()));
        }
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut input, mut to, mut token) = (None, None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--input" => input = it.next().cloned(),
            "--to" => to = it.next().cloned(),
            "--token" => token = it.next().cloned(),
            _ => usage(),
        }
    }
    let (Some(input), Some(to)) = (input, to) else {
        usage()
    };
    let auth = token.map(|name| {
        let placeholder = secrets::get(&name)
            .and_then(|s| s.http_header_placeholder())
            .unwrap_or_else(|e| {
                eprintln!("publish: secret {name}: {e}");
                std::process::exit(1)
            });
        format!("Bearer {placeholder}")
    });
    let mut list = Vec::new();
    if let Err(e) = files(Path::new(&input), "", &mut list) {
        eprintln!("publish: cannot read {input}: {e}");
        std::process::exit(1);
    }
    let mut bytes = 0u64;
    for (rel, path) in &list {
        let body = std::fs::read(path).unwrap_or_else(|e| {
            eprintln!("publish: cannot read {rel}: {e}");
            std::process::exit(1)
        });
        bytes += body.len() as u64;
        let url = format!("{}/{rel}", to.trim_end_matches('/'));
        let mut req = http::Request::put(&url).body(body);
        if let Some(a) = &auth {
            req = req.header("authorization", a);
        }
        match req.send() {
            Ok(r) if (200..300).contains(&r.status) => println!("published {rel} ({})", r.status),
            Ok(r) => {
                eprintln!("publish: {url} answered {}", r.status);
                std::process::exit(1);
            }
            Err(e) => {
                eprintln!("publish: {url}: {e}");
                std::process::exit(1);
            }
        }
    }
    report::metric("files", list.len() as f64);
    report::metric("bytes", bytes as f64);
}
