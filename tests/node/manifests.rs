//! Static pod manifests: the version table, external etcd, extra args,
//! volumes and envs, IPv6, control-plane join, and a YAML round trip of
//! every manifest back into a k8s-openapi Pod.

#[allow(unused_imports)]
use crate::node_common;

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kubeboot::config::model::{Arg, EnvVar, Etcd, ExtraVolume, Mode, Settings};
use kubeboot::manifests::{self, EtcdMember, HostInputs, versions};
use node_common::settings;

fn container(p: &Pod) -> &Container {
    &p.spec.as_ref().unwrap().containers[0]
}

fn cmd(p: &Pod) -> Vec<String> {
    container(p).command.clone().unwrap()
}

fn has(p: &Pod, flag: &str) -> bool {
    cmd(p).iter().any(|c| c == flag)
}

fn flag(p: &Pod, name: &str) -> Vec<String> {
    let prefix = format!("--{name}=");
    cmd(p)
        .iter()
        .filter_map(|c| c.strip_prefix(&prefix).map(str::to_string))
        .collect()
}

fn http(probe: &Option<Probe>) -> (String, String, IntOrString, String) {
    let g = probe.as_ref().unwrap().http_get.as_ref().unwrap();
    (
        g.host.clone().unwrap_or_default(),
        g.path.clone().unwrap(),
        g.port.clone(),
        g.scheme.clone().unwrap(),
    )
}

fn volume_names(p: &Pod) -> Vec<String> {
    p.spec
        .as_ref()
        .unwrap()
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .map(|v| v.name.clone())
        .collect()
}

fn arg(n: &str, v: &str) -> Arg {
    Arg {
        name: n.into(),
        value: v.into(),
    }
}

fn with_version(v: &str) -> Settings {
    let mut s = settings::control_plane();
    s.cluster.kubernetes_version = v.into();
    s
}

/// Every pod survives YAML and compares equal to the value it came from.
fn round_trip(s: &Settings) -> usize {
    let pods = manifests::render_all(s, &HostInputs::default());
    for (name, pod) in &pods {
        let yaml = manifests::to_yaml(pod).unwrap();
        let back: Pod =
            serde_norway::from_str(&yaml).unwrap_or_else(|e| panic!("{name}: {e}\n{yaml}"));
        assert_eq!(&back, pod, "{name} changed in the YAML round trip");
        let spec = back.spec.as_ref().unwrap();
        assert_eq!(spec.host_network, Some(true));
        assert_eq!(
            spec.priority_class_name.as_deref(),
            Some("system-node-critical")
        );
        assert_eq!(
            spec.security_context
                .as_ref()
                .unwrap()
                .seccomp_profile
                .as_ref()
                .unwrap()
                .type_,
            "RuntimeDefault"
        );
        let labels = back.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["component"], *name);
        assert_eq!(labels["tier"], "control-plane");
        assert_eq!(back.metadata.namespace.as_deref(), Some("kube-system"));
        let c = &spec.containers[0];
        assert!(
            c.resources
                .as_ref()
                .unwrap()
                .requests
                .as_ref()
                .unwrap()
                .contains_key("cpu")
        );
        let mut names: Vec<_> = spec
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .map(|v| v.name.clone())
            .collect();
        let sorted = {
            let mut s = names.clone();
            s.sort();
            s
        };
        assert_eq!(names, sorted, "{name}: volumes sorted by name");
        names.dedup();
        assert_eq!(
            names.len(),
            spec.volumes.as_ref().unwrap().len(),
            "{name}: no duplicate volumes"
        );
        let flags: Vec<String> = c.command.as_ref().unwrap()[1..]
            .iter()
            .map(|f| f.split('=').next().unwrap().to_string())
            .collect();
        let mut sorted_flags = flags.clone();
        sorted_flags.sort();
        assert_eq!(flags, sorted_flags, "{name}: flags sorted by name");
    }
    pods.len()
}

#[test]
fn every_manifest_round_trips_for_every_version_and_variant() {
    let mut total = 0;
    for row in versions::TABLE {
        let v = format!("v1.{}.3", row.minor);
        total += round_trip(&with_version(&v));
        let mut ext = with_version(&v);
        ext.cluster.etcd = external();
        total += round_trip(&ext);
        let mut v6 = with_version(&v);
        v6.node.advertise_address = "fd00::11".parse().unwrap();
        total += round_trip(&v6);
    }
    assert_eq!(total, versions::TABLE.len() * (4 + 3 + 4));
}

#[test]
fn version_table_drives_images_probes_and_etcd_flags() {
    // 1.32 / 1.33: numeric probe ports, no container ports, etcd 3.5 flags
    for v in ["v1.32.4", "v1.33.1"] {
        let s = with_version(v);
        let etcd = manifests::etcd(&s).unwrap();
        assert_eq!(
            container(&etcd).image.as_deref(),
            Some("registry.k8s.io/etcd:3.5.24-0")
        );
        assert!(has(&etcd, "--experimental-initial-corrupt-check=true"));
        assert!(has(
            &etcd,
            "--experimental-watch-progress-notify-interval=5s"
        ));
        assert!(flag(&etcd, "feature-gates").is_empty());
        let api = manifests::apiserver(&s);
        assert_eq!(
            container(&api).image.as_deref(),
            Some(&*format!("registry.k8s.io/kube-apiserver:{v}"))
        );
        assert_eq!(
            http(&container(&api).liveness_probe).2,
            IntOrString::Int(6443)
        );
        assert!(container(&api).ports.is_none());
        let sched = manifests::scheduler(&s);
        assert_eq!(
            http(&container(&sched).liveness_probe),
            (
                "127.0.0.1".into(),
                "/livez".into(),
                IntOrString::Int(10259),
                "HTTPS".into()
            )
        );
        assert_eq!(http(&container(&sched).readiness_probe).1, "/readyz");
        let kcm = manifests::controller_manager(&s);
        assert_eq!(
            http(&container(&kcm).startup_probe).2,
            IntOrString::Int(10257)
        );
        assert!(container(&kcm).readiness_probe.is_none());
        assert_eq!(
            http(&container(&etcd).liveness_probe),
            (
                "127.0.0.1".into(),
                "/livez".into(),
                IntOrString::Int(2381),
                "HTTP".into()
            )
        );
    }
    // 1.34: etcd 3.6 flags, named probe-port on every component
    let s = with_version("v1.34.2");
    let etcd = manifests::etcd(&s).unwrap();
    assert_eq!(
        container(&etcd).image.as_deref(),
        Some("registry.k8s.io/etcd:3.6.5-0")
    );
    assert_eq!(flag(&etcd, "feature-gates"), ["InitialCorruptCheck=true"]);
    assert!(has(&etcd, "--watch-progress-notify-interval=5s"));
    assert!(!cmd(&etcd).iter().any(|c| c.contains("experimental")));
    for (pod, port) in [
        (etcd.clone(), 2381),
        (manifests::apiserver(&s), 6443),
        (manifests::controller_manager(&s), 10257),
        (manifests::scheduler(&s), 10259),
    ] {
        let c = container(&pod);
        let ports = c.ports.as_ref().unwrap();
        assert_eq!(
            (ports[0].name.as_deref(), ports[0].container_port),
            (Some("probe-port"), port)
        );
        for p in [&c.liveness_probe, &c.startup_probe] {
            assert_eq!(http(p).2, IntOrString::String("probe-port".into()));
        }
    }
}

#[test]
fn etcd_flags_follow_the_image_tag_not_the_kubernetes_version() {
    let mut s = with_version("v1.34.0");
    if let Etcd::Local {
        image_tag,
        image_repository,
        ..
    } = &mut s.cluster.etcd
    {
        *image_tag = Some("3.5.21-0".into());
        *image_repository = Some("mirror.example/etcd-io".into());
    }
    let etcd = manifests::etcd(&s).unwrap();
    assert_eq!(
        container(&etcd).image.as_deref(),
        Some("mirror.example/etcd-io/etcd:3.5.21-0")
    );
    assert!(has(&etcd, "--experimental-initial-corrupt-check=true"));
}

#[test]
fn image_repository_and_build_metadata() {
    let mut s = with_version("v1.33.0+vendor.1");
    s.cluster.image_repository = "registry.example/k8s/".into();
    assert_eq!(
        container(&manifests::scheduler(&s)).image.as_deref(),
        Some("registry.example/k8s/kube-scheduler:v1.33.0_vendor.1")
    );
    assert_eq!(
        container(&manifests::etcd(&s).unwrap()).image.as_deref(),
        Some("registry.example/k8s/etcd:3.5.24-0")
    );
}

fn external() -> Etcd {
    Etcd::External {
        endpoints: vec![
            "https://10.0.0.1:2379".into(),
            "https://10.0.0.2:2379".into(),
        ],
        ca_file: "/etc/etcd/pki/ca.crt".into(),
        cert_file: "/etc/kubernetes/pki/apiserver-etcd-client.crt".into(),
        key_file: "/etc/etcd/client/client.key".into(),
    }
}

#[test]
fn external_etcd_has_no_pod_and_apiserver_uses_endpoints() {
    let mut s = settings::control_plane();
    s.cluster.etcd = external();
    assert!(manifests::etcd(&s).is_none());
    let names: Vec<_> = manifests::render_all(&s, &HostInputs::default())
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        [
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler"
        ]
    );
    let api = manifests::apiserver(&s);
    assert_eq!(
        flag(&api, "etcd-servers"),
        ["https://10.0.0.1:2379,https://10.0.0.2:2379"]
    );
    assert_eq!(flag(&api, "etcd-cafile"), ["/etc/etcd/pki/ca.crt"]);
    assert_eq!(
        flag(&api, "etcd-certfile"),
        ["/etc/kubernetes/pki/apiserver-etcd-client.crt"]
    );
    assert_eq!(flag(&api, "etcd-keyfile"), ["/etc/etcd/client/client.key"]);
    // the cert under /etc/kubernetes/pki is already mounted; the other two dirs get volumes
    assert_eq!(
        volume_names(&api),
        ["ca-certs", "etcd-certs-0", "etcd-certs-1", "k8s-certs"]
    );
    let vols = api.spec.as_ref().unwrap().volumes.as_ref().unwrap();
    let paths: Vec<_> = vols
        .iter()
        .map(|v| v.host_path.as_ref().unwrap().path.clone())
        .collect();
    assert!(
        paths.contains(&"/etc/etcd/client".to_string())
            && paths.contains(&"/etc/etcd/pki".to_string())
    );
    let annotations = api.metadata.annotations.unwrap();
    assert_eq!(
        annotations[manifests::ANNOTATION_APISERVER_ENDPOINT],
        "192.168.10.11:6443"
    );
}

#[test]
fn extra_args_override_defaults_by_name() {
    let mut s = settings::control_plane();
    s.cluster.api_server.extra_args = vec![
        arg("authorization-config", "/etc/kubernetes/authz.yaml"),
        arg("enable-admission-plugins", "NodeRestriction,PodSecurity"),
        arg("runtime-config", "a/v1=true"),
        arg("runtime-config", "b/v1=true"),
        arg("advertise-address", "192.168.10.99"),
    ];
    s.cluster.controller_manager.extra_args = vec![
        arg("bind-address", "0.0.0.0"),
        arg("flex-volume-plugin-dir", "/opt/flex"),
    ];
    s.cluster.scheduler.extra_args = vec![arg("bind-address", "10.1.2.3")];
    s.cluster.etcd_component.extra_args = vec![
        arg("listen-metrics-urls", "http://0.0.0.0:2391"),
        arg("advertise-client-urls", "https://etcd.example:2379"),
    ];
    let api = manifests::apiserver(&s);
    assert!(
        flag(&api, "authorization-mode").is_empty(),
        "authorization-config replaces authorization-mode"
    );
    assert_eq!(
        flag(&api, "enable-admission-plugins"),
        ["NodeRestriction,PodSecurity"]
    );
    assert_eq!(
        flag(&api, "runtime-config"),
        ["a/v1=true", "b/v1=true"],
        "duplicates are kept in order"
    );
    assert_eq!(
        flag(&api, "etcd-servers"),
        ["https://etcd.example:2379"],
        "etcd's advertise-client-urls extra arg"
    );
    assert_eq!(
        http(&container(&api).liveness_probe).0,
        "192.168.10.99",
        "probe follows advertise-address"
    );
    let kcm = manifests::controller_manager(&s);
    assert_eq!(flag(&kcm, "bind-address"), ["0.0.0.0"]);
    assert_eq!(
        http(&container(&kcm).liveness_probe).0,
        "127.0.0.1",
        "unspecified bind address is probed on loopback"
    );
    let flex = kcm
        .spec
        .as_ref()
        .unwrap()
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "flexvolume-dir")
        .unwrap();
    assert_eq!(flex.host_path.as_ref().unwrap().path, "/opt/flex");
    assert_eq!(
        http(&container(&manifests::scheduler(&s)).liveness_probe).0,
        "10.1.2.3"
    );
    let etcd = manifests::etcd(&s).unwrap();
    let (host, _, port, scheme) = http(&container(&etcd).liveness_probe);
    assert_eq!((host.as_str(), scheme.as_str()), ("127.0.0.1", "HTTP"));
    assert_eq!(
        container(&etcd).ports.as_ref().unwrap()[0].container_port,
        2391
    );
    assert_eq!(port, IntOrString::String("probe-port".into()));
    assert_eq!(
        etcd.metadata.annotations.unwrap()[manifests::ANNOTATION_ETCD_CLIENT_URLS],
        "https://etcd.example:2379"
    );
    // a given address is probed there, over the given scheme, as kubeadm's
    // GetEtcdProbeEndpoint (cmd/kubeadm/app/util/staticpod/utils.go) takes
    // the first URL's host; only 0.0.0.0 and :: become loopback (above)
    s.cluster.etcd_component.extra_args = vec![arg(
        "listen-metrics-urls",
        "https://10.1.2.4:2392,http://127.0.0.1:2381",
    )];
    let etcd = manifests::etcd(&s).unwrap();
    let (host, _, _, scheme) = http(&container(&etcd).liveness_probe);
    assert_eq!((host.as_str(), scheme.as_str()), ("10.1.2.4", "HTTPS"));
    assert_eq!(
        container(&etcd).ports.as_ref().unwrap()[0].container_port,
        2392
    );
}

#[test]
fn extra_volumes_and_envs() {
    let mut s = settings::control_plane();
    s.cluster.api_server.extra_volumes = vec![
        ExtraVolume {
            name: "audit".into(),
            host_path: "/var/log/kubernetes/audit".into(),
            mount_path: "/var/log/audit".into(),
            read_only: false,
            path_type: "DirectoryOrCreate".into(),
        },
        ExtraVolume {
            name: "ca-certs".into(),
            host_path: "/etc/pki/tls/certs".into(),
            mount_path: "/etc/ssl/certs".into(),
            read_only: true,
            path_type: String::new(),
        },
    ];
    s.cluster.api_server.extra_envs = vec![EnvVar {
        name: "HTTPS_PROXY".into(),
        value: "http://user-proxy:3128".into(),
    }];
    let host = HostInputs {
        ca_trust_dirs: vec![],
        proxy_env: vec![
            EnvVar {
                name: "HTTPS_PROXY".into(),
                value: "http://host-proxy:3128".into(),
            },
            EnvVar {
                name: "NO_PROXY".into(),
                value: "10.0.0.0/8".into(),
            },
        ],
    };
    let api = manifests::apiserver_with(&s, &host);
    assert_eq!(volume_names(&api), ["audit", "ca-certs", "k8s-certs"]);
    let spec = api.spec.as_ref().unwrap();
    let ca = spec
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "ca-certs")
        .unwrap();
    let hp = ca.host_path.as_ref().unwrap();
    assert_eq!(
        (hp.path.as_str(), hp.type_.as_deref()),
        ("/etc/pki/tls/certs", None)
    );
    let audit = spec.containers[0]
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.name == "audit")
        .unwrap();
    assert_eq!(
        (audit.mount_path.as_str(), audit.read_only),
        ("/var/log/audit", None)
    );
    let env: Vec<(String, String)> = spec.containers[0]
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| (e.name.clone(), e.value.clone().unwrap()))
        .collect();
    assert_eq!(
        env,
        [
            ("HTTPS_PROXY".into(), "http://user-proxy:3128".into()),
            ("NO_PROXY".into(), "10.0.0.0/8".into())
        ]
    );
    // the scheduler gets the host proxy env but not the apiserver's extras
    let sched = manifests::scheduler_with(&s, &host);
    assert_eq!(
        container(&sched).env.as_ref().unwrap()[0].value.as_deref(),
        Some("http://host-proxy:3128")
    );
}

#[test]
fn ipv6_advertise_address() {
    let mut s = settings::control_plane();
    s.node.advertise_address = "fd00::11".parse().unwrap();
    let etcd = manifests::etcd(&s).unwrap();
    assert_eq!(
        flag(&etcd, "listen-client-urls"),
        ["https://[::1]:2379,https://[fd00::11]:2379"]
    );
    assert_eq!(flag(&etcd, "listen-metrics-urls"), ["http://[::1]:2381"]);
    assert_eq!(
        flag(&etcd, "initial-cluster"),
        ["cp-1=https://[fd00::11]:2380"]
    );
    assert_eq!(http(&container(&etcd).liveness_probe).0, "::1");
    let api = manifests::apiserver(&s);
    assert_eq!(flag(&api, "etcd-servers"), ["https://[::1]:2379"]);
    assert_eq!(
        api.metadata.annotations.unwrap()[manifests::ANNOTATION_APISERVER_ENDPOINT],
        "[fd00::11]:6443"
    );
}

#[test]
fn control_plane_join_etcd_lists_members() {
    let mut s = settings::control_plane();
    s.mode = Mode::JoinControlPlane;
    s.node.name = "cp-2".into();
    s.node.advertise_address = "192.168.10.12".parse().unwrap();
    let members = [
        EtcdMember {
            name: "cp-1".into(),
            peer_url: "https://192.168.10.11:2380".into(),
        },
        EtcdMember {
            name: "cp-2".into(),
            peer_url: "https://192.168.10.12:2380".into(),
        },
    ];
    let etcd = manifests::etcd_with(&s, &HostInputs::default(), &members).unwrap();
    assert_eq!(
        flag(&etcd, "initial-cluster"),
        ["cp-1=https://192.168.10.11:2380,cp-2=https://192.168.10.12:2380"]
    );
    assert_eq!(flag(&etcd, "initial-cluster-state"), ["existing"]);
    // init has no initial-cluster-state
    assert!(
        flag(
            &manifests::etcd(&settings::control_plane()).unwrap(),
            "initial-cluster-state"
        )
        .is_empty()
    );
}

#[test]
fn kcm_pod_cidr_flags_only_with_a_pod_subnet() {
    let mut s = settings::control_plane();
    let kcm = manifests::controller_manager(&s);
    assert_eq!(flag(&kcm, "cluster-cidr"), ["10.244.0.0/16"]);
    assert_eq!(flag(&kcm, "allocate-node-cidrs"), ["true"]);
    assert_eq!(flag(&kcm, "cluster-name"), ["kubernetes"]);
    s.cluster.pod_subnets.clear();
    let kcm = manifests::controller_manager(&s);
    assert!(
        flag(&kcm, "cluster-cidr").is_empty() && flag(&kcm, "service-cluster-ip-range").is_empty()
    );
}
