//! Fault points: where crash tests stop the runner on purpose.
//!
//! Built only with the `fault-injection` feature (the test command enables
//! it; release builds never have it). With it, `CORDON_FAULT=<name>` makes
//! the runner abort at the named point, the way `kill -9` would stop it:
//! no destructor runs, nothing is flushed, no lock is released cleanly. The
//! points sit between the stages of the commit protocol (see
//! [`cordon_record::journal`]), so a test can check what each kill leaves behind.

/// The variable that names the point to stop at.
pub const FAULT_VAR: &str = "CORDON_FAULT";

/// Stops the process here when [`FAULT_VAR`] names `point` (and the
/// feature is built in); otherwise does nothing.
#[inline]
pub fn point(point: &str) {
    #[cfg(feature = "fault-injection")]
    if std::env::var(FAULT_VAR).is_ok_and(|v| v == point) {
        std::process::abort();
    }
    #[cfg(not(feature = "fault-injection"))]
    let _ = point;
}

/// Panics here when [`FAULT_VAR`] names `point`: a runner bug on purpose,
/// to prove that a panicking worker fails its step instead of hanging the
/// pipeline.
#[inline]
pub fn panic_point(point: &str) {
    #[cfg(feature = "fault-injection")]
    if std::env::var(FAULT_VAR).is_ok_and(|v| v == point) {
        panic!("fault point {point}");
    }
    #[cfg(not(feature = "fault-injection"))]
    let _ = point;
}

/// How long [`slow_point`] stalls per unit of work.
pub const SLOW_UNIT: std::time::Duration = std::time::Duration::from_millis(20);

/// Stalls for `units` × [`SLOW_UNIT`] when [`FAULT_VAR`] names `point`: a
/// slow disk on purpose, so a test can make one stage fall behind the
/// others and check what the runner holds meanwhile.
#[inline]
pub fn slow_point(point: &str, units: usize) {
    #[cfg(feature = "fault-injection")]
    if std::env::var(FAULT_VAR).is_ok_and(|v| v == point) {
        std::thread::sleep(SLOW_UNIT * units as u32);
    }
    #[cfg(not(feature = "fault-injection"))]
    let _ = (point, units);
}
