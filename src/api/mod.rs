//! A small Kubernetes API client: token discovery for joining nodes, and
//! (next) the API phases of init.

pub mod certs;
pub mod client;
pub mod discovery;
pub mod etcd;
