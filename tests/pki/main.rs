//! The `pki_*` integration tests in one binary (one link instead of 3):
//! each former `tests/pki_<name>.rs` is the module `<name>`; run one with
//! `cargo test --test pki <name>::`.

#[path = "../peer_support/mod.rs"]
mod peer_support;
#[path = "../pki_support/mod.rs"]
mod pki_support;

mod peers;
mod supplied;
mod tree;
