//! Integrity of the compiled-component cache.
//!
//! A compiled component (`.cwasm`) is native code: wasmtime maps it and
//! jumps into it, checking only a header. Whoever can change such a file
//! runs code inside the runner, and a single flipped byte can crash it. The
//! cache directory (`<state>/compiled/` or `$CORDON_COMPILE_CACHE`) may be
//! shared or copied between machines, so it is not trusted: every artifact
//! is sealed with a keyed BLAKE3 hash (a MAC) under a key that lives
//! elsewhere, and is deserialized only when the seal holds.
//!
//! ```text
//! <artifact> = "cordon-cwasm-blake3/v2\n" || tag (32 bytes) || serialized component
//! tag        = BLAKE3-keyed(key, file name || 0x00 || serialized component)
//! ```
//!
//! Every load checks the whole artifact, so the MAC's speed is part of
//! every run: keyed BLAKE3 checks a compiled component about four times as
//! fast as HMAC-SHA256 did (format `v1`, which is now refused as another
//! format, so such an artifact is compiled again). A file name never holds
//! a NUL byte, so name and payload cannot be shifted into each other.
//!
//! The file name (component digest and engine compatibility hash) is under
//! the tag, so a valid artifact copied to another component's name does
//! not verify either. The key is 32 random bytes, hex, in a file created
//! with mode 0600 in the user's secrets home
//! (`<secrets home>/compile-cache.key`, or the file `$CORDON_COMPILE_CACHE_KEY`
//! names): planning refuses any mount that reaches it, so no step can read
//! it, and a writer of the cache directory alone cannot forge a tag.
//!
//! This module owns the key and the artifact format. It never deserializes
//! anything itself and never accepts an artifact whose tag it did not check
//! in constant time.

use std::io;
use std::path::Path;
use zeroize::Zeroizing;

/// The environment variable that names the key file, for a cache shared
/// by several secrets homes (a CI machine's runners, a test suite).
pub const KEY_VAR: &str = cordon_core::locations::COMPILE_CACHE_KEY_VAR;

/// The key's file name in the secrets home.
pub const KEY_FILE: &str = cordon_core::locations::COMPILE_CACHE_KEY_FILE;

/// The first bytes of a sealed artifact: the format and its version.
pub const MAGIC: &[u8] = b"cordon-cwasm-blake3/v2\n";

const TAG_BYTES: usize = 32;

/// Largest key file read: 64 hex characters and a newline fit many times
/// over; the cap keeps a planted device or huge file from being read.
const MAX_KEY_FILE_BYTES: u64 = 1024;

/// Largest compiled artifact read back, 4 GiB. Compiled code is a few
/// times the size of the component (at most
/// [`MAX_COMPONENT_BYTES`](cordon_manifest::plan::MAX_COMPONENT_BYTES)); the cap keeps
/// a planted file from being read into memory without end.
pub const MAX_ARTIFACT_BYTES: u64 = 4 << 30;

/// Why an artifact was not accepted; the caller recompiles.
#[derive(Debug, thiserror::Error)]
pub enum Unsealed {
    /// It does not start with [`MAGIC`] (another format, or damaged).
    #[error("it is not a sealed artifact (an older format, or damaged)")]
    Format,
    /// The tag does not match: the bytes or the name were changed.
    #[error("its integrity check failed (the file was changed)")]
    Tag,
}

/// The key that seals the artifacts of one user's compile cache.
pub struct CacheKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheKey(..)")
    }
}

pub use cordon_core::locations::compile_cache_key_path as key_path;

impl CacheKey {
    /// The key at `path`, created (32 random bytes, mode 0600, its
    /// directory 0700) when missing. Two runners creating it at once agree
    /// on one: the file is linked into place only if absent. A key file
    /// that others may read or write is refused.
    pub fn load_or_create(path: &Path) -> io::Result<CacheKey> {
        match Self::load(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    cordon_core::fsutil::create_private_dir(dir)?;
                }
                let key = Zeroizing::new(rand::random::<[u8; 32]>());
                let text = Zeroizing::new(format!("{}\n", hex::encode(*key)));
                match cordon_core::fsutil::write_new(path, text.as_bytes()) {
                    Ok(()) => Ok(CacheKey(key)),
                    // Another runner made it first: use theirs.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Self::load(path),
                    Err(e) => Err(e),
                }
            }
            other => other,
        }
    }

    fn load(path: &Path) -> io::Result<CacheKey> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} may be read or written by others (fix: chmod 600 it)",
                    path.display()
                ),
            ));
        }
        let text = Zeroizing::new(cordon_core::fsutil::read_regular_to_string(
            path,
            MAX_KEY_FILE_BYTES,
        )?);
        let mut key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), &mut *key).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} does not hold a 32-byte hex key", path.display()),
            )
        })?;
        Ok(CacheKey(key))
    }

    fn mac(&self, name: &str, payload: &[u8]) -> blake3::Hash {
        let mut mac = blake3::Hasher::new_keyed(&self.0);
        mac.update(name.as_bytes());
        mac.update(&[0]);
        mac.update(payload);
        mac.finalize()
    }

    /// The artifact to store under file name `name` for `serialized`.
    pub fn seal(&self, name: &str, serialized: &[u8]) -> Vec<u8> {
        let tag = self.mac(name, serialized);
        let mut out = Vec::with_capacity(MAGIC.len() + TAG_BYTES + serialized.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(tag.as_bytes());
        out.extend_from_slice(serialized);
        out
    }

    /// The serialized component inside `artifact`, read from file name
    /// `name`, when its tag holds.
    pub fn open<'a>(&self, name: &str, artifact: &'a [u8]) -> Result<&'a [u8], Unsealed> {
        let rest = artifact.strip_prefix(MAGIC).ok_or(Unsealed::Format)?;
        if rest.len() < TAG_BYTES {
            return Err(Unsealed::Format);
        }
        let (tag, payload) = rest.split_at(TAG_BYTES);
        let tag: [u8; TAG_BYTES] = tag.try_into().map_err(|_| Unsealed::Format)?;
        // `blake3::Hash` compares in constant time.
        if self.mac(name, payload) != blake3::Hash::from_bytes(tag) {
            return Err(Unsealed::Tag);
        }
        Ok(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_artifact_opens_only_unchanged_and_under_its_own_name() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("keys/compile-cache.key");
        let key = CacheKey::load_or_create(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let again = CacheKey::load_or_create(&path).unwrap();
        let sealed = key.seal("a.cwasm", b"native code");
        assert_eq!(again.open("a.cwasm", &sealed).unwrap(), b"native code");
        assert!(matches!(key.open("b.cwasm", &sealed), Err(Unsealed::Tag)));
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(key.open("a.cwasm", &bad).is_err(), "flip at {i}");
        }
        assert!(matches!(
            key.open("a.cwasm", b"\0asm"),
            Err(Unsealed::Format)
        ));
        let other = CacheKey::load_or_create(&d.path().join("other.key")).unwrap();
        assert!(other.open("a.cwasm", &sealed).is_err(), "another key");
        // An artifact of the HMAC-SHA256 format is another format: it is
        // compiled again, never opened.
        let mut v1 = b"cordon-cwasm-hmac-sha256/v1\n".to_vec();
        v1.extend_from_slice(&sealed[MAGIC.len()..]);
        assert!(matches!(key.open("a.cwasm", &v1), Err(Unsealed::Format)));
    }

    #[test]
    fn a_key_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("k");
        CacheKey::load_or_create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = CacheKey::load_or_create(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
    }
}
