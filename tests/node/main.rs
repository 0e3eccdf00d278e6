//! The `node_*` integration tests in one binary (one link instead of 5):
//! each former `tests/node_<name>.rs` is the module `<name>`; run one with
//! `cargo test --test node <name>::`.

#[path = "../etcd_support/mod.rs"]
mod etcd_support;
#[path = "../node_common/mod.rs"]
mod node_common;

mod etcd;
mod golden;
mod manifests;
mod preflight;
mod units;
