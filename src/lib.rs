//! kubeboot: a first-boot Kubernetes node bootstrapper.
//!
//! It reads the node's role and join material from userdata, writes
//! kubeadm's on-disk layout (PKI, kubeconfigs, static pods, kubelet files),
//! starts the kubelet, finishes the bootstrap, records the outcome and
//! exits. See `docs/architecture.md` for the module map.

#![deny(missing_docs)]

pub mod api;
pub mod cli;
pub mod config;
pub mod envelope;
pub mod error;
pub mod host;
pub mod kubeconfig;
pub mod kubelet;
pub mod logging;
pub mod manifests;
pub mod phases;
pub mod pki;
pub mod platform;
pub mod run;
pub mod secret;
pub mod status;
pub mod userdata;
