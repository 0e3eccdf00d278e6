//! Unit tests for the config layers: both formats, defaults, validation
//! messages (field names), and secret hygiene.

use std::net::IpAddr;

use super::*;
use crate::envelope::{DocBody, Document, Unwrapped};

fn facts() -> HostFacts {
    HostFacts::given(
        Some("Node-A".into()),
        Some("192.0.2.7".parse().unwrap()),
        None,
    )
}

fn yaml(text: &str) -> Unwrapped {
    Unwrapped {
        kind: "config file".into(),
        documents: vec![Document {
            origin: String::new(),
            field_prefix: String::new(),
            body: DocBody::Yaml(text.into()),
        }],
        ..Default::default()
    }
}

fn load(text: &str) -> Result<Loaded, Error> {
    from_unwrapped(yaml(text), "test.yaml", &facts())
}

fn err(text: &str) -> String {
    match load(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => {
            assert_eq!(e.exit_code(), 2, "{e}");
            e.to_string()
        }
    }
}

const HASH: &str = "sha256:8f2c1b0b7d5a1e4c9a6f3d2b1c0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e";

#[test]
fn five_line_worker() {
    let l = load(&format!(
        "apiVersion: kubeboot.dev/v1alpha1\nrole: worker\nserver: 10.0.0.10:6443\ntoken: abcdef.0123456789abcdef\ncaCertHash: {HASH}\n"
    ))
    .unwrap();
    let s = &l.settings;
    assert_eq!(s.mode, Mode::JoinWorker);
    let j = s.join.as_ref().unwrap();
    assert_eq!(j.api_server_endpoint.to_string(), "10.0.0.10:6443");
    assert_eq!(j.token.id, "abcdef");
    assert_eq!(j.token.expose(), "abcdef.0123456789abcdef");
    assert_eq!(j.ca_cert_hashes, vec![HASH.to_string()]);
    assert_eq!(s.node.name, "node-a", "hostname default is lowercased");
    assert!(s.node.taints.is_empty());
    let json = serde_json::to_string(&s).unwrap();
    assert!(json.contains("\"abcdef.<redacted>\""), "{json}");
    assert!(!json.contains("0123456789abcdef"), "{json}");
    assert!(json.contains("\"10.0.0.10:6443\""));
}

#[test]
fn control_plane_defaults_are_kubeadms() {
    let l =
        load("apiVersion: kubeboot.dev/v1alpha1\nkind: NodeConfig\nrole: control-plane\n").unwrap();
    let s = &l.settings;
    assert_eq!(s.mode, Mode::Init);
    assert_eq!(s.cluster.name, "kubernetes");
    assert_eq!(s.cluster.service_subnets[0].to_string(), "10.96.0.0/12");
    assert_eq!(
        s.api_server_service_ip(),
        Some("10.96.0.1".parse::<IpAddr>().unwrap())
    );
    assert_eq!(
        s.cluster_dns_ip(),
        Some("10.96.0.10".parse::<IpAddr>().unwrap())
    );
    assert_eq!(s.cluster.dns_domain, "cluster.local");
    assert_eq!(s.cluster.image_repository, "registry.k8s.io");
    assert_eq!(s.cluster.key_algorithm, KeyAlgorithm::EcdsaP256);
    assert_eq!(s.cluster.cert_validity_seconds, 8760 * 3600);
    assert_eq!(s.cluster.ca_validity_seconds, 87600 * 3600);
    assert_eq!(s.cluster.certificates_dir, "/etc/kubernetes/pki");
    assert!(matches!(&s.cluster.etcd, Etcd::Local { data_dir, .. } if data_dir == "/var/lib/etcd"));
    assert_eq!(s.node.bind_port, 6443);
    assert_eq!(s.node.advertise_address.to_string(), "192.0.2.7");
    assert_eq!(s.node.taints.len(), 1);
    assert_eq!(
        s.node.taints[0].key,
        "node-role.kubernetes.io/control-plane"
    );
    assert_eq!(s.bootstrap_tokens.len(), 1);
    assert_eq!(s.bootstrap_tokens[0].ttl_seconds, 24 * 3600);
    assert_eq!(
        s.bootstrap_tokens[0].groups,
        vec!["system:bootstrappers:kubeadm:default-node-token"]
    );
    assert_eq!(s.control_plane_endpoint().url(), "https://192.0.2.7:6443");
}

#[test]
fn built_in_examples_resolve() {
    for name in ["control-plane", "worker"] {
        let l = load(examples::by_name(name).unwrap()).unwrap();
        assert!(l.settings.warnings.is_empty(), "{:?}", l.settings.warnings);
    }
}

const V1BETA4_INIT: &str = "\
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
bootstrapTokens:
- token: abcdef.0123456789abcdef
  ttl: 2h0m0s
nodeRegistration:
  name: cp-1
  criSocket: unix:///run/containerd/containerd.sock
  kubeletExtraArgs:
  - name: node-labels
    value: tier=gold
  imagePullSerial: true
localAPIEndpoint:
  advertiseAddress: 10.1.0.5
  bindPort: 6444
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
clusterName: prod
kubernetesVersion: v1.32.3
controlPlaneEndpoint: lb.prod.internal
networking:
  podSubnet: 192.168.0.0/16
  serviceSubnet: 10.100.0.0/16
apiServer:
  certSANs: [lb.prod.internal, 10.1.0.100]
  extraArgs:
  - name: audit-log-maxage
    value: \"30\"
dns:
  imageTag: v1.11.3
encryptionAlgorithm: ECDSA-P384
certificateValidityPeriod: 4380h
";

#[test]
fn kubeadm_v1beta4_init() {
    let l = load(V1BETA4_INIT).unwrap();
    assert_eq!(l.format, parse::Format::Kubeadm("v1beta4".into()));
    let s = &l.settings;
    assert_eq!(s.mode, Mode::Init);
    assert_eq!(s.cluster.name, "prod");
    assert_eq!(s.cluster.kubernetes_version, "v1.32.3");
    let cpe = s.cluster.control_plane_endpoint.as_ref().unwrap();
    assert_eq!(
        cpe.to_string(),
        "lb.prod.internal:6444",
        "port defaults to bindPort"
    );
    assert_eq!(s.node.bind_port, 6444);
    assert_eq!(s.cluster.key_algorithm, KeyAlgorithm::EcdsaP384);
    assert_eq!(s.cluster.cert_validity_seconds, 4380 * 3600);
    assert_eq!(s.cluster.api_server.extra_args[0].name, "audit-log-maxage");
    assert_eq!(s.node.kubelet_extra_args[0].value, "tier=gold");
    assert_eq!(s.bootstrap_tokens[0].ttl_seconds, 7200);
    assert_eq!(s.bootstrap_tokens[0].token.as_ref().unwrap().id, "abcdef");
    let fields: Vec<&str> = s.warnings.iter().map(|w| w.field.as_str()).collect();
    assert!(
        !fields
            .iter()
            .any(|f| f.starts_with("ClusterConfiguration.dns")),
        "dns is acted on: {fields:?}"
    );
    assert_eq!(s.cluster.dns.image_tag.as_deref(), Some("v1.11.3"));
    assert!(!s.cluster.dns.disabled && !s.cluster.proxy.disabled);
    assert!(
        fields.contains(&"InitConfiguration.nodeRegistration.imagePullSerial"),
        "{fields:?}"
    );
}

#[test]
fn kubeadm_v1beta3_join_control_plane() {
    let l = load(&format!(
        "apiVersion: kubeadm.k8s.io/v1beta3
kind: JoinConfiguration
nodeRegistration:
  name: cp-2
  kubeletExtraArgs:
    cloud-provider: external
discovery:
  bootstrapToken:
    apiServerEndpoint: \"[fd00::10]:6443\"
    token: abcdef.0123456789abcdef
    caCertHashes: [{HASH}]
  timeout: 5m0s
controlPlane:
  localAPIEndpoint:
    advertiseAddress: fd00::12
  certificateKey: {}
",
        "a".repeat(64)
    ))
    .unwrap();
    let s = &l.settings;
    assert_eq!(s.mode, Mode::JoinControlPlane);
    assert_eq!(
        s.join.as_ref().unwrap().api_server_endpoint.url(),
        "https://[fd00::10]:6443"
    );
    assert_eq!(s.node.kubelet_extra_args[0].name, "cloud-provider");
    assert!(s.join.as_ref().unwrap().certificate_key.is_some());
    assert!(
        s.warnings
            .iter()
            .any(|w| w.field == "JoinConfiguration.discovery.timeout")
    );
    let json = serde_json::to_string(&s).unwrap();
    assert!(!json.contains(&"a".repeat(64)));
}

#[test]
fn kubeadm_errors_name_kubeadm_fields() {
    let e = err(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\ndiscovery:\n  bootstrapToken:\n    apiServerEndpoint: 10.0.0.1:6443\n    token: nope\n    unsafeSkipCAVerification: true\n",
    );
    assert!(
        e.contains("JoinConfiguration.discovery.bootstrapToken.token"),
        "{e}"
    );
    assert!(!e.contains("nope"), "token value leaked: {e}");
    let e = err("apiVersion: kubeadm.k8s.io/v1beta2\nkind: InitConfiguration\n");
    assert!(e.contains("v1beta2") && e.contains("apiVersion"), "{e}");
    let e = err(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nnetworking:\n  podSubnet: 10.96.0.0/16\n",
    );
    assert!(e.contains("InitConfiguration"), "{e}");
    let e = err(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\n---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nnetworking:\n  podSubnet: 10.96.0.0/16\n",
    );
    assert!(
        e.contains("ClusterConfiguration.networking.podSubnet") && e.contains("overlaps"),
        "{e}"
    );
    let e = err(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\n---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nencryptionAlgorithm: RSA-1024\n",
    );
    assert!(
        e.contains("ClusterConfiguration.encryptionAlgorithm") && e.contains("RSA-2048"),
        "{e}"
    );
    for a in [
        "RSA-2048",
        "RSA-3072",
        "RSA-4096",
        "ECDSA-P256",
        "ECDSA-P384",
    ] {
        let l = load(&format!(
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\n---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nencryptionAlgorithm: {a}\n"
        ))
        .unwrap();
        assert_eq!(l.settings.cluster.key_algorithm.as_str(), a);
    }
}

#[test]
fn validation_names_fields_and_collects_all() {
    let e = err(
        "role: worker\nserver: 10.0.0.1\ntoken: ABCDEF.0123456789abcdef\ncaCertHash: md5:abc\n",
    );
    assert!(
        e.contains("test.yaml: server:") && e.contains("no port"),
        "{e}"
    );
    assert!(e.contains("test.yaml: token:"), "{e}");
    assert!(!e.contains("0123456789abcdef"), "secret leaked: {e}");
    assert!(
        e.contains("test.yaml: caCertHash:") && e.contains("sha256:"),
        "{e}"
    );
    assert!(e.lines().count() >= 3);
}

#[test]
fn cross_field_mistakes() {
    let e = err("role: worker\n");
    assert!(
        e.contains("server: missing") && e.contains("token: missing") && e.contains("caCertHash"),
        "{e}"
    );
    let e = err(&format!(
        "role: control-plane\nserver: a.b:6443\ntoken: abcdef.0123456789abcdef\ncaCertHash: {HASH}\n"
    ));
    assert!(e.contains("certificateKey: missing"), "{e}");
    let e = err("role: control-plane\ncluster:\n  podSubnet: 10.0.0.0/8\n");
    assert!(
        e.contains("cluster.podSubnet") && e.contains("overlaps"),
        "{e}"
    );
    let e = err("role: control-plane\nnode:\n  advertiseAddress: eth0\n");
    assert!(
        e.contains("node.advertiseAddress") && e.contains("not an IP"),
        "{e}"
    );
    let e = err("role: control-plane\ncluster:\n  serviceSubnet: 10.0.0.0/8\n");
    assert!(e.contains("too large"), "{e}");
    let e = err("role: control-plane\ncluster:\n  kubernetesVersion: v1.20.0\n");
    assert!(
        e.contains("cluster.kubernetesVersion") && e.contains("not supported"),
        "{e}"
    );
    let e = err("role: control-plane\nnode:\n  name: Bad_Name\n");
    assert!(e.contains("node.name"), "{e}");
    let e = err("role: boss\n");
    assert!(e.contains("role") && e.contains("boss"), "{e}");
    let e = err(
        "role: worker\nserver: x:6443\ntoken: abcdef.0123456789abcdef\nunsafeSkipCAVerification: true\ncertificateKey: zz\n",
    );
    assert!(e.contains("certificateKey: must be 64"), "{e}");
}

#[test]
fn unknown_and_mistyped_fields_are_named() {
    let e = err("role: worker\nservr: 10.0.0.1:6443\n");
    assert!(e.contains("servr"), "{e}");
    let e = err("role: control-plane\nnode:\n  bindPort: lots\n");
    assert!(e.contains("node.bindPort"), "{e}");
    let e = err("role: worker\ntoken: 123456789\n");
    assert!(e.contains("token") && !e.contains("123456789"), "{e}");
    let e = err("- just\n- a list\n");
    assert!(e.contains("mapping"), "{e}");
    let e = err("apiVersion: v1\nkind: ConfigMap\n");
    assert!(e.contains("apiVersion"), "{e}");
}

#[test]
fn mixing_formats_is_refused() {
    let mut u = yaml("role: control-plane\n");
    u.documents.push(Document {
        origin: "write_files[0] /run/kubeadm/kubeadm.yaml".into(),
        field_prefix: String::new(),
        body: DocBody::Yaml("apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\n".into()),
    });
    let e = from_unwrapped(u, "ud", &facts()).unwrap_err().to_string();
    assert!(e.contains("more than one node configuration"), "{e}");
}

#[test]
fn kernel_args_worker() {
    let u = Unwrapped {
        kind: "kernel command line".into(),
        documents: vec![Document {
            origin: "kernel command line".into(),
            field_prefix: "kubeboot.".into(),
            body: DocBody::KernelArgs(vec![
                ("role".into(), "worker".into()),
                ("server".into(), "10.0.0.10:6443".into()),
                ("token".into(), "abcdef.0123456789abcdef".into()),
                ("ca-cert-hash".into(), HASH.into()),
                ("platform".into(), "metal".into()),
            ]),
        }],
        ..Default::default()
    };
    let l = from_unwrapped(u, "/proc/cmdline", &facts()).unwrap();
    assert_eq!(l.settings.mode, Mode::JoinWorker);
    let u = Unwrapped {
        kind: "kernel command line".into(),
        documents: vec![Document {
            origin: "kernel command line".into(),
            field_prefix: "kubeboot.".into(),
            body: DocBody::KernelArgs(vec![
                ("role".into(), "worker".into()),
                ("ca-cert-hash".into(), "x".into()),
            ]),
        }],
        ..Default::default()
    };
    let e = from_unwrapped(u, "/proc/cmdline", &facts())
        .unwrap_err()
        .to_string();
    assert!(e.contains("kubeboot.ca-cert-hash"), "{e}");
}

#[test]
fn helpers() {
    assert_eq!(resolve::parse_duration("24h0m0s"), Some(86400));
    assert_eq!(resolve::parse_duration("1h30m"), Some(5400));
    assert_eq!(resolve::parse_duration("1.5h"), Some(5400));
    assert_eq!(resolve::parse_duration("0"), Some(0));
    assert_eq!(resolve::parse_duration("h"), None);
    assert_eq!(resolve::parse_duration("10x"), None);
    assert_eq!(resolve::parse_duration("99999999999999999999999h"), None);
    assert!(resolve::parse_endpoint("[::1]:6443", None).is_ok());
    assert_eq!(
        resolve::parse_endpoint("fd00::1", Some(6443))
            .unwrap()
            .to_string(),
        "[fd00::1]:6443"
    );
    assert!(resolve::parse_endpoint("host:0", None).is_err());
    assert!(resolve::parse_endpoint("https://api.example.com:443/", None).is_ok());
    assert_eq!(resolve::parse_version("v1.33.2"), Some((1, 33, 2)));
    assert_eq!(resolve::parse_version("1.34.0-rc.1"), Some((1, 34, 0)));
    assert!(resolve::parse_subnets("10.244.0.0/16,fd00:10:244::/56").is_ok());
    assert!(
        resolve::parse_subnets("10.244.0.1/16")
            .unwrap_err()
            .contains("10.244.0.0/16")
    );
    let t = crate::config::BootstrapToken::generate().unwrap();
    assert!(
        crate::config::BootstrapToken::parse(&crate::secret::Secret::new(t.expose())).is_some()
    );
}

const INIT_V1BETA4_ADDONS: &str = "apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
nodeRegistration:
  name: cp-1
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
dns:
  disabled: true
  imageRepository: mirror.example.test/dns
  imageTag: v1.12.1-fix.2
proxy:
  disabled: true
";

#[test]
fn kubeadm_v1beta4_addons_are_acted_on() {
    let l = load(INIT_V1BETA4_ADDONS).unwrap();
    let c = &l.settings.cluster;
    assert_eq!(
        c.dns,
        Dns {
            disabled: true,
            image_repository: Some("mirror.example.test/dns".into()),
            image_tag: Some("v1.12.1-fix.2".into()),
        }
    );
    assert_eq!(c.proxy, Proxy { disabled: true });
    let fields: Vec<&str> = l
        .settings
        .warnings
        .iter()
        .map(|w| w.field.as_str())
        .collect();
    assert!(
        !fields
            .iter()
            .any(|f| f.contains(".dns") || f.contains(".proxy")),
        "{fields:?}"
    );
    // omitted: both addons installed, no overrides
    let plain = load("apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\n").unwrap();
    assert_eq!(plain.settings.cluster.dns, Dns::default());
    assert!(!plain.settings.cluster.proxy.disabled);
}

#[test]
fn kubeadm_v1beta3_has_no_addon_switches() {
    // v1beta3 has dns.imageRepository/imageTag but neither dns.disabled nor
    // proxy (v1beta4 added them): naming them in v1beta3 is an error.
    let text = INIT_V1BETA4_ADDONS.replace("v1beta4", "v1beta3");
    let e = err(&text);
    assert!(
        e.contains("ClusterConfiguration.dns.disabled: not a kubeadm.k8s.io/v1beta3 field (v1beta4 added it)"),
        "{e}"
    );
    assert!(
        e.contains("ClusterConfiguration.proxy: not a kubeadm.k8s.io/v1beta3 field"),
        "{e}"
    );
    let ok = text.replace("  disabled: true\n  imageRepository", "  imageRepository");
    let ok = ok.replace("proxy:\n  disabled: true\n", "");
    let l = load(&ok).unwrap();
    let c = &l.settings.cluster;
    assert_eq!(
        c.dns.image_tag.as_deref(),
        Some("v1.12.1-fix.2"),
        "v1beta3 has dns.imageTag"
    );
    assert_eq!(
        c.dns.image_repository.as_deref(),
        Some("mirror.example.test/dns")
    );
}

/// Issue 11 item 3: a misspelt kubeadm field is an error naming it, with a
/// did-you-mean; every problem in the document is listed.
#[test]
fn kubeadm_typos_are_errors_with_did_you_mean() {
    let e = err("apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
nodeRegistraton:
  name: cp-1
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
controlPlaneEndPoint: lb.example.test
networking:
  podSubnets: 10.244.0.0/16
");
    assert!(
        e.contains("InitConfiguration.nodeRegistraton: not a field of kubeadm.k8s.io/v1beta4 InitConfiguration; did you mean \"nodeRegistration\"?"),
        "{e}"
    );
    assert!(
        e.contains("ClusterConfiguration.controlPlaneEndPoint: not a field")
            && e.contains("did you mean \"controlPlaneEndpoint\""),
        "{e}"
    );
    assert!(
        e.contains("ClusterConfiguration.networking.podSubnets: not a field")
            && e.contains("did you mean \"podSubnet\""),
        "{e}"
    );
    // inside list items too
    let e = err("apiVersion: kubeadm.k8s.io/v1beta4
kind: JoinConfiguration
nodeRegistration:
  taints:
  - {key: a, efect: NoSchedule}
discovery:
  bootstrapToken: {token: abcdef.0123456789abcdef, apiServerEndpoint: 10.0.0.1:6443, unsafeSkipCAVerification: true}
");
    assert!(
        e.contains("JoinConfiguration.nodeRegistration.taints[0].efect: not a field")
            && e.contains("\"effect\""),
        "{e}"
    );
    // a field of another kind says where it belongs
    let e = err(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\ncontrolPlaneEndpoint: x\n",
    );
    assert!(
        e.contains("InitConfiguration.controlPlaneEndpoint")
            && e.contains("belongs in ClusterConfiguration"),
        "{e}"
    );
}

/// A real kubeadm field kubeboot does not act on stays a warning, saying so.
#[test]
fn kubeadm_fields_not_acted_on_warn() {
    let l = load(
        "apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
dryRun: true
timeouts:
  kubeletHealthCheck: 4m0s
nodeRegistration:
  taints:
  - {key: a, effect: NoSchedule, timeAdded: \"2024-01-01T00:00:00Z\"}
",
    )
    .unwrap();
    let w: Vec<(&str, &str)> = l
        .settings
        .warnings
        .iter()
        .map(|w| (w.field.as_str(), w.message.as_str()))
        .collect();
    // (timeouts.kubeletHealthCheck is acted on since the timeouts mapping)
    for f in [
        "InitConfiguration.dryRun",
        "InitConfiguration.nodeRegistration.taints[0].timeAdded",
    ] {
        assert!(
            w.iter()
                .any(|(x, m)| *x == f && m.starts_with("kubeadm field kubeboot does not act on")),
            "{f}: {w:?}"
        );
    }
    assert_eq!(l.settings.node.taints[0].key, "a");
}

/// docs/config.md carries the table generated from the one field table;
/// `KUBEBOOT_REGEN_DOCS=1 cargo test --lib kubeadm_field_table_in_docs` rewrites it.
#[test]
fn kubeadm_field_table_in_docs() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/config.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let (start, end) = (
        "<!-- kubeadm-fields:begin (generated by kubeadm::docs_table) -->\n",
        "<!-- kubeadm-fields:end -->",
    );
    let a = doc.find(start).expect("begin marker") + start.len();
    let b = doc.find(end).expect("end marker");
    let want = kubeadm::docs_table();
    if std::env::var_os("KUBEBOOT_REGEN_DOCS").is_some() {
        std::fs::write(path, format!("{}{want}{}", &doc[..a], &doc[b..])).unwrap();
        return;
    }
    assert_eq!(
        &doc[a..b],
        want,
        "docs/config.md drifted from the field table; regenerate with KUBEBOOT_REGEN_DOCS=1"
    );
}

#[test]
fn nodeconfig_addons_and_image_validation() {
    let l = load(
        "apiVersion: kubeboot.dev/v1alpha1
role: control-plane
cluster:
  dns: {disabled: true}
  proxy: {disabled: true}
",
    )
    .unwrap();
    assert!(l.settings.cluster.dns.disabled && l.settings.cluster.proxy.disabled);
    let l = load("role: control-plane\ncluster:\n  dns: {imageTag: v1.12.0}\n").unwrap();
    assert_eq!(l.settings.cluster.dns.image_tag.as_deref(), Some("v1.12.0"));
    assert!(!l.settings.cluster.dns.disabled);
    let l = load("role: control-plane\ncluster:\n  dns: {imageTag: \"\", imageRepository: \"\"}\n")
        .unwrap();
    assert_eq!(
        l.settings.cluster.dns,
        Dns::default(),
        "empty means unset, as in kubeadm"
    );

    for bad in ["\"v1.12:0\"", "-v1", ".v1", "\"v 1\"", &"a".repeat(129)] {
        let e = err(&format!(
            "role: control-plane\ncluster:\n  dns: {{imageTag: {bad}}}\n"
        ));
        assert!(e.contains("cluster.dns.imageTag:"), "{bad}: {e}");
        assert!(e.contains("is not an image tag"), "{e}");
    }
    let e = err(&INIT_V1BETA4_ADDONS.replace("v1.12.1-fix.2", "\"v1.12@sha\""));
    assert!(e.contains("ClusterConfiguration.dns.imageTag:"), "{e}");
    for bad in [
        "https://mirror.test/dns",
        "\"mirror.test/ dns\"",
        "mirror.test//dns",
        "mirror.test/DNS",
    ] {
        let e = err(&format!(
            "role: control-plane\ncluster:\n  dns: {{imageRepository: {bad}}}\n"
        ));
        assert!(e.contains("cluster.dns.imageRepository:"), "{bad}: {e}");
    }
    for good in [
        "mirror.test:5000/k8s/dns",
        "Registry.Example.test/coredns",
        "localhost/dns",
    ] {
        load(&format!(
            "role: control-plane\ncluster:\n  dns: {{imageRepository: {good}}}\n"
        ))
        .unwrap_or_else(|e| panic!("{good}: {e}"));
    }
    let e = err("role: control-plane\ncluster:\n  proxy: {enabled: false}\n");
    assert!(e.contains("cluster.proxy") && e.contains("enabled"), "{e}");
}

#[test]
fn v1beta4_timeouts_and_nodeconfig_timeouts_set_the_deadlines() {
    use std::time::Duration;
    let l = load(&format!(
        "apiVersion: kubeadm.k8s.io/v1beta4
kind: JoinConfiguration
discovery:
  bootstrapToken:
    apiServerEndpoint: 10.0.0.10:6443
    token: abcdef.0123456789abcdef
    caCertHashes: [{HASH}]
timeouts:
  discovery: 10m0s
  tlsBootstrap: 0s
  kubeletHealthCheck: 1m30s
  controlPlaneComponentHealthCheck: 4m
  etcdAPICall: 2m0s
  kubernetesAPICall: 45s
  upgradeManifests: 5m0s
"
    ))
    .unwrap();
    let t = &l.settings.timeouts;
    assert_eq!(t.discovery, Some(Duration::from_secs(600)));
    // 0 is no deadline
    assert_eq!(t.tls_bootstrap, Some(Duration::MAX));
    assert_eq!(t.kubelet_health_check, Some(Duration::from_secs(90)));
    assert_eq!(
        t.control_plane_component_health_check,
        Some(Duration::from_secs(240))
    );
    assert_eq!(t.etcd_api_call, Some(Duration::from_secs(120)));
    assert_eq!(t.kubernetes_api_call, Some(Duration::from_secs(45)));
    // upgradeManifests is kubeadm's but not acted on
    assert!(
        l.settings
            .warnings
            .iter()
            .any(|w| w.field.contains("timeouts.upgradeManifests")),
        "{:?}",
        l.settings.warnings
    );
    let json = serde_json::to_value(&l.settings).unwrap();
    assert_eq!(json["timeouts"]["tlsBootstrap"], "none");
    assert_eq!(json["timeouts"]["discovery"], "600s");

    // The same in a NodeConfig, with startSpread; unset fields stay unset.
    let l = load(&format!(
        "apiVersion: kubeboot.dev/v1alpha1
role: worker
server: 10.0.0.10:6443
token: abcdef.0123456789abcdef
caCertHash: {HASH}
startSpread: 20s
timeouts:
  discovery: 2m
"
    ))
    .unwrap();
    assert_eq!(
        l.settings.timeouts.discovery,
        Some(Duration::from_secs(120))
    );
    assert_eq!(l.settings.timeouts.tls_bootstrap, None);
    assert_eq!(l.settings.start_spread, Duration::from_secs(20));

    // Bad values name the field as the user wrote it.
    let e = err(&format!(
        "apiVersion: kubeadm.k8s.io/v1beta4
kind: JoinConfiguration
discovery:
  bootstrapToken:
    apiServerEndpoint: 10.0.0.10:6443
    token: abcdef.0123456789abcdef
    caCertHashes: [{HASH}]
timeouts:
  discovery: soon
"
    ));
    assert!(e.contains("JoinConfiguration.timeouts.discovery"), "{e}");
    assert!(e.contains("\"soon\""), "{e}");
    let e = err(
        "role: worker\nserver: 10.0.0.10:6443\ntoken: abcdef.0123456789abcdef\nunsafeSkipCAVerification: true\nstartSpread: 2h\n",
    );
    assert!(e.contains("startSpread"), "{e}");
}
