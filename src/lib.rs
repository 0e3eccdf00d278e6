//! kubeboot: a first-boot Kubernetes node bootstrapper.
//!
//! It reads the node's role and join material from userdata, writes
//! kubeadm's on-disk layout (PKI, kubeconfigs, static pods, kubelet files),
//! starts the kubelet, finishes the bootstrap, records the outcome and
//! exits. See `docs/architecture.md` for the module map.

#![deny(missing_docs)]

/// `print!` that never panics: a reader that went away (`kubeboot render |
/// head`, a journal that restarted) must not turn a run into a panic. A
/// closed pipe is ignored; any other write error is logged.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::logging::write_stdout(format_args!($($arg)*))
    };
}

/// `println!` that never panics (see [`out!`]).
#[macro_export]
macro_rules! outln {
    () => { $crate::out!("\n") };
    ($($arg:tt)*) => {
        $crate::out!("{}\n", format_args!($($arg)*))
    };
}

pub mod api;
pub mod cli;
pub mod commands;
pub mod config;
pub mod envelope;
pub mod error;
pub mod host;
pub mod kubeadm_cmds;
pub mod kubelet;
#[cfg(test)]
mod layers;
pub mod lifecycle;
pub mod logging;
pub mod manifests;
pub mod net;
pub mod phases;
pub mod pki;
pub mod platform;
pub mod progress;
pub mod reset;
pub mod run;
pub mod secret;
pub mod status;
pub mod status_view;
#[cfg(test)]
mod test_util;
pub mod userdata;
pub mod yaml;
