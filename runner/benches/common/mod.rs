//! What both benchmarks build the same way.

use cordon_manifest::manifest::Limits;
use cordon_sandbox::{Grants, Preopen};

/// Grants of `argv`, `preopens` and `limits` and nothing else: no
/// environment, secrets, network, output watch or cancellation, the real
/// clock and randomness.
pub fn grants(argv: Vec<String>, preopens: Vec<Preopen>, limits: Limits) -> Grants {
    Grants {
        argv,
        env: Vec::new(),
        preopens,
        secrets: Vec::new(),
        limits,
        outputs: Vec::new(),
        cancel: None,
        determinism: Default::default(),
        network: None,
        secret_hosts: Default::default(),
    }
}
