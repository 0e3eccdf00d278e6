//! The `etcd_*` integration tests in one binary (one link instead of 2):
//! each former `tests/etcd_<name>.rs` is the module `<name>`; run one with
//! `cargo test --test etcd <name>::`.

#[path = "../etcd_support/mod.rs"]
mod etcd_support;
#[path = "../net_support/mod.rs"]
mod net_support;
#[path = "../node_common/mod.rs"]
mod node_common;
#[path = "../pod_support/mod.rs"]
mod pod_support;

mod join;
mod manifest;
