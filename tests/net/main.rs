//! The `net_*` integration tests in one binary (one link instead of 4):
//! each former `tests/net_<name>.rs` is the module `<name>`; run one with
//! `cargo test --test net <name>::`.

#[path = "../net_support/mod.rs"]
mod net_support;
#[path = "../peer_support/mod.rs"]
mod peer_support;

mod disk;
mod metadata;
mod platform;
mod url;
