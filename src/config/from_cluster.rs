//! A joining node takes the cluster's settings from its
//! `kube-system/kubeadm-config` ClusterConfiguration, as kubeadm join does
//! (kubernetes/kubernetes `cmd/kubeadm/app/cmd/join.go`,
//! `fetchInitConfigurationFromJoinConfiguration` →
//! `configutil.FetchInitConfigurationFromCluster`,
//! `cmd/kubeadm/app/util/config/cluster.go`; the token may read that one
//! ConfigMap through the `kubeadm:nodes-kubeadm-config` Role that
//! `cmd/kubeadm/app/phases/uploadconfig/uploadconfig.go` grants the
//! bootstrappers group): the Kubernetes version, image repository, DNS
//! domain, subnets and kubeadm feature gates (they decide, e.g., where the
//! CRI socket goes), unless the node's own configuration set them (then a
//! difference is a warning and the node's value stays).

use serde_norway::Value;

use super::model::Settings;
use super::resolve::{SUPPORTED_MINORS, is_dns_subdomain, parse_subnets, parse_version};
use crate::error::Error;

/// What adopting the cluster's configuration did, for the log.
#[derive(Debug, Default)]
pub struct Adopted {
    /// Settings taken from the cluster: `field value`.
    pub taken: Vec<String>,
    /// The node's own values that differ from the cluster's (kept).
    pub contradictions: Vec<String>,
}

const FROM: &str = "kube-system/kubeadm-config";

/// Applies the cluster's ClusterConfiguration (`doc`, YAML as kubeadm
/// uploads it, v1beta3 or v1beta4) to `s`. A value kubeboot cannot use (a
/// version it does not render, a malformed subnet) is an error naming it.
pub fn adopt(s: &mut Settings, doc: &str) -> Result<Adopted, Error> {
    let v: Value = serde_norway::from_str(doc)
        .map_err(|e| Error::Failed(format!("{FROM}: ClusterConfiguration is not YAML: {e}")))?;
    let text = |path: &str| -> Option<String> {
        path.split('.')
            .try_fold(&v, |v, k| v.get(k))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let mut out = Adopted::default();
    let given = s.given.clone();
    let mut take = |field: &str, given: bool, ours: String, theirs: &str| -> bool {
        if ours == theirs {
            return false;
        }
        if given {
            out.contradictions.push(format!(
                "{field}: this node's configuration says {ours}, the cluster's ({FROM}) {theirs}; keeping {ours}"
            ));
            return false;
        }
        out.taken.push(format!("{field} {theirs}"));
        true
    };
    if let Some(theirs) = text("kubernetesVersion") {
        let ours = s.cluster.kubernetes_version.clone();
        if take("kubernetesVersion", given.kubernetes_version, ours, &theirs) {
            s.cluster.kubernetes_version = match parse_version(&theirs) {
                Some((1, minor, patch)) if SUPPORTED_MINORS.contains(&minor) => {
                    format!("v1.{minor}.{patch}")
                }
                _ => {
                    return Err(Error::Invalid(format!(
                        "{FROM}: the cluster runs Kubernetes {theirs:?}; kubeboot renders 1.{}–1.{} (set cluster.kubernetesVersion to join anyway)",
                        SUPPORTED_MINORS.start(),
                        SUPPORTED_MINORS.end()
                    )));
                }
            };
        }
    }
    if let Some(theirs) = text("imageRepository") {
        let ours = s.cluster.image_repository.clone();
        if take("imageRepository", given.image_repository, ours, &theirs) {
            s.cluster.image_repository = theirs;
        }
    }
    if let Some(theirs) = text("networking.dnsDomain") {
        let ours = s.cluster.dns_domain.clone();
        if take("networking.dnsDomain", given.dns_domain, ours, &theirs) {
            if !is_dns_subdomain(&theirs) {
                return Err(Error::Failed(format!(
                    "{FROM}: networking.dnsDomain {theirs:?} is not a DNS domain"
                )));
            }
            s.cluster.dns_domain = theirs;
        }
    }
    let nets = |n: &[ipnet::IpNet]| {
        n.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    for (field, given) in [
        ("networking.serviceSubnet", given.service_subnet),
        ("networking.podSubnet", given.pod_subnet),
    ] {
        let Some(theirs) = text(field) else { continue };
        let parsed =
            parse_subnets(&theirs).map_err(|e| Error::Failed(format!("{FROM}: {field}: {e}")))?;
        let slot = if field == "networking.serviceSubnet" {
            &mut s.cluster.service_subnets
        } else {
            &mut s.cluster.pod_subnets
        };
        if take(field, given, nets(slot), &nets(&parsed)) {
            *slot = parsed;
        }
    }
    if let Some(gates) = v.get("featureGates").and_then(Value::as_mapping) {
        let mut theirs = Vec::new();
        for (k, on) in gates {
            match (k.as_str(), on.as_bool()) {
                (Some(k), Some(on)) => theirs.push((k.to_string(), on)),
                _ => {
                    return Err(Error::Failed(format!(
                        "{FROM}: featureGates: expected name: true|false entries"
                    )));
                }
            }
        }
        let show = |g: &[(String, bool)]| {
            let list: Vec<String> = g.iter().map(|(k, on)| format!("{k}={on}")).collect();
            format!("{{{}}}", list.join(","))
        };
        let ours = show(&s.cluster.feature_gates);
        if take("featureGates", given.feature_gates, ours, &show(&theirs)) {
            s.cluster.feature_gates = theirs;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Given;
    use crate::config::examples::worker;

    const CLUSTER: &str = "apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: v1.32.5
imageRepository: mirror.example.com/k8s
networking: {dnsDomain: corp.local, serviceSubnet: 10.100.0.0/16, podSubnet: 10.32.0.0/12}
featureGates: {NodeLocalCRISocket: true}
";

    #[test]
    fn takes_what_the_node_did_not_set_and_warns_where_it_differs() {
        let mut s = worker();
        s.given = Given::default();
        let a = adopt(&mut s, CLUSTER).unwrap();
        assert_eq!(s.cluster.kubernetes_version, "v1.32.5");
        assert_eq!(s.cluster.image_repository, "mirror.example.com/k8s");
        assert_eq!(s.cluster.dns_domain, "corp.local");
        assert_eq!(s.cluster.service_subnets[0].to_string(), "10.100.0.0/16");
        assert_eq!(s.cluster.pod_subnets[0].to_string(), "10.32.0.0/12");
        assert_eq!(
            s.cluster.feature_gates,
            [("NodeLocalCRISocket".to_string(), true)]
        );
        assert_eq!(a.taken.len(), 6, "{:?}", a.taken);
        assert!(a.contradictions.is_empty());

        let mut s = worker();
        s.given = Given {
            kubernetes_version: true,
            ..Given::default()
        };
        s.cluster.kubernetes_version = "v1.34.1".into();
        let a = adopt(&mut s, CLUSTER).unwrap();
        assert_eq!(s.cluster.kubernetes_version, "v1.34.1");
        assert_eq!(a.contradictions.len(), 1, "{:?}", a.contradictions);
        assert!(a.contradictions[0].contains("v1.32.5"));

        let mut s = worker();
        s.given = Given::default();
        let err = adopt(&mut s, "kubernetesVersion: v1.29.0\n").unwrap_err();
        assert!(err.to_string().contains("v1.29.0"), "{err}");
    }
}
