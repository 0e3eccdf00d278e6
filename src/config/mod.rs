//! The node configuration: kubeboot's own NodeConfig format and kubeadm's
//! v1beta3/v1beta4 documents, merged, defaulted and validated into one
//! [`Settings`] value.

pub mod model;

pub use model::*;
