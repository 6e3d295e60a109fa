//! Stored tree listings, through `Cas::restore_tree`: a listing planted in
//! the store (or in a bucket it was fetched from) chooses what is created
//! where. Whatever it says, a restore creates nothing outside its
//! destination, and what it leaves there has the digest asked for.

use crate::mutate;
use cordon_engine::cas::Cas;
use proptest::prelude::*;
use std::path::Path;

fn listing_path(state: &Path, d: &cordon_manifest::manifest::Sha256Digest) -> std::path::PathBuf {
    state
        .join("cas/trees/sha256")
        .join(format!("{}.json", d.hex()))
}

/// Everything under `dir`, for comparing before and after.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

proptest! {
    #![proptest_config(crate::config(64))]

    #[test]
    fn a_mutated_listing_restores_its_own_tree_or_fails_inside_the_destination(
        edits in mutate::byte_edits(),
    ) {
        let d = tempfile::tempdir().unwrap();
        let state = d.path().join("state");
        let src = d.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/model.json"), b"{}").unwrap();
        std::fs::write(src.join("a.txt"), b"a").unwrap();
        std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
        let cas = Cas::new(&state);
        let tree = cas.store_tree(&src).unwrap();
        let file = listing_path(&state, &tree);
        let listing = std::fs::read(&file).unwrap();
        std::fs::write(&file, mutate::apply_bytes(listing, &edits)).unwrap();

        let out = d.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let before: Vec<_> = walk(d.path()).into_iter().filter(|p| !p.starts_with(&out)).collect();
        let dest = out.join("restored");
        match cas.restore_tree(&tree, &dest) {
            Ok(()) => prop_assert_eq!(cordon_core::digest::tree(&dest).unwrap().digest, tree),
            Err(e) => { let _ = e.to_string(); }
        }
        let after: Vec<_> = walk(d.path()).into_iter().filter(|p| !p.starts_with(&out)).collect();
        prop_assert_eq!(before, after);
    }
}

/// A listing that restores a link to a directory outside the destination
/// and then a file "inside" the link: the file was created through the
/// link, outside the destination, before the restored tree's digest was
/// found wrong.
#[test]
fn a_planted_listing_cannot_write_through_a_link_it_restored() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    let outside = d.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let cas = Cas::new(&state);
    let blob = cas.put(b"planted").unwrap();
    let tree = cordon_manifest::manifest::Sha256Digest::of(b"any tree");
    let listing = serde_json::json!({"format": cordon_engine::cas::TREE_FORMAT, "entries": [
        {"kind": "symlink", "path": "l", "target": outside.to_str().unwrap()},
        {"kind": "dir", "path": "l/made"},
        {"kind": "file", "path": "l/planted", "sha256": blob.hex()},
    ]});
    let file = listing_path(&state, &tree);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, serde_json::to_vec(&listing).unwrap()).unwrap();
    let err = cas
        .restore_tree(&tree, &d.path().join("restored"))
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "written through the link"
    );
}
