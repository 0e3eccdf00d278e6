//! Static pod manifests for the control plane: etcd, kube-apiserver,
//! kube-controller-manager and kube-scheduler, as kubeadm writes them to
//! `/etc/kubernetes/manifests/*.yaml`.
//!
//! The renderers are pure functions from [`Settings`] (plus the few host
//! facts in [`HostInputs`]) to `k8s_openapi` [`Pod`] values; only
//! [`write_pods`] touches the disk. Everything that depends on the
//! Kubernetes minor comes from the one table in [`versions`].
//!
//! Shape (kubeadm `staticpod.ComponentPod`): labels `component` and
//! `tier: control-plane`, `hostNetwork`, priority class
//! `system-node-critical`, pod-level seccomp `RuntimeDefault`, one container
//! with `--name=value` flags sorted by name (user `extraArgs` replace every
//! default of the same name; duplicates among them are kept, v1beta4 list
//! semantics), liveness/readiness/startup probes, hostPath volumes and
//! mounts sorted by name, CPU (and for etcd memory) requests.

pub mod components;
pub mod versions;

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar as KEnvVar, HTTPGetAction, HostPathVolumeSource, Pod,
    PodSecurityContext, PodSpec, Probe, ResourceRequirements, SeccompProfile, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::config::model::{Arg, EnvVar, ExtraVolume, Settings};
use crate::error::{Error, Result};
use crate::host::Paths;
use crate::host::fs::{Sync, create_dir_all, write_atomic};

pub use components::{
    EtcdMember, apiserver, apiserver_with, controller_manager, controller_manager_with, etcd,
    etcd_with, scheduler, scheduler_with,
};

/// Component and file names.
pub const ETCD: &str = "etcd";
/// kube-apiserver.
pub const KUBE_APISERVER: &str = "kube-apiserver";
/// kube-controller-manager.
pub const KUBE_CONTROLLER_MANAGER: &str = "kube-controller-manager";
/// kube-scheduler.
pub const KUBE_SCHEDULER: &str = "kube-scheduler";
/// The four static pods, in the order kubeadm writes them.
pub const COMPONENTS: [&str; 4] = [
    ETCD,
    KUBE_APISERVER,
    KUBE_CONTROLLER_MANAGER,
    KUBE_SCHEDULER,
];

/// Annotation carrying the API server's advertised endpoint.
pub const ANNOTATION_APISERVER_ENDPOINT: &str =
    "kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint";
/// Annotation carrying etcd's advertised client URLs.
pub const ANNOTATION_ETCD_CLIENT_URLS: &str = "kubeadm.kubernetes.io/etcd.advertise-client-urls";

/// Distribution CA bundle directories mounted into the API server and the
/// controller manager when they exist on the host (kubeadm `volumes.go`).
pub const CA_TRUST_DIRS: [&str; 5] = [
    "/etc/pki/ca-trust",
    "/etc/pki/tls/certs",
    "/etc/ca-certificates",
    "/usr/share/ca-certificates",
    "/usr/local/share/ca-certificates",
];

/// The host facts manifests depend on. [`HostInputs::detect`] reads them;
/// tests and image builders may pass them explicitly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostInputs {
    /// Which of [`CA_TRUST_DIRS`] exist on the host.
    pub ca_trust_dirs: Vec<String>,
    /// `*_proxy` / `*_PROXY` environment variables to pass to the components
    /// (kubeadm captures them from its own environment).
    pub proxy_env: Vec<EnvVar>,
}

impl HostInputs {
    /// Reads the CA directories under `paths` and keeps the proxy variables of `env`.
    pub fn detect(paths: &Paths, env: impl IntoIterator<Item = (String, String)>) -> HostInputs {
        let ca_trust_dirs = CA_TRUST_DIRS
            .iter()
            .filter(|d| paths.host(d).is_dir())
            .map(|d| d.to_string())
            .collect();
        let mut proxy_env: Vec<EnvVar> = env
            .into_iter()
            .filter(|(k, _)| k.to_ascii_lowercase().ends_with("_proxy"))
            .map(|(name, value)| EnvVar { name, value })
            .collect();
        proxy_env.sort_by(|a, b| a.name.cmp(&b.name));
        HostInputs {
            ca_trust_dirs,
            proxy_env,
        }
    }
}

/// Renders every static pod this node runs, as `(component, pod)`, in
/// kubeadm's order. Empty for workers; no etcd pod with external etcd.
pub fn render_all(s: &Settings, host: &HostInputs) -> Vec<(&'static str, Pod)> {
    render_wanted(s, host, &|_| true)
}

/// Builds one control-plane pod.
type PodBuilder = fn(&Settings, &HostInputs) -> Pod;

/// The pods of [`render_all`] that `want` names, the others not built (the
/// etcd phase writes one of the four, the control-plane phase three).
pub fn render_wanted(
    s: &Settings,
    host: &HostInputs,
    want: &dyn Fn(&str) -> bool,
) -> Vec<(&'static str, Pod)> {
    if !s.mode.is_control_plane() {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(4);
    if want(ETCD)
        && let Some(pod) = etcd_with(s, host, &[])
    {
        out.push((ETCD, pod));
    }
    let others: [(&'static str, PodBuilder); 3] = [
        (KUBE_APISERVER, apiserver_with),
        (KUBE_CONTROLLER_MANAGER, controller_manager_with),
        (KUBE_SCHEDULER, scheduler_with),
    ];
    for (name, build) in others {
        if want(name) {
            out.push((name, build(s, host)));
        }
    }
    out
}

/// The manifest of `component` as written: `pod` as YAML, or, when the
/// patches directory has patches for it, `pod` with those applied in order
/// (kubeadm's patches for static pods). The patched result is checked for
/// what the kubelet needs of a static pod (kind Pod, named containers with
/// images); it is not read back into the typed Pod (that decoder alone would
/// cost the binary some hundreds of KB).
pub fn patched_yaml(s: &Settings, component: &str, pod: &Pod) -> Result<String> {
    if !s.patches.has(component) {
        return to_yaml(pod);
    }
    let mut v = serde_json::to_value(pod)
        .map_err(|e| Error::Failed(format!("serializing static pod {component}: {e}")))?;
    s.patches.apply(component, &mut v)?;
    let bad = |what: &str| {
        Error::Invalid(format!(
            "patches for {component} ({}): the patched manifest {what}",
            s.patches.directory.as_deref().unwrap_or("")
        ))
    };
    if v.get("kind").and_then(serde_json::Value::as_str) != Some("Pod") {
        return Err(bad("is no longer a Pod (kind)"));
    }
    let containers = v
        .pointer("/spec/containers")
        .and_then(serde_json::Value::as_array)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| bad("has no spec.containers"))?;
    for c in containers {
        for field in ["name", "image"] {
            if c.get(field).and_then(serde_json::Value::as_str).is_none() {
                return Err(bad(&format!("has a container without a {field}")));
            }
        }
    }
    crate::yaml::to_string(&v)
        .map_err(|e| Error::Failed(format!("serializing static pod {component}: {e}")))
}

/// [`render_all`] as the manifests written, patches applied ([`patched_yaml`]).
pub fn render_patched(s: &Settings, host: &HostInputs) -> Result<Vec<(&'static str, String)>> {
    render_all(s, host)
        .into_iter()
        .map(|(c, pod)| Ok((c, patched_yaml(s, c, &pod)?)))
        .collect()
}

/// A pod as YAML, the way it is written to the manifests directory. It
/// goes through `serde_json::Value` (k8s-openapi writes fields in name
/// order, as the value's sorted map does): the pod types' serializers are
/// then compiled once, for serde_json, which the patches path needs anyway,
/// not a second time for the YAML emitter (binary size; docs/building.md).
pub fn to_yaml(pod: &Pod) -> Result<String> {
    let name = pod.metadata.name.as_deref().unwrap_or("pod");
    serde_json::to_value(pod)
        .map_err(|e| e.to_string())
        .and_then(|v| crate::yaml::to_string(&v).map_err(|e| e.to_string()))
        .map_err(|e| Error::Failed(format!("serializing static pod {name}: {e}")))
}

/// `/etc/kubernetes/manifests/<component>.yaml` under the root.
pub fn manifest_path(paths: &Paths, component: &str) -> PathBuf {
    paths.manifests_dir().join(format!("{component}.yaml"))
}

/// Writes rendered pods ([`render_all`], or an etcd pod rendered with the
/// member list of a control-plane join) to the manifests directory (0600,
/// directory 0700, created on workers too). Returns the files written.
pub fn write_pods(paths: &Paths, pods: &[(&str, Pod)], sync: Sync) -> Result<Vec<PathBuf>> {
    let texts = pods
        .iter()
        .map(|(c, pod)| Ok((*c, to_yaml(pod)?)))
        .collect::<Result<Vec<_>>>()?;
    write_manifests(paths, &texts, sync)
}

/// Writes manifests already rendered to YAML (e.g. [`render_patched`]):
/// 0600, directory 0700. Returns the files written.
pub fn write_manifests(paths: &Paths, pods: &[(&str, String)], sync: Sync) -> Result<Vec<PathBuf>> {
    let mut written = Vec::with_capacity(pods.len());
    // Workers get the (empty) directory too: it is the kubelet's
    // staticPodPath, and the kubelet warns when it is missing.
    create_dir_all(paths.root(), &paths.manifests_dir(), 0o700)?;
    for (component, text) in pods {
        let path = manifest_path(paths, component);
        write_atomic(&paths.rooted(&path), text.as_bytes(), 0o600, sync)?;
        written.push(path);
    }
    Ok(written)
}

/// Merges user `extraArgs` into defaults the v1beta4 way: every default
/// whose name appears among the overrides is dropped, all overrides are
/// kept (in order, duplicates included), and the result is sorted by name
/// (stable, so duplicates keep their order).
pub fn merge_args(defaults: Vec<Arg>, overrides: &[Arg]) -> Vec<Arg> {
    let mut out: Vec<Arg> = defaults
        .into_iter()
        .filter(|d| !overrides.iter().any(|o| o.name == d.name))
        .collect();
    out.extend(overrides.iter().cloned());
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// `[binary, --name=value, ...]`.
pub fn command(binary: &str, args: &[Arg]) -> Vec<String> {
    std::iter::once(binary.to_string())
        .chain(args.iter().map(|a| format!("--{}={}", a.name, a.value)))
        .collect()
}

/// The last value given for flag `name`, if any.
pub fn arg_value<'a>(args: &'a [Arg], name: &str) -> Option<&'a str> {
    args.iter()
        .rev()
        .find(|a| a.name == name)
        .map(|a| a.value.as_str())
}

pub(crate) fn arg(name: &str, value: impl Into<String>) -> Arg {
    Arg {
        name: name.to_string(),
        value: value.into(),
    }
}

/// A hostPath volume plus its mount at the same or another path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostVolume {
    pub name: String,
    pub host_path: String,
    pub mount_path: String,
    pub read_only: bool,
    pub path_type: Option<String>,
}

impl HostVolume {
    pub fn new(name: &str, path: &str, path_type: &str, read_only: bool) -> Self {
        HostVolume {
            name: name.to_string(),
            host_path: path.to_string(),
            mount_path: path.to_string(),
            read_only,
            path_type: Some(path_type.to_string()),
        }
    }
}

impl From<&ExtraVolume> for HostVolume {
    fn from(v: &ExtraVolume) -> Self {
        HostVolume {
            name: v.name.clone(),
            host_path: v.host_path.clone(),
            mount_path: v.mount_path.clone(),
            read_only: v.read_only,
            path_type: (!v.path_type.is_empty()).then(|| v.path_type.clone()),
        }
    }
}

/// Adds user volumes (replacing same-named defaults) and sorts by name.
pub(crate) fn merge_volumes(mut vols: Vec<HostVolume>, extra: &[ExtraVolume]) -> Vec<HostVolume> {
    for e in extra {
        vols.retain(|v| v.name != e.name);
        vols.push(e.into());
    }
    vols.sort_by(|a, b| a.name.cmp(&b.name));
    vols
}

/// Proxy variables merged with user `extraEnvs` (which win), sorted by name.
pub(crate) fn merge_env(proxy: &[EnvVar], extra: &[EnvVar]) -> Vec<KEnvVar> {
    let mut map: BTreeMap<&str, &str> = BTreeMap::new();
    for e in proxy.iter().chain(extra) {
        map.insert(&e.name, &e.value);
    }
    map.into_iter()
        .map(|(n, v)| KEnvVar {
            name: n.to_string(),
            value: Some(v.to_string()),
            ..Default::default()
        })
        .collect()
}

/// Where and how the kubelet probes a component.
#[derive(Debug, Clone)]
pub(crate) struct ProbeTarget {
    pub host: String,
    pub port: i32,
    pub scheme: &'static str,
    pub liveness: &'static str,
    pub readiness: Option<&'static str>,
    pub startup: &'static str,
    /// Use the named port `probe-port` (and declare it on the container).
    pub named_port: bool,
}

/// The named container port probes refer to from 1.34.
pub const PROBE_PORT_NAME: &str = "probe-port";

/// `failureThreshold` of the startup probe: ceil(4m / 10s).
const STARTUP_FAILURE_THRESHOLD: i32 = 24;

impl ProbeTarget {
    fn probe(&self, path: &str, initial_delay: i32, failure_threshold: i32, period: i32) -> Probe {
        let port = if self.named_port {
            IntOrString::String(PROBE_PORT_NAME.to_string())
        } else {
            IntOrString::Int(self.port)
        };
        Probe {
            http_get: Some(HTTPGetAction {
                host: (!self.host.is_empty()).then(|| self.host.clone()),
                path: Some(path.to_string()),
                port,
                scheme: Some(self.scheme.to_string()),
                ..Default::default()
            }),
            initial_delay_seconds: (initial_delay > 0).then_some(initial_delay),
            timeout_seconds: Some(15),
            failure_threshold: Some(failure_threshold),
            period_seconds: Some(period),
            ..Default::default()
        }
    }
    fn liveness(&self) -> Probe {
        self.probe(self.liveness, 10, 8, 10)
    }
    fn readiness(&self) -> Option<Probe> {
        self.readiness.map(|p| self.probe(p, 0, 3, 1))
    }
    fn startup(&self) -> Probe {
        self.probe(self.startup, 10, STARTUP_FAILURE_THRESHOLD, 10)
    }
}

/// Everything that differs between the four component pods.
#[derive(Debug, Clone)]
pub(crate) struct ComponentSpec {
    pub name: &'static str,
    pub image: String,
    pub command: Vec<String>,
    pub probes: ProbeTarget,
    pub cpu: &'static str,
    pub memory: Option<&'static str>,
    pub volumes: Vec<HostVolume>,
    pub env: Vec<KEnvVar>,
    pub annotations: BTreeMap<String, String>,
    pub image_pull_policy: String,
}

/// kubeadm `staticpod.ComponentPod`.
pub(crate) fn component_pod(c: ComponentSpec) -> Pod {
    let mut requests = BTreeMap::new();
    requests.insert("cpu".to_string(), Quantity(c.cpu.to_string()));
    if let Some(m) = c.memory {
        requests.insert("memory".to_string(), Quantity(m.to_string()));
    }
    let mounts = c
        .volumes
        .iter()
        .map(|v| VolumeMount {
            name: v.name.clone(),
            mount_path: v.mount_path.clone(),
            read_only: v.read_only.then_some(true),
            ..Default::default()
        })
        .collect();
    let volumes = c
        .volumes
        .iter()
        .map(|v| Volume {
            name: v.name.clone(),
            host_path: Some(HostPathVolumeSource {
                path: v.host_path.clone(),
                type_: v.path_type.clone(),
            }),
            ..Default::default()
        })
        .collect();
    let ports = c.probes.named_port.then(|| {
        vec![ContainerPort {
            name: Some(PROBE_PORT_NAME.to_string()),
            container_port: c.probes.port,
            protocol: Some("TCP".to_string()),
            ..Default::default()
        }]
    });
    let container = Container {
        name: c.name.to_string(),
        image: Some(c.image),
        image_pull_policy: Some(c.image_pull_policy),
        command: Some(c.command),
        env: (!c.env.is_empty()).then_some(c.env),
        ports,
        liveness_probe: Some(c.probes.liveness()),
        readiness_probe: c.probes.readiness(),
        startup_probe: Some(c.probes.startup()),
        resources: Some(ResourceRequirements {
            requests: Some(requests),
            ..Default::default()
        }),
        volume_mounts: Some(mounts),
        ..Default::default()
    };
    let mut labels = BTreeMap::new();
    labels.insert("component".to_string(), c.name.to_string());
    labels.insert("tier".to_string(), "control-plane".to_string());
    Pod {
        metadata: ObjectMeta {
            name: Some(c.name.to_string()),
            namespace: Some("kube-system".to_string()),
            labels: Some(labels),
            annotations: (!c.annotations.is_empty()).then_some(c.annotations),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![container],
            host_network: Some(true),
            priority: Some(2_000_001_000),
            priority_class_name: Some("system-node-critical".to_string()),
            security_context: Some(PodSecurityContext {
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".to_string(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            volumes: Some(volumes),
            ..Default::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(n: &str, v: &str) -> Arg {
        arg(n, v)
    }

    #[test]
    fn merge_args_overrides_by_name_and_sorts() {
        let defaults = vec![
            a("secure-port", "6443"),
            a("allow-privileged", "true"),
            a("v", "0"),
        ];
        let overrides = [
            a("v", "4"),
            a("admission-control-config-file", "/x"),
            a("v", "5"),
        ];
        let merged = merge_args(defaults, &overrides);
        let cmd = command("kube-apiserver", &merged);
        assert_eq!(
            cmd,
            [
                "kube-apiserver",
                "--admission-control-config-file=/x",
                "--allow-privileged=true",
                "--secure-port=6443",
                "--v=4",
                "--v=5"
            ]
        );
        assert_eq!(arg_value(&merged, "v"), Some("5"));
        assert_eq!(arg_value(&merged, "nope"), None);
    }

    #[test]
    fn host_inputs_detect_reads_root_and_proxy_env() {
        let root =
            std::env::temp_dir().join(format!("kubeboot-manifests-hi-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("usr/share/ca-certificates")).unwrap();
        let paths = Paths::new(&root);
        let env = vec![
            ("HTTPS_PROXY".to_string(), "http://p:3128".to_string()),
            ("no_proxy".to_string(), "10.0.0.0/8".to_string()),
            ("PATH".to_string(), "/bin".to_string()),
        ];
        let hi = HostInputs::detect(&paths, env);
        assert_eq!(hi.ca_trust_dirs, ["/usr/share/ca-certificates"]);
        let names: Vec<_> = hi.proxy_env.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["HTTPS_PROXY", "no_proxy"]);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn extra_envs_override_proxy_env() {
        let proxy = [EnvVar {
            name: "HTTP_PROXY".into(),
            value: "a".into(),
        }];
        let extra = [
            EnvVar {
                name: "HTTP_PROXY".into(),
                value: "b".into(),
            },
            EnvVar {
                name: "GOMAXPROCS".into(),
                value: "2".into(),
            },
        ];
        let env = merge_env(&proxy, &extra);
        assert_eq!(env.len(), 2);
        assert_eq!(env[0].name, "GOMAXPROCS");
        assert_eq!(env[1].value.as_deref(), Some("b"));
    }

    #[test]
    fn workers_have_no_static_pods() {
        let s = crate::config::examples::worker();
        assert!(render_all(&s, &HostInputs::default()).is_empty());
    }
}
