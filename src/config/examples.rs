//! Built-in example configurations, used by `kubeboot render --example` and
//! by tests. They are ordinary kubeboot NodeConfig YAML run through the same
//! parser as user input.

/// A single control-plane node with stacked etcd.
pub const CONTROL_PLANE: &str = "\
apiVersion: kubeboot.dev/v1alpha1
kind: NodeConfig
role: control-plane
cluster:
  name: example
  kubernetesVersion: v1.33.4
  controlPlaneEndpoint: cp.example.internal:6443
  podSubnet: 10.244.0.0/16
  serviceSubnet: 10.96.0.0/12
  certSANs: [cp.example.internal, 192.0.2.100]
node:
  name: cp-1
  advertiseAddress: 192.0.2.10
";

/// The smallest control-plane config: every default (used by
/// `certs check-expiration` when no config is given).
pub const MINIMAL_CONTROL_PLANE: &str = "apiVersion: kubeboot.dev/v1alpha1\nrole: control-plane\nnode:\n  name: localhost\n  advertiseAddress: 127.0.0.1\n";

/// A worker joining the example cluster.
pub const WORKER: &str = "\
apiVersion: kubeboot.dev/v1alpha1
role: worker
server: cp.example.internal:6443
token: abcdef.0123456789abcdef
caCertHash: sha256:0000000000000000000000000000000000000000000000000000000000000000
";

/// The example named `name` (`control-plane` or `worker`).
pub fn by_name(name: &str) -> Option<&'static str> {
    match name {
        "control-plane" => Some(CONTROL_PLANE),
        "worker" => Some(WORKER),
        _ => None,
    }
}
