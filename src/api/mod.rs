//! A small Kubernetes API client: token discovery for joining nodes, and
//! the API phases of init (`objects` and `addons` build, `kube` sends).

pub mod addons;
pub mod certs;
pub mod discovery;
pub mod etcd;
pub mod kube;
pub mod objects;
pub mod tokens;
