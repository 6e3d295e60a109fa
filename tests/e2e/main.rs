//! End-to-end tests: real step components (built by `cordon-test-artifacts`)
//! run by the real `cordon` binary. One test binary, one module per area.
//! Test names read like the threat model: one attempted escape each.

mod harness;

mod architecture;
mod cli;
mod concurrency;
mod crash;
mod damaged_state;
mod escapes;
mod export;
mod file_names;
mod first_hour;
mod full_disk;
mod hostile_channels;
mod hostile_limits;
mod hostile_outputs;
mod intoto;
mod limits;
mod manifest_errors;
mod network;
mod nothing_lost;
mod pipelines;
mod policy;
mod promotion;
mod records;
mod rendering;
mod review;
mod runs;
mod secrets;
mod state_dir;
mod step_authors;
mod store;
mod trust;
mod vault;
