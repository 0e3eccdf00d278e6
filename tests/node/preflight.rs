//! Preflight: every check passes on a healthy fake root and fails (with
//! kubeadm's name and severity) when one thing about that root is broken.

#[allow(unused_imports)]
use crate::node_common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::Path;

use kubeboot::config::model::Settings;
use kubeboot::host::Paths;
use kubeboot::host::fs::Sync;
use kubeboot::phases::preflight::{self, HostProbes, PreflightReport, Probes, Severity};
use node_common::{TempRoot, settings};

const TCP_HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";

/// A fake root that passes every check, with a live CRI socket.
struct Host {
    root: TempRoot,
    _cri: Option<UnixListener>,
}

impl Host {
    fn healthy(name: &str) -> Host {
        let root = TempRoot::new(&format!("pf-{name}"));
        root.file("proc/net/tcp", TCP_HEADER);
        root.file("proc/net/tcp6", TCP_HEADER);
        root.file("proc/sys/kernel/osrelease", "6.1.0-18-amd64\n");
        root.file(
            "proc/cpuinfo",
            "processor\t: 0\nmodel name\t: x\n\nprocessor\t: 1\n\nprocessor\t: 2\n",
        );
        root.file(
            "proc/meminfo",
            "MemTotal:        4030000 kB\nMemFree:  100 kB\n",
        );
        root.file(
            "sys/fs/cgroup/cgroup.controllers",
            "cpuset cpu io memory hugetlb pids rdma misc\n",
        );
        root.file("proc/sys/net/ipv4/ip_forward", "1\n");
        root.file("proc/sys/net/ipv6/conf/default/forwarding", "1\n");
        root.file("proc/sys/net/bridge/bridge-nf-call-iptables", "1\n");
        root.file(
            "proc/swaps",
            "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n",
        );
        root.file(
            "usr/lib/systemd/system/kubelet.service",
            "[Service]\nExecStart=/usr/bin/kubelet\n",
        );
        for tool in [
            "ip", "iptables", "mount", "nsenter", "ebtables", "ethtool", "socat", "tc", "touch",
        ] {
            root.file(&format!("usr/sbin/{tool}"), "");
        }
        let h = Host { root, _cri: None };
        h.kubelet("Kubernetes v1.34.1");
        let sock = h.root.path().join("var/run/containerd/containerd.sock");
        std::fs::create_dir_all(sock.parent().unwrap()).unwrap();
        Host {
            _cri: Some(UnixListener::bind(&sock).unwrap()),
            ..h
        }
    }

    fn kubelet(&self, version_line: &str) {
        let p = self.root.file(
            "usr/bin/kubelet",
            &format!("#!/bin/sh\necho '{version_line}'\n"),
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn file(&self, rel: &str, body: &str) {
        self.root.file(rel, body);
    }

    fn remove(&self, rel: &str) {
        let p = self.root.path().join(rel);
        if p.is_dir() {
            std::fs::remove_dir_all(p).unwrap();
        } else {
            std::fs::remove_file(p).unwrap();
        }
    }

    fn paths(&self) -> Paths {
        Paths::new(self.root.path())
    }

    fn run(&self, s: &Settings, ignore: &[&str]) -> PreflightReport {
        self.run_with_caps(s, ignore, vec![])
    }

    fn run_with_caps(
        &self,
        s: &Settings,
        ignore: &[&str],
        missing: Vec<String>,
    ) -> PreflightReport {
        self.run_probes(s, ignore, missing, &[])
    }

    fn run_with_proxy_env(&self, s: &Settings, env: &[(&str, &str)]) -> PreflightReport {
        self.run_probes(s, &[], vec![], env)
    }

    fn run_probes(
        &self,
        s: &Settings,
        ignore: &[&str],
        missing: Vec<String>,
        env: &[(&str, &str)],
    ) -> PreflightReport {
        let probes = FakeCaps {
            inner: HostProbes::new(&self.paths()),
            missing,
            proxy_env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let ignore: Vec<String> = ignore.iter().map(|s| s.to_string()).collect();
        preflight::run(s, &self.paths(), &probes, &ignore)
    }
}

/// The real probes, except for the capability set and the process
/// environment (the test runner's own proxy variables must not leak in).
struct FakeCaps {
    inner: HostProbes,
    missing: Vec<String>,
    proxy_env: Vec<(String, String)>,
}

impl Probes for FakeCaps {
    fn port_in_use(&self, port: u16) -> Result<bool, String> {
        self.inner.port_in_use(port)
    }
    fn cri_answers(&self, socket: &Path) -> Result<(), String> {
        self.inner.cri_answers(socket)
    }
    fn kubelet_version(&self, binary: &Path) -> Result<String, String> {
        self.inner.kubelet_version(binary)
    }
    fn missing_capabilities(&self) -> Vec<String> {
        self.missing.clone()
    }
    fn kernel_release(&self) -> String {
        self.inner.kernel_release()
    }
    fn num_cpus(&self) -> usize {
        self.inner.num_cpus()
    }
    fn total_memory_bytes(&self) -> u64 {
        self.inner.total_memory_bytes()
    }
    fn proxy_env(&self) -> Vec<(String, String)> {
        self.proxy_env.clone()
    }
    fn firewalld_running(&self) -> bool {
        self.inner.firewalld_running()
    }
}

fn assert_finding(r: &PreflightReport, check: &str, severity: Severity, needle: &str) {
    let f = r
        .finding(check)
        .unwrap_or_else(|| panic!("no finding for {check}; findings: {:#?}", r.findings));
    assert_eq!(f.severity, severity, "{f}");
    assert!(
        f.message.contains(needle),
        "{check}: {:?} does not contain {needle:?}",
        f.message
    );
    // exactly one thing was broken
    assert_eq!(
        r.findings.len(),
        1,
        "unexpected extra findings: {:#?}",
        r.findings
    );
}

#[test]
fn healthy_control_plane_passes_every_check() {
    let h = Host::healthy("cp-ok");
    let r = h.run(&settings::control_plane(), &[]);
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    for name in [
        "IsPrivilegedUser",
        "NumCPU",
        "Mem",
        "KubernetesVersion",
        "SystemVerification",
        "Hostname",
        "Port-10250",
        "Port-6443",
        "Port-10259",
        "Port-10257",
        "Port-2379",
        "Port-2380",
        "Port-2381",
        "FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml",
        "DirAvailable--etc-kubernetes-manifests",
        "DirAvailable--var-lib-etcd",
        "FileContent--proc-sys-net-ipv4-ip_forward",
        "FileContent--proc-sys-net-bridge-bridge-nf-call-iptables",
        "Swap",
        "CRI",
        "KubeletVersion",
        "Service-Kubelet",
        "FileExisting-iptables",
        "FileExisting-socat",
    ] {
        assert!(
            r.checks.iter().any(|c| c == name),
            "check {name} did not run: {:?}",
            r.checks
        );
    }
    assert!(r.into_result().is_ok());
}

#[test]
fn healthy_worker_runs_only_worker_checks() {
    let h = Host::healthy("worker-ok");
    h.file("proc/cpuinfo", "processor\t: 0\n");
    let r = h.run(&settings::worker(), &[]);
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    for absent in [
        "NumCPU",
        "Mem",
        "Port-6443",
        "Port-2379",
        "DirAvailable--var-lib-etcd",
    ] {
        assert!(
            !r.checks.iter().any(|c| c == absent),
            "{absent} ran on a worker"
        );
    }
    for present in [
        "Port-10250",
        "FileAvailable--etc-kubernetes-kubelet.conf",
        "FileAvailable--etc-kubernetes-bootstrap-kubelet.conf",
        "FileAvailable--etc-kubernetes-pki-ca.crt",
    ] {
        assert!(
            r.checks.iter().any(|c| c == present),
            "{present} did not run"
        );
    }
}

#[test]
fn capabilities() {
    let h = Host::healthy("caps");
    let r = h.run_with_caps(
        &settings::control_plane(),
        &[],
        vec!["CAP_DAC_OVERRIDE".into()],
    );
    assert_finding(&r, "IsPrivilegedUser", Severity::Error, "CAP_DAC_OVERRIDE");
}

#[test]
fn cpu_and_memory() {
    let h = Host::healthy("cpu");
    h.file("proc/cpuinfo", "processor\t: 0\n");
    assert_finding(
        &h.run(&settings::control_plane(), &[]),
        "NumCPU",
        Severity::Error,
        "1 is less than the required 2",
    );
    let h = Host::healthy("mem");
    h.file("proc/meminfo", "MemTotal:        1000000 kB\n");
    assert_finding(
        &h.run(&settings::control_plane(), &[]),
        "Mem",
        Severity::Error,
        "976 MB",
    );
}

#[test]
fn kubernetes_version_out_of_range_warns() {
    let h = Host::healthy("kver");
    h.kubelet("Kubernetes v1.40.0");
    let mut s = settings::control_plane();
    s.cluster.kubernetes_version = "v1.40.0".into();
    assert_finding(
        &h.run(&s, &[]),
        "KubernetesVersion",
        Severity::Warning,
        "outside the supported",
    );
}

#[test]
fn kernel_and_cgroups() {
    // Kubernetes 1.32/1.33 vendor system-validators v1.9: below 4.19 is an
    // error; 1.34 vendors v1.10.1+: outside 5.4/5.10/5.15/6.x only a warning
    // (kubernetes PR #131919)
    let h = Host::healthy("kernel");
    let mut v133 = settings::control_plane();
    v133.cluster.kubernetes_version = "v1.33.4".into();
    let v134 = settings::control_plane();
    assert!(v134.cluster.kubernetes_version.starts_with("v1.34."));
    for (release, s, severity, needle) in [
        (
            "4.14.0-old",
            &v133,
            Some(Severity::Error),
            "older than the required 4.19",
        ),
        (
            "4.18.0-553.el8_10.x86_64",
            &v133,
            Some(Severity::Error),
            "4.18.0-553",
        ),
        ("4.19.0-27-amd64", &v133, None, ""),
        ("5.14.0-427.el9.x86_64", &v133, None, ""),
        (
            "4.14.0-old",
            &v134,
            Some(Severity::Warning),
            "not one the Kubernetes system validators support",
        ),
        (
            "5.14.0-427.el9.x86_64",
            &v134,
            Some(Severity::Warning),
            "5.14.0-427",
        ),
        ("5.15.0-1-generic", &v134, None, ""),
    ] {
        h.file("proc/sys/kernel/osrelease", &format!("{release}\n"));
        h.kubelet(&format!("Kubernetes {}", s.cluster.kubernetes_version));
        let r = h.run(s, &[]);
        match severity {
            Some(sev) => assert_finding(&r, "SystemVerification", sev, needle),
            None => assert!(r.findings.is_empty(), "{release}: {:#?}", r.findings),
        }
    }
    let h = Host::healthy("cg-ctrl");
    h.file("sys/fs/cgroup/cgroup.controllers", "cpu io memory\n");
    assert_finding(
        &h.run(&settings::control_plane(), &[]),
        "SystemVerification",
        Severity::Error,
        "cpuset, pids",
    );
    let h = Host::healthy("cg-v1");
    h.remove("sys/fs/cgroup/cgroup.controllers");
    assert_finding(
        &h.run(&settings::control_plane(), &[]),
        "SystemVerification",
        Severity::Warning,
        "cgroup v1",
    );
}

#[test]
fn node_name_must_be_rfc1123() {
    let h = Host::healthy("hostname");
    let mut s = settings::control_plane();
    s.node.name = "Control_Plane".into();
    assert_finding(&h.run(&s, &[]), "Hostname", Severity::Error, "RFC 1123");
}

fn listening(port: u16) -> String {
    format!(
        "{TCP_HEADER}   0: 00000000:{port:04X} 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n"
    )
}

#[test]
fn ports_in_use() {
    for port in [6443u16, 10250, 10257, 10259, 2379, 2380, 2381] {
        let h = Host::healthy(&format!("port-{port}"));
        h.file("proc/net/tcp6", &listening(port));
        assert_finding(
            &h.run(&settings::control_plane(), &[]),
            &format!("Port-{port}"),
            Severity::Error,
            "in use",
        );
    }
    // a worker does not care about the API server port
    let h = Host::healthy("port-worker");
    h.file("proc/net/tcp", &listening(6443));
    assert!(h.run(&settings::worker(), &[]).findings.is_empty());
}

#[test]
fn port_probe_binds_when_there_is_no_procfs() {
    let root = TempRoot::new("pf-bind");
    let probes = HostProbes::new(&Paths::new(root.path()));
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    assert!(probes.port_in_use(port).unwrap());
    drop(l);
    assert!(!probes.port_in_use(port).unwrap());
}

#[test]
fn manifests_dir_empty_or_ours() {
    let s = settings::control_plane();
    let h = Host::healthy("manifests-ours");
    let host = kubeboot::manifests::HostInputs::detect(&h.paths(), std::env::vars());
    kubeboot::manifests::write_pods(
        &h.paths(),
        &kubeboot::manifests::render_all(&s, &host),
        Sync::Deferred,
    )
    .unwrap();
    assert!(
        h.run(&s, &[]).findings.is_empty(),
        "our own manifests must pass (rerun)"
    );
    let h = Host::healthy("manifests-foreign");
    h.file(
        "etc/kubernetes/manifests/kube-apiserver.yaml",
        "apiVersion: v1\nkind: Pod\n",
    );
    assert_finding(
        &h.run(&s, &[]),
        "FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml",
        Severity::Error,
        "not the manifest kubeboot would write",
    );
    let h = Host::healthy("manifests-stray");
    h.file("etc/kubernetes/manifests/haproxy.yaml", "x");
    assert_finding(
        &h.run(&s, &[]),
        "DirAvailable--etc-kubernetes-manifests",
        Severity::Error,
        "haproxy.yaml",
    );
}

#[test]
fn etcd_data_dir_must_be_empty() {
    let h = Host::healthy("etcd-empty");
    std::fs::create_dir_all(h.root.path().join("var/lib/etcd")).unwrap();
    assert!(h.run(&settings::control_plane(), &[]).findings.is_empty());
    h.file("var/lib/etcd/member/snap/db", "x");
    assert_finding(
        &h.run(&settings::control_plane(), &[]),
        "DirAvailable--var-lib-etcd",
        Severity::Error,
        "not empty",
    );
}

#[test]
fn join_files_must_not_exist() {
    for (rel, check) in [
        (
            "etc/kubernetes/kubelet.conf",
            "FileAvailable--etc-kubernetes-kubelet.conf",
        ),
        (
            "etc/kubernetes/bootstrap-kubelet.conf",
            "FileAvailable--etc-kubernetes-bootstrap-kubelet.conf",
        ),
        (
            "etc/kubernetes/pki/ca.crt",
            "FileAvailable--etc-kubernetes-pki-ca.crt",
        ),
    ] {
        let h = Host::healthy(&format!("join-{}", check.len()));
        h.file(rel, "x");
        assert_finding(
            &h.run(&settings::worker(), &[]),
            check,
            Severity::Error,
            "already exists",
        );
    }
}

#[test]
fn forwarding_sysctls() {
    let h = Host::healthy("fwd4");
    h.file("proc/sys/net/ipv4/ip_forward", "0\n");
    assert_finding(
        &h.run(&settings::control_plane(), &[]),
        "FileContent--proc-sys-net-ipv4-ip_forward",
        Severity::Error,
        "not set to 1",
    );
    let h = Host::healthy("fwd6");
    h.file("proc/sys/net/ipv6/conf/default/forwarding", "0\n");
    let mut s = settings::control_plane();
    s.node.advertise_address = "fd00::11".parse().unwrap();
    s.cluster.service_subnets = vec!["fd00:10::/108".parse().unwrap()];
    s.cluster.pod_subnets = vec!["fd00:20::/64".parse().unwrap()];
    let r = h.run(&s, &[]);
    assert!(
        !r.checks.iter().any(|c| c.contains("ipv4")),
        "IPv6-only must not check ip_forward"
    );
    assert_finding(
        &r,
        "FileContent--proc-sys-net-ipv6-conf-default-forwarding",
        Severity::Error,
        "not set to 1",
    );
}

#[test]
fn bridge_netfilter_warns() {
    let h = Host::healthy("brnf");
    h.remove("proc/sys/net/bridge");
    assert_finding(
        &h.run(&settings::control_plane(), &[]),
        "FileContent--proc-sys-net-bridge-bridge-nf-call-iptables",
        Severity::Warning,
        "br_netfilter",
    );
}

#[test]
fn swap_warns() {
    let h = Host::healthy("swap");
    h.file(
        "proc/swaps",
        "Filename Type Size Used Priority\n/swapfile file 1048572 0 -2\n",
    );
    assert_finding(
        &h.run(&settings::control_plane(), &[]),
        "Swap",
        Severity::Warning,
        "swap",
    );
}

#[test]
fn cri_socket_must_answer() {
    let mut h = Host::healthy("cri");
    h._cri = None; // closes the listener
    assert_finding(
        &h.run(&settings::control_plane(), &[]),
        "CRI",
        Severity::Error,
        "containerd.sock",
    );
}

#[test]
fn kubelet_binary_and_version_skew() {
    for (line, needle) in [
        ("Kubernetes v1.30.2", "too old"),
        ("Kubernetes v1.35.0", "newer than the control plane"),
        ("garbage", "cannot parse"),
    ] {
        let h = Host::healthy(&format!("kubelet-{}", line.len()));
        h.kubelet(line);
        assert_finding(
            &h.run(&settings::control_plane(), &[]),
            "KubeletVersion",
            Severity::Error,
            needle,
        );
    }
    let h = Host::healthy("kubelet-skew-ok");
    h.kubelet("Kubernetes v1.31.9");
    assert!(
        h.run(&settings::control_plane(), &[]).findings.is_empty(),
        "minor - 3 is within skew"
    );
    let h = Host::healthy("kubelet-missing");
    h.remove("usr/bin/kubelet");
    assert_finding(
        &h.run(&settings::control_plane(), &[]),
        "KubeletVersion",
        Severity::Error,
        "kubelet not found",
    );
}

#[test]
fn kubelet_unit_must_be_installed() {
    let h = Host::healthy("unit");
    h.remove("usr/lib/systemd/system/kubelet.service");
    assert_finding(
        &h.run(&settings::control_plane(), &[]),
        "Service-Kubelet",
        Severity::Warning,
        "kubelet.service",
    );
}

#[test]
fn required_and_optional_tools() {
    let h = Host::healthy("tool-ip");
    h.remove("usr/sbin/ip");
    assert_finding(
        &h.run(&settings::control_plane(), &[]),
        "FileExisting-ip",
        Severity::Error,
        "ip not found",
    );
    let h = Host::healthy("tool-socat");
    h.remove("usr/sbin/socat");
    assert_finding(
        &h.run(&settings::control_plane(), &[]),
        "FileExisting-socat",
        Severity::Warning,
        "socat",
    );
}

#[test]
fn ignore_list_downgrades_errors() {
    let h = Host::healthy("ignore");
    h.file("proc/net/tcp", &listening(6443));
    h.file("proc/cpuinfo", "processor\t: 0\n");
    let r = h.run(&settings::control_plane(), &[]);
    assert_eq!(r.errors().count(), 2);
    let err = r.into_result().unwrap_err().to_string();
    assert!(
        err.contains("[ERROR Port-6443]")
            && err.contains("[ERROR NumCPU]")
            && err.contains("--ignore-preflight-errors"),
        "{err}"
    );

    let r = h.run(&settings::control_plane(), &["port-6443"]);
    let f = r.finding("Port-6443").unwrap();
    assert!(f.ignored && f.severity == Severity::Warning);
    assert!(
        f.to_string().starts_with("[WARNING Port-6443]: ") && f.to_string().ends_with("(ignored)")
    );
    assert!(!r.is_ok(), "NumCPU still fails");

    // from the config, and `all`
    let mut s = settings::control_plane();
    s.node.ignore_preflight_errors = vec!["NumCPU".into()];
    assert!(!h.run(&s, &[]).is_ok());
    assert!(h.run(&s, &["Port-6443"]).is_ok());
    assert!(h.run(&settings::control_plane(), &["all"]).is_ok());
}

#[test]
fn firewalld_running_warns_with_the_ports_to_open() {
    let h = Host::healthy("firewalld");
    h.file("proc/1/comm", "systemd\n");
    h.file("proc/self/comm", "kubeboot\n");
    let s = settings::control_plane();
    assert!(h.run(&s, &[]).is_ok(), "no firewalld process, no finding");
    h.file("proc/812/comm", "firewalld\n");
    assert!(
        h.run(&s, &[]).is_ok() && h.run(&s, &[]).findings.is_empty(),
        "firewalld not installed: not looked for"
    );
    h.file("usr/sbin/firewalld", "#!/usr/bin/python3\n");
    let r = h.run(&s, &[]);
    assert_finding(
        &r,
        "Firewalld",
        Severity::Warning,
        "ports [6443, 10250] are open",
    );
    assert!(r.is_ok(), "a warning does not stop the node");
    let r = h.run(&settings::worker(), &[]);
    assert_finding(&r, "Firewalld", Severity::Warning, "ports [10250] are open");
}

#[test]
fn proxy_for_the_api_server_and_cluster_ranges_warns() {
    let h = Host::healthy("proxy");
    let cp = settings::control_plane();
    let proxy = ("HTTPS_PROXY", "http://user:pw@proxy.corp:3128");
    // a proxy that every cluster address is exempt from: no finding
    let r = h.run_with_proxy_env(
        &cp,
        &[
            proxy,
            ("NO_PROXY", "10.0.0.0/8,192.168.0.0/16,.svc,.cluster.local"),
        ],
    );
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    // the advertise address exempt, the service and pod ranges not
    let adv = cp.node.advertise_address.to_string();
    let r = h.run_with_proxy_env(&cp, &[proxy, ("no_proxy", &adv)]);
    let f = r.finding("HTTPProxyCIDR").expect("HTTPProxyCIDR finding");
    assert_eq!(f.severity, Severity::Warning);
    assert!(f.message.contains("https://10.96.0.1:443"), "{}", f.message);
    assert!(
        f.message.contains("add 10.96.0.0/12 to NO_PROXY"),
        "{}",
        f.message
    );
    assert!(r.finding("HTTPProxy").is_none(), "{:#?}", r.findings);
    assert!(
        !format!("{:?}", r.findings).contains("pw@"),
        "proxy credentials leaked"
    );
    // nothing exempt: the API server too
    let r = h.run_with_proxy_env(&cp, &[proxy]);
    let f = r.finding("HTTPProxy").expect("HTTPProxy finding");
    assert!(
        f.message.contains(&format!("https://{adv}:6443")),
        "{}",
        f.message
    );
    assert!(
        f.message.contains("http://<redacted>@proxy.corp:3128"),
        "{}",
        f.message
    );
    assert!(r.is_ok(), "proxy findings are warnings");
    // a worker checks the discovery endpoint and no ranges
    let w = settings::worker();
    let r = h.run_with_proxy_env(&w, &[proxy]);
    let j = w.join.as_ref().unwrap();
    let f = r
        .finding("HTTPProxy")
        .expect("HTTPProxy finding for the worker");
    assert!(
        f.message.contains(&j.api_server_endpoint.url()),
        "{}",
        f.message
    );
    assert!(r.finding("HTTPProxyCIDR").is_none());
    // and a proxy only for http changes nothing for https
    let r = h.run_with_proxy_env(&w, &[("HTTP_PROXY", "http://proxy.corp:3128")]);
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
}
