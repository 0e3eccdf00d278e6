//! kubeboot: a first-boot Kubernetes node bootstrapper.
//!
//! It reads the node's role and join material from userdata, writes
//! kubeadm's on-disk layout (PKI, kubeconfigs, static pods, kubelet files),
//! starts the kubelet, finishes the bootstrap, records the outcome and
//! exits. See `docs/architecture.md` for the module map.

#![deny(missing_docs)]

pub mod config;
pub mod envelope;
pub mod error;
pub mod host;
pub mod kubeconfig;
pub mod pki;
pub mod secret;
pub mod userdata;
