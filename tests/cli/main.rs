//! The `cli_*` integration tests in one binary (one link instead of 4):
//! each former `tests/cli_<name>.rs` is the module `<name>`; run one with
//! `cargo test --test cli <name>::`.

#[path = "../api_support/mod.rs"]
mod api_support;
#[path = "../cli_support/mod.rs"]
mod cli_support;
#[path = "../net_support/mod.rs"]
mod net_support;

mod commands;
mod firstboot;
mod runner;
mod sources;
