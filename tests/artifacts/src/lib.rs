//! Paths of the step components built by this crate's build script.

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
