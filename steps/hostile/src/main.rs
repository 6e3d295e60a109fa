//! The hostile-outputs step used by Cordon's end-to-end tests.
//!
//! `hostile ATTACK SECRET DIR [N]` reveals the secret `SECRET` (granted with
//! `uses = ["reveal"]`) and tries to get its value out through what the
//! runner publishes under the mount `DIR`:
//!
//! - `name-file`: a file *named* after the value.
//! - `name-dir`: a directory named after the value, with a plain file in it.
//! - `name-path`: the value (which holds a `/`) spelled across nested
//!   directory names, each harmless alone.
//! - `symlink-target`: a symbolic link whose target text is the value.
//! - `backslash-then-raw`: a file whose name holds `\`, then the raw value
//!   in another file (a walker that escapes names and re-joins them into
//!   paths cannot open the first one).
//! - `newline-then-raw`: the same with a newline in the first name.
//! - `raw`: the raw value in `DIR/x.txt` (for read-write mounts).
//! - `deep-tree`: `N` nested directories, the raw value in a file at the
//!   bottom; built with directory handles, one level at a time, so the
//!   tree can be deeper than any path the host could name at once.
//! - `plain`: a harmless file, and nothing else.
//!
//! It prints `ATTACK: ok` or `ATTACK: err ERROR`, never the value.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let attack = args.first().map(String::as_str).unwrap_or("");
    match run(&args) {
        Ok(()) => println!("{attack}: ok"),
        Err(e) => println!("{attack}: err {e}"),
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let [attack, secret, dir, rest @ ..] = args else {
        return Err("usage: hostile ATTACK SECRET DIR [N]".into());
    };
    let value = cordon_sdk::secrets::get(secret)
        .and_then(|s| s.reveal())
        .map_err(|e| e.to_string())?;
    let e = |e: std::io::Error| e.to_string();
    let text =
        || String::from_utf8(value.clone()).map_err(|_| "the value is not UTF-8".to_string());
    match attack.as_str() {
        "name-file" => std::fs::write(format!("{dir}/{}", text()?), b"harmless").map_err(e),
        "name-dir" => {
            let sub = format!("{dir}/{}", text()?);
            std::fs::create_dir(&sub).map_err(e)?;
            std::fs::write(format!("{sub}/inside.txt"), b"harmless").map_err(e)
        }
        "name-path" => {
            let path = format!("{dir}/{}", text()?);
            if let Some((parent, _)) = path.rsplit_once('/') {
                std::fs::create_dir_all(parent).map_err(e)?;
            }
            std::fs::write(path, b"harmless").map_err(e)
        }
        "symlink-target" => symlink(dir, &text()?, "link"),
        "backslash-then-raw" => {
            std::fs::write(format!("{dir}/a\\b"), b"harmless").map_err(e)?;
            std::fs::write(format!("{dir}/z.txt"), &value).map_err(e)
        }
        "newline-then-raw" => {
            std::fs::write(format!("{dir}/a\nb"), b"harmless").map_err(e)?;
            std::fs::write(format!("{dir}/z.txt"), &value).map_err(e)
        }
        "raw" => std::fs::write(format!("{dir}/x.txt"), &value).map_err(e),
        "deep-tree" => {
            let depth: usize = rest
                .first()
                .and_then(|n| n.parse().ok())
                .ok_or("deep-tree needs a depth")?;
            deep_tree(dir, depth, &value)
        }
        "plain" => std::fs::write(format!("{dir}/plain.txt"), b"harmless").map_err(e),
        other => Err(format!("unknown attack {other}")),
    }
}

/// A link named `name` in the preopen `dir` with target text `target`
/// (std's wasi symlink is unstable; go to the preopen's descriptor).
#[cfg(target_arch = "wasm32")]
fn symlink(dir: &str, target: &str, name: &str) -> Result<(), String> {
    preopen(dir)?
        .symlink_at(target, name)
        .map_err(|e| format!("{e:?}"))
}

#[cfg(not(target_arch = "wasm32"))]
fn symlink(dir: &str, target: &str, name: &str) -> Result<(), String> {
    std::os::unix::fs::symlink(target, format!("{dir}/{name}")).map_err(|e| e.to_string())
}

#[cfg(target_arch = "wasm32")]
fn preopen(dir: &str) -> Result<wasi::filesystem::types::Descriptor, String> {
    wasi::filesystem::preopens::get_directories()
        .into_iter()
        .find(|(_, guest)| guest == dir)
        .map(|(d, _)| d)
        .ok_or_else(|| format!("no preopen {dir}"))
}

/// `depth` directories named `d`, one inside the other, under the preopen
/// `dir`, and the value in `leak.txt` at the bottom. Each level is opened
/// from the one above and the one above is then dropped, so the step holds
/// two descriptors however deep it goes.
#[cfg(target_arch = "wasm32")]
fn deep_tree(dir: &str, depth: usize, value: &[u8]) -> Result<(), String> {
    use wasi::filesystem::types::{DescriptorFlags, OpenFlags, PathFlags};
    let mut here = preopen(dir)?;
    let e = |e: wasi::filesystem::types::ErrorCode| format!("{e:?}");
    for _ in 0..depth {
        here.create_directory_at("d").map_err(e)?;
        here = here
            .open_at(
                PathFlags::empty(),
                "d",
                OpenFlags::DIRECTORY,
                DescriptorFlags::READ | DescriptorFlags::MUTATE_DIRECTORY,
            )
            .map_err(e)?;
    }
    let file = here
        .open_at(
            PathFlags::empty(),
            "leak.txt",
            OpenFlags::CREATE,
            DescriptorFlags::WRITE,
        )
        .map_err(e)?;
    file.write(value, 0).map_err(e)?;
    Ok(())
}

#[cfg(not(target_arch = "wasm32"))]
fn deep_tree(_dir: &str, _depth: usize, _value: &[u8]) -> Result<(), String> {
    Err("deep-tree runs only as a component".into())
}
