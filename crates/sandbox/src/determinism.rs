//! What makes a run reproducible: a fixed wall clock and seeded randomness.
//!
//! A step that reads the time or asks for random bytes would otherwise give
//! different outputs on every run. Unless its manifest opts out, the guest
//! sees a wall clock stopped at one instant and a random stream derived from
//! a seed; both values go into the record, so `cordon verify --reexecute`
//! can give the step exactly the same world again. The one other source of
//! machine-dependent results in wasm is the bits of the NaNs float
//! operations produce, which depend on the CPU architecture: the record
//! names it, and a step with `floats = "canonical"` runs on an engine that
//! canonicalizes them (see `FloatMode`).
//!
//! The monotonic clock stays real: it measures durations (and drives
//! `sleep` and timeouts), and a step whose outputs depend on how long
//! something took is not reproducible whatever the runner does.
//!
//! The seeded stream is sha256 in counter mode: block `i` is
//! `sha256(seed || i as u64 little-endian)`. It is defined here, not by a
//! library, so a record made today replays identically with any future
//! runner version. It is unpredictable to a step that does not know the
//! seed, but the seed is in the record: a step must not use `wasi:random`
//! to make secrets when it runs reproducibly (it should use a secret grant).

use sha2::{Digest as _, Sha256};
use std::convert::Infallible;
use std::time::Duration;

/// The deterministic parts of a run; `None` means the host's real source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Determinism {
    /// The instant the wall clock shows, as time since the Unix epoch.
    pub wall_clock: Option<Duration>,
    /// The seed of every random stream the guest sees.
    pub seed: Option<[u8; 32]>,
}

/// A wall clock that never moves.
pub(crate) struct FixedClock(pub Duration);

impl wasmtime_wasi::HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        self.0
    }
}

/// sha256 in counter mode over a seed (see the module docs).
pub struct SeededRandom {
    seed: [u8; 32],
    /// Domain separation between the streams given to one guest.
    stream: u8,
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl SeededRandom {
    /// The stream number `stream` of `seed`.
    pub fn new(seed: [u8; 32], stream: u8) -> Self {
        SeededRandom {
            seed,
            stream,
            counter: 0,
            block: [0; 32],
            used: 32,
        }
    }

    /// Fills `dst` with the next bytes of the stream.
    pub fn fill(&mut self, dst: &mut [u8]) {
        for b in dst {
            if self.used == self.block.len() {
                let mut h = Sha256::new();
                h.update(self.seed);
                h.update([self.stream]);
                h.update(self.counter.to_le_bytes());
                self.block = h.finalize().into();
                self.counter += 1;
                self.used = 0;
            }
            *b = self.block[self.used];
            self.used += 1;
        }
    }
}

impl rand_core_10::TryRng for SeededRandom {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0; 4];
        self.fill(&mut b);
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0; 8];
        self.fill(&mut b);
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.fill(dst);
        Ok(())
    }
}

/// Applies `d` to a WASI context under construction.
pub(crate) fn apply(d: &Determinism, b: &mut wasmtime_wasi::WasiCtxBuilder) {
    if let Some(t) = d.wall_clock {
        b.wall_clock(FixedClock(t));
    }
    if let Some(seed) = d.seed {
        b.secure_random(SeededRandom::new(seed, 0));
        b.insecure_random(SeededRandom::new(seed, 1));
        let mut s = [0u8; 16];
        SeededRandom::new(seed, 2).fill(&mut s);
        b.insecure_random_seed(u128::from_le_bytes(s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_fixed_by_the_seed_and_documented_construction() {
        let seed = [7u8; 32];
        let mut a = SeededRandom::new(seed, 0);
        let mut out = [0u8; 40];
        a.fill(&mut out[..5]);
        a.fill(&mut out[5..]);
        let mut h = Sha256::new();
        h.update(seed);
        h.update([0u8]);
        h.update(0u64.to_le_bytes());
        let block0: [u8; 32] = h.finalize().into();
        assert_eq!(&out[..32], &block0);
        let mut b = SeededRandom::new(seed, 0);
        let mut again = [0u8; 40];
        b.fill(&mut again);
        assert_eq!(out, again);
        let mut other = [0u8; 40];
        SeededRandom::new(seed, 1).fill(&mut other);
        assert_ne!(out, other);
    }
}
