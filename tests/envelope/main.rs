//! The `envelope_*` integration tests in one binary (one link instead of 4):
//! each former `tests/envelope_<name>.rs` is the module `<name>`; run one with
//! `cargo test --test envelope <name>::`.

mod archive_cloudinit;
mod examples;
mod fixtures;
mod robustness;
