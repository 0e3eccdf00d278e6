//! The `addon` phase's objects: CoreDNS and kube-proxy as kubeadm installs
//! them on `init` (`phases/addons/dns`, `phases/addons/proxy`), built as
//! k8s-openapi values with no I/O.
//!
//! Order and update rules follow kubeadm: CoreDNS's ConfigMap is created or
//! kept as it is (users edit the Corefile), its Deployment keeps an existing
//! replica count, everything else is created or replaced.
//!
//! Checked against kubeadm's source (kubernetes/kubernetes, see
//! `docs/operations.md` for the list): `phases/addons/dns/manifests.go` at
//! commit 008b3652959ca58af8be3fb5b6ecfe9ae7638282 (Deployment, Service,
//! Corefile, ClusterRole, ClusterRoleBinding, ServiceAccount field by field),
//! `dns.go` of the `printManifest` era (creation order ConfigMap,
//! ClusterRole, ClusterRoleBinding, ServiceAccount, Deployment, Service;
//! replicas kept), `phases/addons/proxy/manifests.go` at commit
//! abd60651f20b906e54ce2c89ad6d2b7790dba8a1 (DaemonSet: `privileged: true`,
//! the one toleration `operator: Exists` since PR #101966 dropped
//! `CriticalAddonsOnly` in 1.22) and `proxy.go` of the same era (creation
//! order ConfigMap, DaemonSet, then ServiceAccount, ClusterRoleBinding, Role,
//! RoleBinding).
//!
//! Known differences: kubeadm replaces a CoreDNS ConfigMap whose Corefile is
//! still a default one and migrates an outdated custom one (CoreDNS
//! `migration` library); kubeboot keeps any existing one. kubeadm appends
//! its own `HTTP_PROXY`/`HTTPS_PROXY`/`NO_PROXY` environment to the
//! kube-proxy container; kubeboot adds none. kube-proxy's `config.conf` is
//! the few fields kubeadm sets, not kubeadm's fully defaulted document.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, Deployment, DeploymentSpec,
    DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar,
    EnvVarSource, HTTPGetAction, HostPathVolumeSource, KeyToPath, ObjectFieldSelector,
    PodAffinityTerm, PodAntiAffinity, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec, Toleration, Volume,
    VolumeMount, WeightedPodAffinityTerm,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};

use super::objects::{
    ApiObject, KUBE_SYSTEM, LABEL_CONTROL_PLANE, NODE_BOOTSTRAP_GROUP, Update, crb, group, meta,
    object, read_configmap, sign_config_map,
};
use crate::config::Settings;
use crate::error::Error;
use crate::manifests::versions;

/// kubeadm's default image repository (CoreDNS lives one level deeper there).
const DEFAULT_REPOSITORY: &str = "registry.k8s.io";
/// Where the kube-proxy ConfigMap is mounted in its pods.
const PROXY_DIR: &str = "/var/lib/kube-proxy";

fn labels(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn named_meta(name: &str, pairs: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        labels: labels(pairs),
        ..meta(name, Some(KUBE_SYSTEM))
    }
}

fn service_account(name: &str) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(name, Some(KUBE_SYSTEM)),
        ..Default::default()
    }
}

fn sa_subject(name: &str) -> Subject {
    Subject {
        kind: "ServiceAccount".into(),
        api_group: None,
        name: name.into(),
        namespace: Some(KUBE_SYSTEM.into()),
    }
}

fn port(name: &str, number: i32, protocol: &str) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: number,
        protocol: Some(protocol.into()),
        ..Default::default()
    }
}

fn http_probe(path: &str, port: &str) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(port.into()),
            scheme: Some("HTTP".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn toleration(key: Option<&str>, effect: Option<&str>) -> Toleration {
    Toleration {
        key: key.map(str::to_string),
        effect: effect.map(str::to_string),
        // kubeadm's control-plane toleration names no operator (Equal, empty value)
        operator: (effect.is_none()).then(|| "Exists".to_string()),
        ..Default::default()
    }
}

fn linux() -> Option<BTreeMap<String, String>> {
    labels(&[("kubernetes.io/os", "linux")])
}

/// The CoreDNS image as kubeadm's `GetDNSImage` names it: the repository
/// is `dns.imageRepository`, else the cluster's; the default repository
/// gets kubeadm's extra `/coredns` level
/// (`registry.k8s.io/coredns/coredns:<tag>`), any other is used as given
/// (`<repo>/coredns:<tag>`); the tag is `dns.imageTag`, else the version
/// table's.
pub fn coredns_image(s: &Settings) -> String {
    let (facts, _) = versions::for_version(&s.cluster.kubernetes_version);
    let dns = &s.cluster.dns;
    let repo = dns
        .image_repository
        .as_deref()
        .unwrap_or(&s.cluster.image_repository)
        .trim_end_matches('/');
    let tag = dns.image_tag.as_deref().unwrap_or(facts.coredns_tag);
    if repo == DEFAULT_REPOSITORY {
        format!("{repo}/coredns/coredns:{tag}")
    } else {
        format!("{repo}/coredns:{tag}")
    }
}

/// `<repo>/kube-proxy:<kubernetesVersion>` (`+` becomes `_`, as in kubeadm's
/// `KubernetesVersionToImageTag`).
pub fn kube_proxy_image(s: &Settings) -> String {
    format!(
        "{}/kube-proxy:{}",
        s.cluster.image_repository.trim_end_matches('/'),
        s.cluster.kubernetes_version.replace('+', "_")
    )
}

/// kubeadm's Corefile for `domain`.
pub fn corefile(domain: &str) -> String {
    let cache = if domain.is_empty() {
        "cache 30".to_string()
    } else {
        format!(
            "cache 30 {{\n       disable success {domain}\n       disable denial {domain}\n    }}"
        )
    };
    format!(
        ".:53 {{
    errors
    health {{
       lameduck 5s
    }}
    ready
    kubernetes {domain} in-addr.arpa ip6.arpa {{
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }}
    prometheus :9153
    forward . /etc/resolv.conf {{
       max_concurrent 1000
    }}
    {cache}
    loop
    reload
    loadbalance
}}
"
    )
}

const DNS_LABEL: (&str, &str) = ("k8s-app", "kube-dns");

/// The CoreDNS Deployment with kubeadm's `corednsdeployment` patches
/// applied to its body (`cmd/kubeadm/app/phases/addons/dns/dns.go`); the
/// API server validates the result.
fn patched_deployment(s: &Settings) -> Result<ApiObject, Error> {
    const TARGET: &str = "corednsdeployment";
    let mut obj = object(&coredns_deployment(s), Update::KeepReplicas);
    if s.patches.has(TARGET) {
        s.patches.apply(TARGET, &mut obj.body)?;
        if obj.body.get("kind").and_then(Value::as_str) != Some("Deployment")
            || obj.body.pointer("/metadata/name").and_then(Value::as_str) != Some("coredns")
        {
            return Err(Error::Invalid(format!(
                "patches for {TARGET} ({}): the patched object is no longer the Deployment coredns",
                s.patches.directory.as_deref().unwrap_or("")
            )));
        }
    }
    Ok(obj)
}

fn coredns_deployment(s: &Settings) -> Deployment {
    let selector = LabelSelector {
        match_labels: labels(&[DNS_LABEL]),
        ..Default::default()
    };
    let anti_affinity = WeightedPodAffinityTerm {
        weight: 100,
        pod_affinity_term: PodAffinityTerm {
            label_selector: Some(LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: DNS_LABEL.0.into(),
                    operator: "In".into(),
                    values: Some(vec![DNS_LABEL.1.into()]),
                }]),
                ..Default::default()
            }),
            topology_key: "kubernetes.io/hostname".into(),
            ..Default::default()
        },
    };
    let container = Container {
        name: "coredns".into(),
        image: Some(coredns_image(s)),
        image_pull_policy: Some("IfNotPresent".into()),
        resources: Some(ResourceRequirements {
            limits: Some(BTreeMap::from([(
                "memory".to_string(),
                Quantity("170Mi".into()),
            )])),
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity("100m".into())),
                ("memory".to_string(), Quantity("70Mi".into())),
            ])),
            ..Default::default()
        }),
        args: Some(vec!["-conf".into(), "/etc/coredns/Corefile".into()]),
        volume_mounts: Some(vec![VolumeMount {
            name: "config-volume".into(),
            mount_path: "/etc/coredns".into(),
            read_only: Some(true),
            ..Default::default()
        }]),
        ports: Some(vec![
            port("dns", 53, "UDP"),
            port("dns-tcp", 53, "TCP"),
            port("metrics", 9153, "TCP"),
            port("liveness-probe", 8080, "TCP"),
            port("readiness-probe", 8181, "TCP"),
        ]),
        liveness_probe: Some(Probe {
            initial_delay_seconds: Some(60),
            timeout_seconds: Some(5),
            success_threshold: Some(1),
            failure_threshold: Some(5),
            ..http_probe("/health", "liveness-probe")
        }),
        readiness_probe: Some(http_probe("/ready", "readiness-probe")),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                add: Some(vec!["NET_BIND_SERVICE".into()]),
                drop: Some(vec!["ALL".into()]),
            }),
            read_only_root_filesystem: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    Deployment {
        metadata: named_meta("coredns", &[DNS_LABEL]),
        spec: DeploymentSpec {
            replicas: Some(2),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(1)),
                    ..Default::default()
                }),
            }),
            selector,
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: labels(&[DNS_LABEL]),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    priority_class_name: Some("system-cluster-critical".into()),
                    service_account_name: Some("coredns".into()),
                    affinity: Some(Affinity {
                        pod_anti_affinity: Some(PodAntiAffinity {
                            preferred_during_scheduling_ignored_during_execution: Some(vec![
                                anti_affinity,
                            ]),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    tolerations: Some(vec![
                        toleration(Some("CriticalAddonsOnly"), None),
                        toleration(Some(LABEL_CONTROL_PLANE), Some("NoSchedule")),
                    ]),
                    node_selector: linux(),
                    containers: vec![container],
                    dns_policy: Some("Default".into()),
                    volumes: Some(vec![Volume {
                        name: "config-volume".into(),
                        config_map: Some(ConfigMapVolumeSource {
                            name: "coredns".into(),
                            items: Some(vec![KeyToPath {
                                key: "Corefile".into(),
                                path: "Corefile".into(),
                                ..Default::default()
                            }]),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

fn dns_service(ip: String) -> Service {
    let sport = |name: &str, number: i32, protocol: &str| ServicePort {
        name: Some(name.into()),
        port: number,
        protocol: Some(protocol.into()),
        target_port: Some(IntOrString::Int(number)),
        ..Default::default()
    };
    Service {
        metadata: ObjectMeta {
            annotations: labels(&[
                ("prometheus.io/port", "9153"),
                ("prometheus.io/scrape", "true"),
            ]),
            ..named_meta(
                "kube-dns",
                &[
                    DNS_LABEL,
                    ("kubernetes.io/cluster-service", "true"),
                    ("kubernetes.io/name", "CoreDNS"),
                ],
            )
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(ip),
            ports: Some(vec![
                sport("dns", 53, "UDP"),
                sport("dns-tcp", 53, "TCP"),
                sport("metrics", 9153, "TCP"),
            ]),
            selector: labels(&[DNS_LABEL]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// CoreDNS in kubeadm's order: ConfigMap `coredns` (kept if present),
/// ClusterRole and ClusterRoleBinding `system:coredns`, ServiceAccount
/// `coredns`, Deployment `coredns` (keeps an existing replica count) and
/// Service `kube-dns` at the tenth address of the first service subnet.
pub fn coredns(s: &Settings) -> Result<Vec<ApiObject>, Error> {
    let ip = s.cluster_dns_ip().ok_or_else(|| {
        Error::Failed(
            "networking.serviceSubnet: too small for the cluster DNS address (10th IP)".into(),
        )
    })?;
    let cm = ConfigMap {
        metadata: meta("coredns", Some(KUBE_SYSTEM)),
        data: Some(BTreeMap::from([(
            "Corefile".to_string(),
            corefile(&s.cluster.dns_domain),
        )])),
        ..Default::default()
    };
    let list_watch = |group: &str, resources: &[&str]| PolicyRule {
        api_groups: Some(vec![group.into()]),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        verbs: vec!["list".into(), "watch".into()],
        ..Default::default()
    };
    let role = ClusterRole {
        metadata: meta("system:coredns", None),
        rules: Some(vec![
            list_watch("", &["endpoints", "services", "pods", "namespaces"]),
            list_watch("discovery.k8s.io", &["endpointslices"]),
        ]),
        ..Default::default()
    };
    Ok(vec![
        object(&cm, Update::Retain),
        object(&role, Update::Replace),
        crb(
            "system:coredns",
            "system:coredns",
            vec![sa_subject("coredns")],
        ),
        object(&service_account("coredns"), Update::Replace),
        patched_deployment(s)?,
        object(&dns_service(ip.to_string()), Update::Replace),
    ])
}

/// kube-proxy's `config.conf`: the settings kubeadm gives it (bind address
/// by the advertise address's family, the pod subnets, the in-pod
/// kubeconfig); kube-proxy defaults the rest.
pub fn kube_proxy_config(s: &Settings) -> Value {
    let bind = if s.node.advertise_address.is_ipv6() {
        "::"
    } else {
        "0.0.0.0"
    };
    let mut c = json!({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "bindAddress": bind,
        "clientConnection": {"kubeconfig": format!("{PROXY_DIR}/kubeconfig.conf")},
    });
    if !s.cluster.pod_subnets.is_empty()
        && let Value::Object(m) = &mut c
    {
        let cidrs: Vec<String> = s
            .cluster
            .pod_subnets
            .iter()
            .map(|n| n.to_string())
            .collect();
        m.insert("clusterCIDR".into(), json!(cidrs.join(",")));
    }
    // The user's KubeProxyConfiguration over these, as kubeadm's
    // `componentconfigs/kubeproxy.go` `Default()` fills only what is unset.
    if let Some(user) = &s.components.kube_proxy {
        crate::config::component::merge_over(&mut c, user);
    }
    c
}

/// kube-proxy's `kubeconfig.conf`: the control-plane endpoint, trusted and
/// authenticated through the pod's service account.
pub fn kube_proxy_kubeconfig(server: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt
    server: {server}
  name: default
contexts:
- context:
    cluster: default
    namespace: default
    user: default
  name: default
current-context: default
users:
- name: default
  user:
    tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token"
    )
}

const PROXY_LABEL: (&str, &str) = ("k8s-app", "kube-proxy");

fn kube_proxy_daemonset(s: &Settings) -> DaemonSet {
    let mount = |name: &str, path: &str, read_only: Option<bool>| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only,
        ..Default::default()
    };
    let host_path = |name: &str, path: &str, type_: Option<&str>| Volume {
        name: name.into(),
        host_path: Some(HostPathVolumeSource {
            path: path.into(),
            type_: type_.map(str::to_string),
        }),
        ..Default::default()
    };
    let container = Container {
        name: "kube-proxy".into(),
        image: Some(kube_proxy_image(s)),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(vec![
            "/usr/local/bin/kube-proxy".into(),
            format!("--config={PROXY_DIR}/config.conf"),
            "--hostname-override=$(NODE_NAME)".into(),
        ]),
        security_context: Some(SecurityContext {
            privileged: Some(true),
            ..Default::default()
        }),
        volume_mounts: Some(vec![
            // kubeadm's template names no readOnly for this one
            mount("kube-proxy", PROXY_DIR, None),
            mount("xtables-lock", "/run/xtables.lock", Some(false)),
            mount("lib-modules", "/lib/modules", Some(true)),
        ]),
        env: Some(vec![EnvVar {
            name: "NODE_NAME".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "spec.nodeName".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ..Default::default()
    };
    DaemonSet {
        metadata: named_meta("kube-proxy", &[PROXY_LABEL]),
        spec: DaemonSetSpec {
            selector: LabelSelector {
                match_labels: labels(&[PROXY_LABEL]),
                ..Default::default()
            },
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                ..Default::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: labels(&[PROXY_LABEL]),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    priority_class_name: Some("system-node-critical".into()),
                    containers: vec![container],
                    host_network: Some(true),
                    service_account_name: Some("kube-proxy".into()),
                    volumes: Some(vec![
                        Volume {
                            name: "kube-proxy".into(),
                            config_map: Some(ConfigMapVolumeSource {
                                name: "kube-proxy".into(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                        host_path("xtables-lock", "/run/xtables.lock", Some("FileOrCreate")),
                        host_path("lib-modules", "/lib/modules", None),
                    ]),
                    // every taint; kubeadm dropped the redundant
                    // CriticalAddonsOnly entry in 1.22 (PR #101966)
                    tolerations: Some(vec![toleration(None, None)]),
                    node_selector: linux(),
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

/// kube-proxy in the order kubeadm's `EnsureProxyAddon` creates it:
/// ConfigMap `kube-proxy`, DaemonSet `kube-proxy`, then ServiceAccount
/// `kube-proxy`, ClusterRoleBinding `kubeadm:node-proxier`, Role and
/// RoleBinding `kube-proxy` (bootstrap tokens may read its ConfigMap).
/// (`--print-manifest` prints them the other way round; the DaemonSet's
/// pods wait for the ServiceAccount, which follows within the same run.)
pub fn kube_proxy(s: &Settings) -> Result<Vec<ApiObject>, Error> {
    let config = crate::yaml::to_string(&kube_proxy_config(s))
        .map_err(|e| Error::Failed(format!("KubeProxyConfiguration does not serialize: {e}")))?;
    // kubeadm's template embeds it as a `|-` block: no final newline
    let config = config.trim_end_matches('\n').to_string();
    // signed like kubeadm's generated kube-proxy ConfigMap
    let cm = sign_config_map(ConfigMap {
        metadata: named_meta("kube-proxy", &[("app", "kube-proxy")]),
        data: Some(BTreeMap::from([
            ("config.conf".to_string(), config),
            (
                "kubeconfig.conf".to_string(),
                kube_proxy_kubeconfig(&s.control_plane_endpoint().url()),
            ),
        ])),
        ..Default::default()
    });
    let mut out = vec![
        object(&cm, Update::Replace),
        object(&kube_proxy_daemonset(s), Update::Replace),
        object(&service_account("kube-proxy"), Update::Replace),
        crb(
            "kubeadm:node-proxier",
            "system:node-proxier",
            vec![sa_subject("kube-proxy")],
        ),
    ];
    out.extend(read_configmap(
        "kube-proxy",
        KUBE_SYSTEM,
        "kube-proxy",
        vec![group(NODE_BOOTSTRAP_GROUP)],
    ));
    Ok(out)
}

/// Everything the `addon` phase applies: CoreDNS unless `dns.disabled`,
/// then kube-proxy unless `proxy.disabled` (kubeadm skips a disabled addon
/// and leaves whatever is in the cluster alone).
pub fn all(s: &Settings) -> Result<Vec<ApiObject>, Error> {
    let mut out = Vec::new();
    if !s.cluster.dns.disabled {
        out.extend(coredns(s)?);
    }
    if !s.cluster.proxy.disabled {
        out.extend(kube_proxy(s)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::examples::pki_control_plane as control_plane_settings;

    fn by_what<'a>(objs: &'a [ApiObject], what: &str) -> &'a ApiObject {
        objs.iter()
            .find(|o| o.what == what)
            .unwrap_or_else(|| panic!("no {what}"))
    }

    fn typed<T: serde::de::DeserializeOwned>(o: &ApiObject) -> T {
        serde_json::from_value(o.body.clone()).unwrap()
    }

    /// Tolerations as (key, operator, effect).
    fn key_operator_effect(
        t: Vec<Toleration>,
    ) -> Vec<(Option<String>, Option<String>, Option<String>)> {
        t.into_iter()
            .map(|t| (t.key, t.operator, t.effect))
            .collect()
    }

    /// A ClusterRoleBinding of `role` to the kube-system ServiceAccount `sa`.
    fn assert_binds_service_account(o: &ApiObject, role: &str, sa: &str) {
        let crb: k8s_openapi::api::rbac::v1::ClusterRoleBinding = typed(o);
        assert_eq!(crb.role_ref.name, role);
        let sub = &crb.subjects.unwrap()[0];
        assert_eq!(
            (
                sub.kind.as_str(),
                sub.name.as_str(),
                sub.namespace.as_deref()
            ),
            ("ServiceAccount", sa, Some(KUBE_SYSTEM))
        );
    }

    #[test]
    fn objects_come_in_kubeadms_order_with_its_update_rules() {
        let objs = all(&control_plane_settings()).unwrap();
        let seen: Vec<(&str, Update)> = objs.iter().map(|o| (o.what.as_str(), o.update)).collect();
        assert_eq!(
            seen,
            [
                ("ConfigMap kube-system/coredns", Update::Retain),
                ("ClusterRole system:coredns", Update::Replace),
                ("ClusterRoleBinding system:coredns", Update::Replace),
                ("ServiceAccount kube-system/coredns", Update::Replace),
                ("Deployment kube-system/coredns", Update::KeepReplicas),
                ("Service kube-system/kube-dns", Update::Replace),
                // kubeadm's EnsureProxyAddon: ConfigMap and DaemonSet first,
                // then printOrCreateKubeProxyObjects' SA, CRB, Role, RB
                ("ConfigMap kube-system/kube-proxy", Update::Replace),
                ("DaemonSet kube-system/kube-proxy", Update::Replace),
                ("ServiceAccount kube-system/kube-proxy", Update::Replace),
                ("ClusterRoleBinding kubeadm:node-proxier", Update::Replace),
                ("Role kube-system/kube-proxy", Update::Replace),
                ("RoleBinding kube-system/kube-proxy", Update::Replace),
            ]
        );
        let dep = by_what(&objs, "Deployment kube-system/coredns");
        assert_eq!(
            dep.item,
            "/apis/apps/v1/namespaces/kube-system/deployments/coredns"
        );
        assert!(objs.iter().all(|o| !o.sensitive));
    }

    #[test]
    fn corefile_uses_the_dns_domain() {
        let mut s = control_plane_settings();
        s.cluster.dns_domain = "example.internal".into();
        let objs = coredns(&s).unwrap();
        let cm: ConfigMap = typed(&objs[0]);
        let cf = &cm.data.unwrap()["Corefile"];
        assert_eq!(cf, &corefile("example.internal"));
        assert!(cf.starts_with(".:53 {\n    errors\n"), "{cf}");
        assert!(
            cf.contains(
                "    kubernetes example.internal in-addr.arpa ip6.arpa {\n       pods insecure\n"
            ),
            "{cf}"
        );
        assert!(
            cf.contains("    cache 30 {\n       disable success example.internal\n       disable denial example.internal\n    }\n    loop\n"),
            "{cf}"
        );
        assert!(cf.ends_with("    loadbalance\n}\n"), "{cf}");
        assert!(corefile("").contains("    cache 30\n    loop\n"));
    }

    /// Field by field against kubeadm's `dns/manifests.go` (commit
    /// 008b3652959ca58af8be3fb5b6ecfe9ae7638282): the Corefile as its
    /// template renders for `cluster.local`, the pod's ports, probes,
    /// resources, security context and affinity, the ClusterRole and the
    /// Service's annotations and target ports.
    #[test]
    fn coredns_matches_kubeadms_templates() {
        let objs = coredns(&control_plane_settings()).unwrap();
        let cm: ConfigMap = typed(&objs[0]);
        assert_eq!(
            cm.data.unwrap()["Corefile"],
            ".:53 {\n    errors\n    health {\n       lameduck 5s\n    }\n    ready\n    \
             kubernetes cluster.local in-addr.arpa ip6.arpa {\n       pods insecure\n       \
             fallthrough in-addr.arpa ip6.arpa\n       ttl 30\n    }\n    prometheus :9153\n    \
             forward . /etc/resolv.conf {\n       max_concurrent 1000\n    }\n    cache 30 {\n       \
             disable success cluster.local\n       disable denial cluster.local\n    }\n    loop\n    \
             reload\n    loadbalance\n}\n"
        );

        let role: ClusterRole = typed(&objs[1]);
        let rules: Vec<(Vec<String>, Vec<String>, Vec<String>)> = role
            .rules
            .unwrap()
            .into_iter()
            .map(|r| (r.api_groups.unwrap(), r.resources.unwrap(), r.verbs))
            .collect();
        let v = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            rules,
            [
                (
                    v(&[""]),
                    v(&["endpoints", "services", "pods", "namespaces"]),
                    v(&["list", "watch"])
                ),
                (
                    v(&["discovery.k8s.io"]),
                    v(&["endpointslices"]),
                    v(&["list", "watch"])
                ),
            ]
        );
        assert_binds_service_account(&objs[2], "system:coredns", "coredns");

        let d: Deployment = typed(&objs[4]);
        let strategy = d.spec.strategy.unwrap();
        assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
        let pod = d.spec.template.spec.unwrap();
        let term = &pod
            .affinity
            .unwrap()
            .pod_anti_affinity
            .unwrap()
            .preferred_during_scheduling_ignored_during_execution
            .unwrap()[0];
        assert_eq!(term.weight, 100);
        assert_eq!(
            term.pod_affinity_term.topology_key,
            "kubernetes.io/hostname"
        );
        let expr = &term
            .pod_affinity_term
            .label_selector
            .as_ref()
            .unwrap()
            .match_expressions
            .as_ref()
            .unwrap()[0];
        assert_eq!(
            (
                expr.key.as_str(),
                expr.operator.as_str(),
                expr.values.as_deref()
            ),
            ("k8s-app", "In", Some(&["kube-dns".to_string()][..]))
        );
        let c = &pod.containers[0];
        assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
        let res = c.resources.as_ref().unwrap();
        assert_eq!(res.limits.as_ref().unwrap()["memory"].0, "170Mi");
        let req = res.requests.as_ref().unwrap();
        assert_eq!(
            (req["cpu"].0.as_str(), req["memory"].0.as_str()),
            ("100m", "70Mi")
        );
        let ports: Vec<(Option<&str>, i32, Option<&str>)> = c
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| (p.name.as_deref(), p.container_port, p.protocol.as_deref()))
            .collect();
        assert_eq!(
            ports,
            [
                (Some("dns"), 53, Some("UDP")),
                (Some("dns-tcp"), 53, Some("TCP")),
                (Some("metrics"), 9153, Some("TCP")),
                (Some("liveness-probe"), 8080, Some("TCP")),
                (Some("readiness-probe"), 8181, Some("TCP")),
            ]
        );
        let get = |p: &Option<Probe>| {
            let h = p.as_ref().unwrap().http_get.clone().unwrap();
            (h.path, h.port, h.scheme)
        };
        assert_eq!(
            get(&c.liveness_probe),
            (
                Some("/health".into()),
                IntOrString::String("liveness-probe".into()),
                Some("HTTP".into())
            )
        );
        assert_eq!(
            c.liveness_probe.as_ref().unwrap().success_threshold,
            Some(1)
        );
        assert_eq!(
            get(&c.readiness_probe),
            (
                Some("/ready".into()),
                IntOrString::String("readiness-probe".into()),
                Some("HTTP".into())
            )
        );
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_string()][..])
        );
        assert_eq!(sc.privileged, None);
        let mount = &c.volume_mounts.as_ref().unwrap()[0];
        assert_eq!(
            (
                mount.name.as_str(),
                mount.mount_path.as_str(),
                mount.read_only
            ),
            ("config-volume", "/etc/coredns", Some(true))
        );
        let items = pod.volumes.unwrap()[0]
            .config_map
            .clone()
            .unwrap()
            .items
            .unwrap();
        assert_eq!(
            (items[0].key.as_str(), items[0].path.as_str()),
            ("Corefile", "Corefile")
        );

        let svc: Service = typed(&objs[5]);
        let ann = svc.metadata.annotations.unwrap();
        assert_eq!(
            (
                ann["prometheus.io/port"].as_str(),
                ann["prometheus.io/scrape"].as_str()
            ),
            ("9153", "true")
        );
        let labels = svc.metadata.labels.unwrap();
        assert_eq!(labels["kubernetes.io/cluster-service"], "true");
        let targets: Vec<Option<IntOrString>> = svc
            .spec
            .unwrap()
            .ports
            .unwrap()
            .into_iter()
            .map(|p| p.target_port)
            .collect();
        assert_eq!(
            targets,
            [
                Some(IntOrString::Int(53)),
                Some(IntOrString::Int(53)),
                Some(IntOrString::Int(9153))
            ]
        );
    }

    #[test]
    fn kube_dns_is_the_tenth_service_address() {
        let mut s = control_plane_settings();
        let svc = |s: &Settings| -> Service { typed(&coredns(s).unwrap()[5]) };
        let spec = svc(&s).spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.10"));
        let ports: Vec<(String, i32, String)> = spec
            .ports
            .unwrap()
            .into_iter()
            .map(|p| (p.name.unwrap(), p.port, p.protocol.unwrap()))
            .collect();
        assert_eq!(
            ports,
            [
                ("dns".into(), 53, "UDP".into()),
                ("dns-tcp".into(), 53, "TCP".into()),
                ("metrics".into(), 9153, "TCP".into())
            ]
        );
        assert_eq!(spec.selector.unwrap()["k8s-app"], "kube-dns");
        s.cluster.service_subnets = vec!["172.20.0.0/16".parse().unwrap()];
        assert_eq!(
            svc(&s).spec.unwrap().cluster_ip.as_deref(),
            Some("172.20.0.10")
        );
        s.cluster.service_subnets = vec![
            "fd00:10:96::/108".parse().unwrap(),
            "10.96.0.0/12".parse().unwrap(),
        ];
        assert_eq!(
            svc(&s).spec.unwrap().cluster_ip.as_deref(),
            Some("fd00:10:96::a")
        );
        let meta = svc(&s).metadata;
        assert_eq!(meta.labels.unwrap()["kubernetes.io/name"], "CoreDNS");
        assert_eq!(meta.annotations.unwrap()["prometheus.io/port"], "9153");
        s.cluster.service_subnets = vec!["10.96.0.0/29".parse().unwrap()];
        let e = coredns(&s).err().unwrap();
        assert!(e.to_string().contains("serviceSubnet"), "{e}");
    }

    #[test]
    fn coredns_deployment_shape() {
        let d: Deployment = typed(&coredns(&control_plane_settings()).unwrap()[4]);
        assert_eq!(d.metadata.labels.unwrap()["k8s-app"], "kube-dns");
        let spec = d.spec;
        assert_eq!(spec.replicas, Some(2));
        assert_eq!(
            spec.strategy
                .unwrap()
                .rolling_update
                .unwrap()
                .max_unavailable,
            Some(IntOrString::Int(1))
        );
        assert_eq!(spec.selector.match_labels.unwrap()["k8s-app"], "kube-dns");
        let pod = spec.template.spec.unwrap();
        assert_eq!(
            pod.priority_class_name.as_deref(),
            Some("system-cluster-critical")
        );
        assert_eq!(pod.dns_policy.as_deref(), Some("Default"));
        assert_eq!(pod.service_account_name.as_deref(), Some("coredns"));
        assert_eq!(pod.node_selector.unwrap()["kubernetes.io/os"], "linux");
        let tol = key_operator_effect(pod.tolerations.unwrap());
        assert_eq!(
            tol,
            [
                (
                    Some("CriticalAddonsOnly".into()),
                    Some("Exists".into()),
                    None
                ),
                (
                    Some(LABEL_CONTROL_PLANE.into()),
                    None,
                    Some("NoSchedule".into())
                ),
            ]
        );
        let c = &pod.containers[0];
        assert_eq!(
            c.image.as_deref(),
            Some("registry.k8s.io/coredns/coredns:v1.12.1")
        );
        assert_eq!(
            c.args.as_deref(),
            Some(&["-conf".to_string(), "/etc/coredns/Corefile".to_string()][..])
        );
        let live = c.liveness_probe.as_ref().unwrap();
        assert_eq!(
            live.http_get.as_ref().unwrap().path.as_deref(),
            Some("/health")
        );
        assert_eq!(
            (
                live.initial_delay_seconds,
                live.timeout_seconds,
                live.failure_threshold
            ),
            (Some(60), Some(5), Some(5))
        );
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().add.as_deref(),
            Some(&["NET_BIND_SERVICE".to_string()][..])
        );
        let vol = &pod.volumes.unwrap()[0];
        assert_eq!(vol.config_map.as_ref().unwrap().name, "coredns");
    }

    #[test]
    fn images_follow_the_version_table_and_repository() {
        let mut s = control_plane_settings();
        for (version, coredns) in [
            ("v1.32.4", "v1.11.3"),
            ("v1.33.1", "v1.12.0"),
            ("v1.34.2", "v1.12.1"),
        ] {
            s.cluster.kubernetes_version = version.into();
            assert_eq!(
                coredns_image(&s),
                format!("registry.k8s.io/coredns/coredns:{coredns}")
            );
            assert_eq!(
                kube_proxy_image(&s),
                format!("registry.k8s.io/kube-proxy:{version}")
            );
        }
        s.cluster.image_repository = "mirror.example.test/k8s".into();
        s.cluster.kubernetes_version = "v1.33.0+vendor.1".into();
        assert_eq!(coredns_image(&s), "mirror.example.test/k8s/coredns:v1.12.0");
        assert_eq!(
            kube_proxy_image(&s),
            "mirror.example.test/k8s/kube-proxy:v1.33.0_vendor.1"
        );
        let ds: DaemonSet = typed(&kube_proxy(&s).unwrap()[1]);
        assert_eq!(
            ds.spec.template.spec.unwrap().containers[0]
                .image
                .as_deref(),
            Some("mirror.example.test/k8s/kube-proxy:v1.33.0_vendor.1")
        );
    }

    #[test]
    fn disabled_addons_are_left_out_and_dns_image_overrides() {
        let mut s = control_plane_settings();
        s.cluster.dns.disabled = true;
        let objs = all(&s).unwrap();
        assert_eq!(objs.len(), 6);
        let dns = |o: &ApiObject| o.what.contains("coredns") || o.what.contains("kube-dns");
        assert!(!objs.iter().any(dns), "{objs:?}");
        s.cluster.proxy.disabled = true;
        assert!(all(&s).unwrap().is_empty());
        s.cluster.dns.disabled = false;
        let objs = all(&s).unwrap();
        assert_eq!(objs.len(), 6);
        assert!(objs.iter().all(dns), "{objs:?}");

        // kubeadm's GetDNSImage: the override repository, no extra level
        // unless it is the default one; the override tag
        s.cluster.dns.image_tag = Some("v1.12.1-fix".into());
        assert_eq!(
            coredns_image(&s),
            "registry.k8s.io/coredns/coredns:v1.12.1-fix"
        );
        s.cluster.dns.image_repository = Some("mirror.test/dns/".into());
        assert_eq!(coredns_image(&s), "mirror.test/dns/coredns:v1.12.1-fix");
        s.cluster.dns.image_tag = None;
        s.cluster.image_repository = "other.test/k8s".into();
        s.cluster.dns.image_repository = Some("registry.k8s.io".into());
        assert_eq!(coredns_image(&s), "registry.k8s.io/coredns/coredns:v1.12.1");
        let d: Deployment = typed(&coredns(&s).unwrap()[4]);
        assert_eq!(
            d.spec.template.spec.unwrap().containers[0].image.as_deref(),
            Some("registry.k8s.io/coredns/coredns:v1.12.1")
        );
    }

    #[test]
    fn kube_proxy_configmap_is_signed_over_its_two_keys() {
        let cm: ConfigMap = typed(&kube_proxy(&control_plane_settings()).unwrap()[0]);
        let data = cm.data.clone().unwrap();
        // config.conf sorts before kubeconfig.conf; values only
        let bytes = format!("{}{}", data["config.conf"], data["kubeconfig.conf"]);
        assert_eq!(
            cm.metadata.annotations.unwrap()["kubeadm.kubernetes.io/component-config.hash"],
            crate::pki::spki_hash(bytes.as_bytes()), // sha256:<hex> of any bytes
        );
    }

    #[test]
    fn kube_proxy_configmap_and_daemonset() {
        let mut s = control_plane_settings();
        let objs = kube_proxy(&s).unwrap();
        assert_binds_service_account(&objs[3], "system:node-proxier", "kube-proxy");
        let role: k8s_openapi::api::rbac::v1::Role = typed(&objs[4]);
        let rule = &role.rules.unwrap()[0];
        assert_eq!(
            (
                rule.api_groups.as_deref(),
                rule.resources.as_deref(),
                rule.resource_names.as_deref(),
                rule.verbs.as_slice()
            ),
            (
                Some(&[String::new()][..]),
                Some(&["configmaps".to_string()][..]),
                Some(&["kube-proxy".to_string()][..]),
                &["get".to_string()][..]
            )
        );
        let rb: k8s_openapi::api::rbac::v1::RoleBinding = typed(&objs[5]);
        assert_eq!(
            (rb.role_ref.kind.as_str(), rb.role_ref.name.as_str()),
            ("Role", "kube-proxy")
        );
        let sub = &rb.subjects.unwrap()[0];
        assert_eq!(
            (sub.kind.as_str(), sub.name.as_str()),
            ("Group", NODE_BOOTSTRAP_GROUP)
        );
        let cm: ConfigMap = typed(&objs[0]);
        assert_eq!(cm.metadata.labels.unwrap()["app"], "kube-proxy");
        let data = cm.data.unwrap();
        // both keys are `|-` blocks in kubeadm's template
        assert!(
            !data["config.conf"].ends_with('\n'),
            "{}",
            data["config.conf"]
        );
        assert!(!data["kubeconfig.conf"].ends_with('\n'));
        let conf: Value = serde_norway::from_str(&data["config.conf"]).unwrap();
        assert_eq!(conf["kind"], "KubeProxyConfiguration");
        assert_eq!(conf["apiVersion"], "kubeproxy.config.k8s.io/v1alpha1");
        assert_eq!(conf["clusterCIDR"], "10.244.0.0/16");
        assert_eq!(conf["bindAddress"], "0.0.0.0");
        assert_eq!(
            conf["clientConnection"]["kubeconfig"],
            "/var/lib/kube-proxy/kubeconfig.conf"
        );
        let kc: Value = serde_norway::from_str(&data["kubeconfig.conf"]).unwrap();
        assert_eq!(
            kc["clusters"][0]["cluster"]["server"],
            "https://k8s.example.test:6443"
        );
        assert_eq!(
            kc["users"][0]["user"]["tokenFile"],
            "/var/run/secrets/kubernetes.io/serviceaccount/token"
        );
        assert_eq!(kc["current-context"], "default");

        let ds: DaemonSet = typed(&objs[1]);
        assert_eq!(ds.metadata.labels.unwrap()["k8s-app"], "kube-proxy");
        assert_eq!(
            ds.spec.selector.match_labels.unwrap()["k8s-app"],
            "kube-proxy"
        );
        assert_eq!(
            ds.spec.update_strategy.unwrap().type_.as_deref(),
            Some("RollingUpdate")
        );
        let tmpl = ds.spec.template;
        assert_eq!(
            tmpl.metadata.unwrap().labels.unwrap()["k8s-app"],
            "kube-proxy"
        );
        let pod = tmpl.spec.unwrap();
        assert_eq!(pod.host_network, Some(true));
        assert_eq!(pod.service_account_name.as_deref(), Some("kube-proxy"));
        assert_eq!(
            pod.priority_class_name.as_deref(),
            Some("system-node-critical")
        );
        assert_eq!(pod.node_selector.unwrap()["kubernetes.io/os"], "linux");
        let c = &pod.containers[0];
        assert_eq!(c.name, "kube-proxy");
        assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
        assert_eq!(
            c.command.as_deref().unwrap(),
            [
                "/usr/local/bin/kube-proxy",
                "--config=/var/lib/kube-proxy/config.conf",
                "--hostname-override=$(NODE_NAME)"
            ]
        );
        // kubeadm still runs kube-proxy privileged (kubeadm#2948 is open)
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.privileged, Some(true));
        assert!(sc.capabilities.is_none());
        let env = &c.env.as_ref().unwrap()[0];
        assert_eq!(env.name, "NODE_NAME");
        assert_eq!(
            env.value_from
                .as_ref()
                .and_then(|v| v.field_ref.as_ref())
                .map(|f| f.field_path.as_str()),
            Some("spec.nodeName")
        );
        let mounts: Vec<(&str, &str, Option<bool>)> = c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| (m.name.as_str(), m.mount_path.as_str(), m.read_only))
            .collect();
        assert_eq!(
            mounts,
            [
                ("kube-proxy", "/var/lib/kube-proxy", None),
                ("xtables-lock", "/run/xtables.lock", Some(false)),
                ("lib-modules", "/lib/modules", Some(true)),
            ]
        );
        // name, then the ConfigMap or the host path and its type
        let vols: Vec<String> = pod
            .volumes
            .unwrap()
            .into_iter()
            .map(|v| {
                let source = match (v.config_map, v.host_path) {
                    (Some(c), None) => format!("configMap {}", c.name),
                    (None, Some(h)) => format!("hostPath {} {:?}", h.path, h.type_),
                    _ => "other".to_string(),
                };
                format!("{}: {source}", v.name)
            })
            .collect();
        assert_eq!(
            vols,
            [
                "kube-proxy: configMap kube-proxy",
                "xtables-lock: hostPath /run/xtables.lock Some(\"FileOrCreate\")",
                "lib-modules: hostPath /lib/modules None",
            ]
        );
        // every taint tolerated, by one `operator: Exists` and nothing else
        let tol = key_operator_effect(pod.tolerations.unwrap());
        assert_eq!(tol, [(None, Some("Exists".into()), None)]);

        // IPv6, dual-stack pods, no shared endpoint
        s.node.advertise_address = "fd00::10".parse().unwrap();
        s.cluster.control_plane_endpoint = None;
        s.cluster.pod_subnets = vec![
            "10.244.0.0/16".parse().unwrap(),
            "fd00:244::/56".parse().unwrap(),
        ];
        let conf = kube_proxy_config(&s);
        assert_eq!(conf["bindAddress"], "::");
        assert_eq!(conf["clusterCIDR"], "10.244.0.0/16,fd00:244::/56");
        let cm: ConfigMap = typed(&kube_proxy(&s).unwrap()[0]);
        assert!(cm.data.unwrap()["kubeconfig.conf"].contains("server: https://[fd00::10]:6443\n"));
        s.cluster.pod_subnets.clear();
        assert!(kube_proxy_config(&s).get("clusterCIDR").is_none());
    }
}
