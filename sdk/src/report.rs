//! Facts a step adds to its execution record.
//!
//! Built for the host rather than wasm32 (to test a step's logic, or to
//! benchmark it against its component), a step has no record: the facts go
//! to the thread's `cordon_sdk::testing` double, where a test can read them.

#[cfg(target_arch = "wasm32")]
use crate::bindings::cordon::step::report as wit;

/// Records a named measurement; a later value for the same name replaces
/// the earlier one.
pub fn metric(name: &str, value: f64) {
    #[cfg(target_arch = "wasm32")]
    wit::metric(name, value);
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::record_metric(name, value);
}

/// Records a key/value annotation; a later value for the same key replaces
/// the earlier one.
pub fn annotate(key: &str, value: &str) {
    #[cfg(target_arch = "wasm32")]
    wit::annotate(key, value);
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::record_annotation(key, value);
}
