//! The kubelet's files, as kubeadm writes them for the stock kubelet
//! packages' `10-kubeadm.conf` drop-in: `/var/lib/kubelet/config.yaml`
//! (KubeletConfiguration), `/var/lib/kubelet/kubeadm-flags.env`
//! (`KUBELET_KUBEADM_ARGS`) and, where the version enables
//! `NodeLocalCRISocket`, `/var/lib/kubelet/instance-config.yaml`; plus the
//! systemd sequence that (re)starts the kubelet.
//!
//! The renderers are pure functions of [`Settings`] and the host facts in
//! [`Detected`] (cgroup driver, swap, hostname, resolv.conf), so the config
//! matches the host instead of failing on it.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::config::model::{Arg, Mode, Settings, Taint};
use crate::error::{Error, Result};
use crate::host::Paths;
use crate::host::detect::Detected;
use crate::host::fs::{Sync, create_dir_all, write_atomic};
use crate::host::systemd::InitSystem;
use crate::manifests::{self, versions};

/// The kubelet's systemd unit.
pub const KUBELET_UNIT: &str = "kubelet.service";
/// `/var/lib/kubelet/config.yaml`.
pub const CONFIG_FILE: &str = "config.yaml";
/// `/var/lib/kubelet/kubeadm-flags.env`.
pub const FLAGS_FILE: &str = "kubeadm-flags.env";
/// `/var/lib/kubelet/instance-config.yaml`.
pub const INSTANCE_CONFIG_FILE: &str = "instance-config.yaml";
/// Used when the service subnet cannot give a DNS address (kubeadm's fallback).
pub const DEFAULT_CLUSTER_DNS: &str = "10.96.0.10";
/// The `NodeLocalCRISocket` kubeadm feature gate.
pub const NODE_LOCAL_CRI_SOCKET: &str = "NodeLocalCRISocket";

/// Whether the CRI socket goes to instance-config.yaml (gate on) rather
/// than to `--container-runtime-endpoint`: the version's default, unless
/// the config's feature gates say otherwise.
pub fn node_local_cri_socket(s: &Settings) -> bool {
    gate(s, NODE_LOCAL_CRI_SOCKET, |f| f.node_local_cri_socket)
}

/// The `ControlPlaneKubeletLocalMode` kubeadm feature gate.
pub const CONTROL_PLANE_KUBELET_LOCAL_MODE: &str = "ControlPlaneKubeletLocalMode";

/// Whether a control-plane node's kubelet uses its own API server
/// (`https://<advertiseAddress>:<bindPort>`) rather than the control-plane
/// endpoint: in init's kubelet.conf and in a control-plane join's
/// bootstrap-kubelet.conf. The version's default unless `featureGates` says.
pub fn control_plane_kubelet_local_mode(s: &Settings) -> bool {
    gate(s, CONTROL_PLANE_KUBELET_LOCAL_MODE, |f| {
        f.control_plane_kubelet_local_mode
    })
}

/// The API server a joining node's kubelet bootstraps through
/// (bootstrap-kubelet.conf), as kubeadm's join `kubelet-start`: with
/// ControlPlaneKubeletLocalMode a joining control plane uses its own API
/// server (started from its static pods before the TLS bootstrap is awaited),
/// otherwise the discovered endpoint (`cmd/kubeadm/app/cmd/phases/join/kubelet.go`,
/// v1.33.0).
pub fn bootstrap_server(s: &Settings, discovered: &str) -> String {
    if s.mode.is_control_plane() && control_plane_kubelet_local_mode(s) {
        s.local_endpoint().url()
    } else {
        discovered.to_string()
    }
}

/// A kubeadm feature gate: the config's `featureGates` entry (the last one
/// wins), else the version's default.
fn gate(s: &Settings, name: &str, default: fn(&versions::VersionFacts) -> bool) -> bool {
    s.cluster
        .feature_gates
        .iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, on)| *on)
        .unwrap_or_else(|| default(versions::facts(&s.cluster.kubernetes_version)))
}

/// The pause image, `<imageRepository>/pause:<tag>`.
pub fn pause_image(s: &Settings) -> String {
    format!(
        "{}/pause:{}",
        s.cluster.image_repository.trim_end_matches('/'),
        versions::facts(&s.cluster.kubernetes_version).pause_tag
    )
}

/// The KubeletConfiguration value kubeadm writes (keys sorted, zero
/// durations spelled `0s` as Go's marshaller does).
pub fn config_value(s: &Settings, det: &Detected) -> Value {
    let dns = s
        .cluster_dns_ip()
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| DEFAULT_CLUSTER_DNS.to_string());
    let cert_dir = s.cluster.certificates_dir.trim_end_matches('/');
    let runtime_endpoint = if node_local_cri_socket(s) {
        s.node.cri_socket.clone()
    } else {
        String::new()
    };
    let mut v = json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "authentication": {
            "anonymous": { "enabled": false },
            "webhook": { "cacheTTL": "0s", "enabled": true },
            "x509": { "clientCAFile": format!("{cert_dir}/ca.crt") },
        },
        "authorization": {
            "mode": "Webhook",
            "webhook": { "cacheAuthorizedTTL": "0s", "cacheUnauthorizedTTL": "0s" },
        },
        "cgroupDriver": det.cgroup_driver.as_str(),
        "clusterDNS": [dns],
        "clusterDomain": s.cluster.dns_domain,
        "containerRuntimeEndpoint": runtime_endpoint,
        "cpuManagerReconcilePeriod": "0s",
        "crashLoopBackOff": {},
        "evictionPressureTransitionPeriod": "0s",
        "fileCheckFrequency": "0s",
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "httpCheckFrequency": "0s",
        "imageMaximumGCAge": "0s",
        "imageMinimumGCAge": "0s",
        "logging": {
            "flushFrequency": 0,
            "options": { "json": { "infoBufferSize": "0" }, "text": { "infoBufferSize": "0" } },
            "verbosity": 0,
        },
        "memorySwap": {},
        "nodeStatusReportFrequency": "0s",
        "nodeStatusUpdateFrequency": "0s",
        "rotateCertificates": true,
        "runtimeRequestTimeout": "0s",
        "shutdownGracePeriod": "0s",
        "shutdownGracePeriodCriticalPods": "0s",
        "staticPodPath": "/etc/kubernetes/manifests",
        "streamingConnectionIdleTimeout": "0s",
        "syncFrequency": "0s",
        "volumeStatsAggPeriod": "0s",
    });
    if let Some(obj) = v.as_object_mut() {
        if let Some(r) = &det.resolv_conf {
            obj.insert("resolvConf".into(), json!(r));
        }
        if det.swap_on {
            // Derive, don't demand: run with swap on instead of refusing to
            // start; pods get no swap (NoSwap is only meaningful on cgroup v2).
            obj.insert("failSwapOn".into(), json!(false));
            if det.cgroup_version == 2 {
                obj.insert("memorySwap".into(), json!({ "swapBehavior": "NoSwap" }));
            }
        }
    }
    // The user's KubeletConfiguration over these defaults, as kubeadm's
    // init: what it sets is kept, the rest filled in; certificate rotation
    // stays on (kubeadm forces it: `componentconfigs/kubelet.go`, `Default()`).
    if let Some(user) = &s.components.kubelet {
        crate::config::component::merge_over(&mut v, user);
        if let Some(obj) = v.as_object_mut() {
            obj.insert("rotateCertificates".into(), json!(true));
        }
    }
    v
}

/// `/var/lib/kubelet/config.yaml`.
pub fn config_yaml(s: &Settings, det: &Detected) -> Result<String> {
    crate::yaml::to_string(&config_value(s, det))
        .map_err(|e| Error::Failed(format!("serializing KubeletConfiguration: {e}")))
}

/// `/var/lib/kubelet/instance-config.yaml`, when the version (or the
/// `NodeLocalCRISocket` gate) keeps the CRI socket there.
pub fn instance_config(s: &Settings) -> Option<String> {
    node_local_cri_socket(s).then(|| {
        format!(
            "containerRuntimeEndpoint: {}\n",
            go_quote(&s.node.cri_socket)
        )
    })
}

fn taint_string(t: &Taint) -> String {
    match &t.value {
        Some(v) if !v.is_empty() => format!("{}={}:{}", t.key, v, t.effect),
        _ => format!("{}:{}", t.key, t.effect),
    }
}

/// The kubelet flags kubeadm passes, merged with `kubeletExtraArgs`
/// (which replace defaults of the same name), sorted by name.
pub fn flags(s: &Settings, det: &Detected) -> Vec<Arg> {
    let f = versions::facts(&s.cluster.kubernetes_version);
    let mut defaults = Vec::new();
    if !node_local_cri_socket(s) {
        defaults.push(manifests::arg(
            "container-runtime-endpoint",
            s.node.cri_socket.clone(),
        ));
    }
    if f.pod_infra_flag {
        defaults.push(manifests::arg("pod-infra-container-image", pause_image(s)));
    }
    let hostname = det.hostname.as_deref().map(str::to_ascii_lowercase);
    if hostname.as_deref() != Some(s.node.name.as_str()) {
        defaults.push(manifests::arg("hostname-override", s.node.name.clone()));
    }
    // Control planes get their taints from mark-control-plane; only a
    // worker join registers with them.
    if s.mode == Mode::JoinWorker && !s.node.taints.is_empty() {
        let taints: Vec<String> = s.node.taints.iter().map(taint_string).collect();
        defaults.push(manifests::arg("register-with-taints", taints.join(",")));
    }
    manifests::merge_args(defaults, &s.node.kubelet_extra_args)
}

/// `/var/lib/kubelet/kubeadm-flags.env`: one `KUBELET_KUBEADM_ARGS="..."` line.
pub fn flags_env(s: &Settings, det: &Detected) -> String {
    let line: Vec<String> = flags(s, det)
        .iter()
        .map(|a| format!("--{}={}", a.name, a.value))
        .collect();
    format!("KUBELET_KUBEADM_ARGS={}\n", go_quote(&line.join(" ")))
}

/// Go's `%q`: a double-quoted string with `"` and `\` escaped and control
/// characters written as escapes (systemd's EnvironmentFile reads the same).
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The cluster's KubeletConfiguration (from kube-system/kubelet-config, as
/// `kubeadm join` uses it), adapted to this host: the cgroup driver is set
/// to the one the local container runtime uses ("derive, don't demand").
pub fn from_cluster(doc: &str, det: &Detected) -> Result<String> {
    let mut v: Value = serde_norway::from_str(doc).map_err(|e| {
        Error::Failed(format!(
            "kube-system/kubelet-config: the kubelet document is not YAML: {e}"
        ))
    })?;
    let Some(map) = v.as_object_mut() else {
        return Err(Error::Failed(
            "kube-system/kubelet-config: the kubelet document is not a mapping".into(),
        ));
    };
    let want = det.cgroup_driver.as_str();
    if map.get("cgroupDriver").and_then(Value::as_str) != Some(want) {
        log::warn!(target: "kubelet-start", "the cluster's kubelet configuration names another cgroup driver; using {want}, which this node's container runtime uses");
        map.insert("cgroupDriver".into(), Value::from(want));
    }
    crate::yaml::to_string(&v)
        .map_err(|e| Error::Failed(format!("encoding the kubelet configuration: {e}")))
}

/// The node's `config.yaml` with kubeadm's `kubeletconfiguration` patches
/// applied (kubeadm patches the file it writes, on init and join, not the
/// kubelet-config ConfigMap: `cmd/kubeadm/app/phases/kubelet/config.go`,
/// `WriteConfigToDisk`).
pub fn patched(s: &Settings, config: String) -> Result<String> {
    const TARGET: &str = "kubeletconfiguration";
    if !s.patches.has(TARGET) {
        return Ok(config);
    }
    let mut v: Value = serde_norway::from_str(&config)
        .map_err(|e| Error::Failed(format!("reading back the kubelet configuration: {e}")))?;
    s.patches.apply(TARGET, &mut v)?;
    let errors = crate::config::component::check(crate::config::component::KUBELET_KIND, &v);
    if !errors.is_empty() {
        let list: Vec<String> = errors.iter().map(|(f, m)| format!("{f}: {m}")).collect();
        return Err(Error::Invalid(format!(
            "patches for {TARGET} ({}): the patched KubeletConfiguration is invalid: {}",
            s.patches.directory.as_deref().unwrap_or(""),
            list.join("; ")
        )));
    }
    crate::yaml::to_string(&v)
        .map_err(|e| Error::Failed(format!("encoding the kubelet configuration: {e}")))
}

/// Writes the kubelet files under `paths` (directory 0700): the flags env
/// (0644), the instance config (0644) where used, then config.yaml (0600,
/// per the design; kubeadm uses 0644): with `cluster_config` (a join),
/// the cluster's KubeletConfiguration adapted by [`from_cluster`], else one
/// derived from the settings. Returns the files written.
pub fn write_all(
    s: &Settings,
    det: &Detected,
    paths: &Paths,
    sync: Sync,
    cluster_config: Option<&str>,
) -> Result<Vec<PathBuf>> {
    let dir = paths.kubelet_dir();
    create_dir_all(paths.root(), &dir, 0o700)?;
    let mut files = vec![(dir.join(FLAGS_FILE), flags_env(s, det), 0o644)];
    if let Some(ic) = instance_config(s) {
        files.push((dir.join(INSTANCE_CONFIG_FILE), ic, 0o644));
    }
    let config = match cluster_config {
        Some(doc) => from_cluster(doc, det)?,
        None => config_yaml(s, det)?,
    };
    let config = patched(s, config)?;
    files.push((dir.join(CONFIG_FILE), config, 0o600));
    let mut written = Vec::with_capacity(files.len());
    for (path, body, mode) in files {
        write_atomic(&paths.rooted(&path), body.as_bytes(), mode, sync)?;
        written.push(path);
    }
    Ok(written)
}

/// (Re)starts the kubelet after its files were written: daemon-reload,
/// enable, `restart --no-block` (see [`crate::host::systemd`] for why it
/// never blocks).
pub fn start(init: &dyn InitSystem) -> Result<()> {
    init.daemon_reload()?;
    init.enable(KUBELET_UNIT)?;
    init.restart(KUBELET_UNIT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::examples::{control_plane, worker};
    use crate::host::detect::CgroupDriver;

    fn det(hostname: &str) -> Detected {
        Detected {
            hostname: Some(hostname.to_string()),
            ..Default::default()
        }
    }

    #[test]
    fn go_quote_escapes() {
        assert_eq!(go_quote(r#"a "b" \c"#), r#""a \"b\" \\c""#);
        assert_eq!(go_quote("x\ny\u{1}"), "\"x\\ny\\x01\"");
    }

    #[test]
    fn config_has_kubeadm_values() {
        let s = control_plane();
        let v = config_value(&s, &det("cp-1"));
        assert_eq!(v["clusterDNS"][0], "10.96.0.10");
        assert_eq!(v["clusterDomain"], "cluster.local");
        assert_eq!(v["cgroupDriver"], "systemd");
        assert_eq!(v["authentication"]["anonymous"]["enabled"], false);
        assert_eq!(v["authentication"]["webhook"]["enabled"], true);
        assert_eq!(
            v["authentication"]["x509"]["clientCAFile"],
            "/etc/kubernetes/pki/ca.crt"
        );
        assert_eq!(v["authorization"]["mode"], "Webhook");
        assert_eq!(v["rotateCertificates"], true);
        assert_eq!(v["staticPodPath"], "/etc/kubernetes/manifests");
        assert_eq!(v["healthzPort"], 10248);
        // 1.34: NodeLocalCRISocket on, the socket is in the config
        assert_eq!(
            v["containerRuntimeEndpoint"],
            "unix:///var/run/containerd/containerd.sock"
        );
        assert!(v.get("failSwapOn").is_none() && v.get("resolvConf").is_none());
    }

    #[test]
    fn config_follows_detection() {
        let s = control_plane();
        let d = Detected {
            cgroup_version: 2,
            cgroup_driver: CgroupDriver::Cgroupfs,
            swap_on: true,
            resolv_conf: Some("/run/systemd/resolve/resolv.conf".into()),
            ..Default::default()
        };
        let v = config_value(&s, &d);
        assert_eq!(v["cgroupDriver"], "cgroupfs");
        assert_eq!(v["failSwapOn"], false);
        assert_eq!(v["memorySwap"]["swapBehavior"], "NoSwap");
        assert_eq!(v["resolvConf"], "/run/systemd/resolve/resolv.conf");
        let v1 = config_value(
            &s,
            &Detected {
                cgroup_version: 1,
                swap_on: true,
                ..Default::default()
            },
        );
        assert_eq!(v1["failSwapOn"], false);
        assert_eq!(v1["memorySwap"], json!({}));
    }

    #[test]
    fn cluster_dns_from_service_subnet() {
        let mut s = control_plane();
        s.cluster.service_subnets = vec!["10.100.0.0/16".parse().unwrap()];
        assert_eq!(
            config_value(&s, &det("cp-1"))["clusterDNS"][0],
            "10.100.0.10"
        );
        s.cluster.service_subnets = vec![];
        assert_eq!(
            config_value(&s, &det("cp-1"))["clusterDNS"][0],
            DEFAULT_CLUSTER_DNS
        );
    }

    #[test]
    fn flags_by_version_and_role() {
        let mut s = control_plane();
        // 1.34: no --container-runtime-endpoint, hostname matches
        assert_eq!(
            flags_env(&s, &det("CP-1")),
            "KUBELET_KUBEADM_ARGS=\"--pod-infra-container-image=registry.k8s.io/pause:3.10.1\"\n"
        );
        assert!(
            instance_config(&s)
                .unwrap()
                .contains("\"unix:///var/run/containerd/containerd.sock\"")
        );
        s.cluster.kubernetes_version = "v1.33.5".into();
        assert_eq!(
            flags_env(&s, &det("other")),
            "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock \
             --hostname-override=cp-1 --pod-infra-container-image=registry.k8s.io/pause:3.10\"\n"
        );
        assert!(instance_config(&s).is_none());
        // the gate can be turned on explicitly on 1.33
        s.cluster.feature_gates = vec![(NODE_LOCAL_CRI_SOCKET.into(), true)];
        assert!(instance_config(&s).is_some());
        assert!(!flags_env(&s, &det("cp-1")).contains("container-runtime-endpoint"));

        let w = worker();
        let env = flags_env(&w, &det("worker-1"));
        assert!(
            env.contains("--register-with-taints=dedicated=gpu:NoSchedule"),
            "{env}"
        );
        assert!(env.contains("--max-pods=50"), "{env}");
        // control planes never get --register-with-taints
        assert!(!flags_env(&control_plane(), &det("cp-1")).contains("register-with-taints"));
    }

    #[test]
    fn kubelet_extra_args_override_defaults() {
        let mut s = control_plane();
        s.node.kubelet_extra_args = vec![manifests::arg(
            "pod-infra-container-image",
            "mirror/pause:1",
        )];
        let f = flags(&s, &det("cp-1"));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].value, "mirror/pause:1");
    }
}

#[cfg(test)]
mod local_mode_tests {
    use super::*;
    use crate::config::Mode;

    /// Issue 11 item 6, join side: a control-plane join bootstraps through
    /// its own API server from 1.33 on (ControlPlaneKubeletLocalMode), and
    /// through the discovered endpoint on 1.32 and on workers.
    #[test]
    fn control_plane_join_bootstraps_through_local_api_server_from_1_33() {
        let mut s = crate::config::examples::pki_control_plane();
        s.mode = Mode::JoinControlPlane;
        let lb = "https://lb.example.test:6443";
        let local = s.local_endpoint().url();
        assert_ne!(local, lb);
        for (v, want) in [
            ("v1.32.5", lb),
            ("v1.33.4", local.as_str()),
            ("v1.34.1", local.as_str()),
        ] {
            s.cluster.kubernetes_version = v.into();
            assert_eq!(bootstrap_server(&s, lb), want, "{v}");
        }
        s.cluster.feature_gates = vec![(CONTROL_PLANE_KUBELET_LOCAL_MODE.into(), false)];
        assert_eq!(bootstrap_server(&s, lb), lb, "gate off");
        s.cluster.kubernetes_version = "v1.32.5".into();
        s.cluster.feature_gates = vec![(CONTROL_PLANE_KUBELET_LOCAL_MODE.into(), true)];
        assert_eq!(bootstrap_server(&s, lb), local, "gate on");
        s.mode = Mode::JoinWorker;
        assert_eq!(bootstrap_server(&s, lb), lb, "workers never");
    }
}
