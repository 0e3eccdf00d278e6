//! The four control-plane components: their default flags, probes,
//! volumes and images (kubeadm `getAPIServerCommand`,
//! `getControllerManagerCommand`, `getSchedulerCommand`, `etcd/local.go`,
//! `volumes.go`). The common pod shape is in the parent module.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Pod;

use super::versions::{self, VersionFacts};
use super::{
    ANNOTATION_APISERVER_ENDPOINT, ANNOTATION_ETCD_CLIENT_URLS, ComponentSpec, ETCD, HostInputs,
    HostVolume, KUBE_APISERVER, KUBE_CONTROLLER_MANAGER, KUBE_SCHEDULER, ProbeTarget, arg,
    arg_value, command, component_pod, merge_args, merge_env, merge_volumes,
};
use crate::config::model::{Arg, Component, Etcd, Settings};

/// An existing etcd member, for the `--initial-cluster` of a joining
/// control-plane node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdMember {
    /// Member name (the node name).
    pub name: String,
    /// Its peer URL, `https://<ip>:2380`.
    pub peer_url: String,
}

const ETCD_CLIENT_PORT: u16 = 2379;
const ETCD_PEER_PORT: u16 = 2380;
const ETCD_METRICS_PORT: u16 = 2381;
const KCM_PORT: i32 = 10257;
const SCHEDULER_PORT: i32 = 10259;
const FLEXVOLUME_DIR: &str = "/usr/libexec/kubernetes/kubelet-plugins/volume/exec";

fn cert_dir(s: &Settings) -> &str {
    let d = s.cluster.certificates_dir.trim_end_matches('/');
    if d.is_empty() { "/" } else { d }
}

fn pki(s: &Settings, file: &str) -> String {
    format!("{}/{file}", cert_dir(s))
}

/// `host` with brackets when it is an IPv6 literal.
fn url_host(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

fn loopback_for(ip: &IpAddr) -> &'static str {
    if ip.is_ipv6() { "[::1]" } else { "127.0.0.1" }
}

fn facts(s: &Settings) -> &'static VersionFacts {
    versions::facts(&s.cluster.kubernetes_version)
}

/// `<repo>/<name>:<kubernetesVersion>` with `+` replaced by `_`.
pub fn control_plane_image(s: &Settings, name: &str) -> String {
    format!(
        "{}/{name}:{}",
        s.cluster.image_repository.trim_end_matches('/'),
        s.cluster.kubernetes_version.replace('+', "_")
    )
}

/// The etcd image: per-etcd repository/tag overrides, else the table's tag.
pub fn etcd_image(s: &Settings) -> String {
    let (repo, tag) = match &s.cluster.etcd {
        Etcd::Local {
            image_repository,
            image_tag,
            ..
        } => (image_repository.clone(), image_tag.clone()),
        Etcd::External { .. } => (None, None),
    };
    let repo = repo
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| s.cluster.image_repository.clone());
    let tag = tag
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| facts(s).etcd_tag.to_string());
    format!("{}/etcd:{tag}", repo.trim_end_matches('/'))
}

/// Fills in what every component gets the same way: the command from the
/// merged flags, user volumes, proxy + user env, and the pull policy.
fn finish(
    s: &Settings,
    host: &HostInputs,
    comp: &Component,
    args: &[Arg],
    spec: ComponentSpec,
) -> Pod {
    component_pod(ComponentSpec {
        command: command(spec.name, args),
        volumes: merge_volumes(spec.volumes, &comp.extra_volumes),
        env: merge_env(&host.proxy_env, &comp.extra_envs),
        image_pull_policy: s.node.image_pull_policy.to_string(),
        ..spec
    })
}

fn spec(
    name: &'static str,
    image: String,
    probes: ProbeTarget,
    requests: (&'static str, Option<&'static str>),
    volumes: Vec<HostVolume>,
    annotations: BTreeMap<String, String>,
) -> ComponentSpec {
    ComponentSpec {
        name,
        image,
        command: Vec::new(),
        probes,
        cpu: requests.0,
        memory: requests.1,
        volumes,
        env: Vec::new(),
        annotations,
        image_pull_policy: String::new(),
    }
}

/// Volumes the API server and the controller manager share: the PKI
/// directory, `/etc/ssl/certs` and the distribution CA directories present.
fn ca_volumes(s: &Settings, host: &HostInputs) -> Vec<HostVolume> {
    let mut v = vec![
        HostVolume::new("k8s-certs", cert_dir(s), "DirectoryOrCreate", true),
        HostVolume::new("ca-certs", "/etc/ssl/certs", "DirectoryOrCreate", true),
    ];
    for dir in &host.ca_trust_dirs {
        let name = dir.trim_start_matches('/').replace('/', "-");
        v.push(HostVolume::new(&name, dir, "DirectoryOrCreate", true));
    }
    v
}

fn is_under(path: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    path == dir || path.starts_with(&format!("{dir}/"))
}

/// kube-apiserver, with no distribution CA directories and no proxy env.
pub fn apiserver(s: &Settings) -> Pod {
    apiserver_with(s, &HostInputs::default())
}

/// kube-apiserver.
pub fn apiserver_with(s: &Settings, host: &HostInputs) -> Pod {
    let f = facts(s);
    let adv = s.node.advertise_address;
    let c = &s.cluster;
    let mut defaults = vec![
        arg("advertise-address", adv.to_string()),
        arg("allow-privileged", "true"),
        arg("authorization-mode", "Node,RBAC"),
        arg("client-ca-file", pki(s, "ca.crt")),
        arg("enable-admission-plugins", "NodeRestriction"),
        arg("enable-bootstrap-token-auth", "true"),
        arg(
            "kubelet-client-certificate",
            pki(s, "apiserver-kubelet-client.crt"),
        ),
        arg("kubelet-client-key", pki(s, "apiserver-kubelet-client.key")),
        arg(
            "kubelet-preferred-address-types",
            "InternalIP,ExternalIP,Hostname",
        ),
        arg("proxy-client-cert-file", pki(s, "front-proxy-client.crt")),
        arg("proxy-client-key-file", pki(s, "front-proxy-client.key")),
        arg("requestheader-allowed-names", "front-proxy-client"),
        arg("requestheader-client-ca-file", pki(s, "front-proxy-ca.crt")),
        arg("requestheader-extra-headers-prefix", "X-Remote-Extra-"),
        arg("requestheader-group-headers", "X-Remote-Group"),
        arg("requestheader-username-headers", "X-Remote-User"),
        arg("secure-port", s.node.bind_port.to_string()),
        arg(
            "service-account-issuer",
            format!("https://kubernetes.default.svc.{}", c.dns_domain),
        ),
        arg("service-account-key-file", pki(s, "sa.pub")),
        arg("service-account-signing-key-file", pki(s, "sa.key")),
        arg("tls-cert-file", pki(s, "apiserver.crt")),
        arg("tls-private-key-file", pki(s, "apiserver.key")),
    ];
    if !c.service_subnets.is_empty() {
        let ranges: Vec<String> = c.service_subnets.iter().map(|n| n.to_string()).collect();
        defaults.push(arg("service-cluster-ip-range", ranges.join(",")));
    }
    let mut volumes = ca_volumes(s, host);
    match &c.etcd {
        Etcd::Local { .. } => {
            let servers = arg_value(&c.etcd_component.extra_args, "advertise-client-urls")
                .map(str::to_string)
                .unwrap_or_else(|| format!("https://{}:{ETCD_CLIENT_PORT}", loopback_for(&adv)));
            defaults.push(arg("etcd-servers", servers));
            defaults.push(arg("etcd-cafile", pki(s, "etcd/ca.crt")));
            defaults.push(arg("etcd-certfile", pki(s, "apiserver-etcd-client.crt")));
            defaults.push(arg("etcd-keyfile", pki(s, "apiserver-etcd-client.key")));
        }
        Etcd::External {
            endpoints,
            ca_file,
            cert_file,
            key_file,
        } => {
            defaults.push(arg("etcd-servers", endpoints.join(",")));
            let mut dirs: Vec<String> = Vec::new();
            for (flag, file) in [
                ("etcd-cafile", ca_file),
                ("etcd-certfile", cert_file),
                ("etcd-keyfile", key_file),
            ] {
                if file.is_empty() {
                    continue;
                }
                defaults.push(arg(flag, file.clone()));
                let dir = match file.rsplit_once('/') {
                    Some(("", _)) => "/".to_string(),
                    Some((d, _)) => d.to_string(),
                    None => continue,
                };
                let covered = volumes.iter().any(|v| is_under(&dir, &v.host_path));
                if !covered && !dirs.contains(&dir) {
                    dirs.push(dir);
                }
            }
            dirs.sort();
            for (i, dir) in dirs.iter().enumerate() {
                volumes.push(HostVolume::new(
                    &format!("etcd-certs-{i}"),
                    dir,
                    "DirectoryOrCreate",
                    true,
                ));
            }
        }
    }
    let extra = &c.api_server.extra_args;
    if arg_value(extra, "authorization-config").is_some() {
        defaults.retain(|a| a.name != "authorization-mode");
    }
    let args = merge_args(defaults, extra);
    let probe_host = arg_value(&args, "advertise-address")
        .and_then(|a| a.parse::<IpAddr>().ok())
        .unwrap_or(adv);
    let probes = ProbeTarget {
        host: if probe_host.is_unspecified() {
            String::new()
        } else {
            probe_host.to_string()
        },
        port: i32::from(s.node.bind_port),
        scheme: "HTTPS",
        liveness: "/livez",
        readiness: Some("/readyz"),
        startup: "/livez",
        named_port: f.named_probe_port,
    };
    let mut annotations = BTreeMap::new();
    annotations.insert(
        ANNOTATION_APISERVER_ENDPOINT.to_string(),
        s.local_endpoint().to_string(),
    );
    finish(
        s,
        host,
        &c.api_server,
        &args,
        spec(
            KUBE_APISERVER,
            control_plane_image(s, KUBE_APISERVER),
            probes,
            ("250m", None),
            volumes,
            annotations,
        ),
    )
}

/// The probe host of a component bound to `bind-address`: that address,
/// or `127.0.0.1` when unset or unspecified.
fn local_probe_host(args: &[Arg]) -> String {
    match arg_value(args, "bind-address").and_then(|a| a.parse::<IpAddr>().ok()) {
        Some(ip) if !ip.is_unspecified() => ip.to_string(),
        _ => "127.0.0.1".to_string(),
    }
}

/// kube-controller-manager, with no distribution CA directories and no proxy env.
pub fn controller_manager(s: &Settings) -> Pod {
    controller_manager_with(s, &HostInputs::default())
}

/// kube-controller-manager.
pub fn controller_manager_with(s: &Settings, host: &HostInputs) -> Pod {
    let f = facts(s);
    let c = &s.cluster;
    let kubeconfig = "/etc/kubernetes/controller-manager.conf";
    let mut defaults = vec![
        arg("authentication-kubeconfig", kubeconfig),
        arg("authorization-kubeconfig", kubeconfig),
        arg("bind-address", "127.0.0.1"),
        arg("client-ca-file", pki(s, "ca.crt")),
        arg("cluster-signing-cert-file", pki(s, "ca.crt")),
        arg("cluster-signing-key-file", pki(s, "ca.key")),
        arg("controllers", "*,bootstrapsigner,tokencleaner"),
        arg("kubeconfig", kubeconfig),
        arg("leader-elect", "true"),
        arg("requestheader-client-ca-file", pki(s, "front-proxy-ca.crt")),
        arg("root-ca-file", pki(s, "ca.crt")),
        arg("service-account-private-key-file", pki(s, "sa.key")),
        arg("use-service-account-credentials", "true"),
    ];
    if !c.name.is_empty() {
        defaults.push(arg("cluster-name", c.name.clone()));
    }
    if !c.pod_subnets.is_empty() {
        let pods: Vec<String> = c.pod_subnets.iter().map(|n| n.to_string()).collect();
        defaults.push(arg("allocate-node-cidrs", "true"));
        defaults.push(arg("cluster-cidr", pods.join(",")));
        if !c.service_subnets.is_empty() {
            let svcs: Vec<String> = c.service_subnets.iter().map(|n| n.to_string()).collect();
            defaults.push(arg("service-cluster-ip-range", svcs.join(",")));
        }
    }
    let args = merge_args(defaults, &c.controller_manager.extra_args);
    let flex = arg_value(&args, "flex-volume-plugin-dir")
        .unwrap_or(FLEXVOLUME_DIR)
        .to_string();
    let mut volumes = ca_volumes(s, host);
    volumes.push(HostVolume::new(
        "kubeconfig",
        kubeconfig,
        "FileOrCreate",
        true,
    ));
    volumes.push(HostVolume::new(
        "flexvolume-dir",
        &flex,
        "DirectoryOrCreate",
        false,
    ));
    let probes = ProbeTarget {
        host: local_probe_host(&args),
        port: KCM_PORT,
        scheme: "HTTPS",
        liveness: "/healthz",
        readiness: None,
        startup: "/healthz",
        named_port: f.named_probe_port,
    };
    finish(
        s,
        host,
        &c.controller_manager,
        &args,
        spec(
            KUBE_CONTROLLER_MANAGER,
            control_plane_image(s, KUBE_CONTROLLER_MANAGER),
            probes,
            ("200m", None),
            volumes,
            BTreeMap::new(),
        ),
    )
}

/// kube-scheduler, with no proxy env.
pub fn scheduler(s: &Settings) -> Pod {
    scheduler_with(s, &HostInputs::default())
}

/// kube-scheduler.
pub fn scheduler_with(s: &Settings, host: &HostInputs) -> Pod {
    let f = facts(s);
    let c = &s.cluster;
    let kubeconfig = "/etc/kubernetes/scheduler.conf";
    let defaults = vec![
        arg("authentication-kubeconfig", kubeconfig),
        arg("authorization-kubeconfig", kubeconfig),
        arg("bind-address", "127.0.0.1"),
        arg("kubeconfig", kubeconfig),
        arg("leader-elect", "true"),
    ];
    let args = merge_args(defaults, &c.scheduler.extra_args);
    let (liveness, readiness, startup) = if f.scheduler_livez_readyz {
        ("/livez", Some("/readyz"), "/livez")
    } else {
        ("/healthz", None, "/healthz")
    };
    let probes = ProbeTarget {
        host: local_probe_host(&args),
        port: SCHEDULER_PORT,
        scheme: "HTTPS",
        liveness,
        readiness,
        startup,
        named_port: f.named_probe_port,
    };
    let volumes = vec![HostVolume::new(
        "kubeconfig",
        kubeconfig,
        "FileOrCreate",
        true,
    )];
    finish(
        s,
        host,
        &c.scheduler,
        &args,
        spec(
            KUBE_SCHEDULER,
            control_plane_image(s, KUBE_SCHEDULER),
            probes,
            ("100m", None),
            volumes,
            BTreeMap::new(),
        ),
    )
}

/// Local etcd for an init node; `None` with external etcd or on a worker.
pub fn etcd(s: &Settings) -> Option<Pod> {
    etcd_with(s, &HostInputs::default(), &[])
}

/// Splits `scheme://host:port/...` (first URL of a comma list) into its
/// scheme, host (brackets removed) and port.
fn split_url(urls: &str) -> Option<(String, String, i32)> {
    let first = urls.split(',').next()?.trim();
    let (scheme, rest) = first.split_once("://")?;
    let authority = rest.split('/').next()?;
    let (host, port) = if let Some(r) = authority.strip_prefix('[') {
        let (h, p) = r.split_once(']')?;
        (h, p.strip_prefix(':')?)
    } else {
        authority.rsplit_once(':')?
    };
    Some((
        scheme.to_ascii_uppercase(),
        host.to_string(),
        port.parse().ok()?,
    ))
}

/// Local etcd. `members` are the existing members a control-plane join
/// learned from the cluster (this node is added to them); empty on init.
pub fn etcd_with(s: &Settings, host: &HostInputs, members: &[EtcdMember]) -> Option<Pod> {
    let Etcd::Local { data_dir, .. } = &s.cluster.etcd else {
        return None;
    };
    if !s.mode.is_control_plane() {
        return None;
    }
    let f = facts(s);
    let adv = s.node.advertise_address;
    let ah = url_host(&adv);
    let lo = loopback_for(&adv);
    let name = &s.node.name;
    let client_url = format!("https://{ah}:{ETCD_CLIENT_PORT}");
    let peer_url = format!("https://{ah}:{ETCD_PEER_PORT}");
    let image = etcd_image(s);
    let tag = image.rsplit_once(':').map_or("", |(_, t)| t);
    let mut defaults = vec![
        arg("advertise-client-urls", client_url.clone()),
        arg("cert-file", pki(s, "etcd/server.crt")),
        arg("client-cert-auth", "true"),
        arg("data-dir", data_dir.clone()),
        arg("initial-advertise-peer-urls", peer_url.clone()),
        arg("key-file", pki(s, "etcd/server.key")),
        arg(
            "listen-client-urls",
            format!("https://{lo}:{ETCD_CLIENT_PORT},{client_url}"),
        ),
        arg(
            "listen-metrics-urls",
            format!("http://{lo}:{ETCD_METRICS_PORT}"),
        ),
        arg("listen-peer-urls", peer_url.clone()),
        arg("name", name.clone()),
        arg("peer-cert-file", pki(s, "etcd/peer.crt")),
        arg("peer-client-cert-auth", "true"),
        arg("peer-key-file", pki(s, "etcd/peer.key")),
        arg("peer-trusted-ca-file", pki(s, "etcd/ca.crt")),
        arg("snapshot-count", "10000"),
        arg("trusted-ca-file", pki(s, "etcd/ca.crt")),
    ];
    if versions::etcd_is_36_or_newer(tag) {
        defaults.push(arg("feature-gates", "InitialCorruptCheck=true"));
        defaults.push(arg("watch-progress-notify-interval", "5s"));
    } else {
        defaults.push(arg("experimental-initial-corrupt-check", "true"));
        defaults.push(arg("experimental-watch-progress-notify-interval", "5s"));
    }
    let mut initial: Vec<String> = members
        .iter()
        .filter(|m| m.name != *name)
        .map(|m| format!("{}={}", m.name, m.peer_url))
        .collect();
    initial.push(format!("{name}={peer_url}"));
    defaults.push(arg("initial-cluster", initial.join(",")));
    if s.mode.is_join() {
        defaults.push(arg("initial-cluster-state", "existing"));
    }
    let comp = &s.cluster.etcd_component;
    let args = merge_args(defaults, &comp.extra_args);
    // An unspecified listen address (0.0.0.0, ::) is probed on loopback.
    let (scheme, probe_host, port) = arg_value(&args, "listen-metrics-urls")
        .and_then(split_url)
        .map(|(scheme, h, port)| match h.parse::<IpAddr>() {
            Ok(ip) if ip.is_unspecified() => {
                (scheme, lo.trim_matches(['[', ']']).to_string(), port)
            }
            _ => (scheme, h, port),
        })
        .unwrap_or_else(|| {
            (
                "HTTP".to_string(),
                lo.trim_matches(['[', ']']).to_string(),
                i32::from(ETCD_METRICS_PORT),
            )
        });
    let probes = ProbeTarget {
        host: probe_host,
        port,
        scheme: if scheme == "HTTPS" { "HTTPS" } else { "HTTP" },
        liveness: "/livez",
        readiness: Some("/readyz"),
        startup: "/readyz",
        named_port: f.named_probe_port,
    };
    let volumes = vec![
        HostVolume::new("etcd-data", data_dir, "DirectoryOrCreate", false),
        HostVolume::new("etcd-certs", &pki(s, "etcd"), "DirectoryOrCreate", false),
    ];
    let advertised = arg_value(&args, "advertise-client-urls")
        .unwrap_or(&client_url)
        .to_string();
    let mut annotations = BTreeMap::new();
    annotations.insert(ANNOTATION_ETCD_CLIENT_URLS.to_string(), advertised);
    Some(finish(
        s,
        host,
        comp,
        &args,
        spec(
            ETCD,
            image,
            probes,
            ("100m", Some("100Mi")),
            volumes,
            annotations,
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_urls() {
        assert_eq!(
            split_url("http://127.0.0.1:2381"),
            Some(("HTTP".into(), "127.0.0.1".into(), 2381))
        );
        assert_eq!(
            split_url("https://[::1]:2382/x,http://a:1"),
            Some(("HTTPS".into(), "::1".into(), 2382))
        );
        assert_eq!(split_url("nonsense"), None);
        assert_eq!(split_url("http://host:notaport"), None);
    }

    #[test]
    fn is_under_matches_whole_components() {
        assert!(is_under("/etc/kubernetes/pki/etcd", "/etc/kubernetes/pki"));
        assert!(is_under("/etc/kubernetes/pki", "/etc/kubernetes/pki/"));
        assert!(!is_under("/etc/kubernetes/pki-ext", "/etc/kubernetes/pki"));
    }
}
