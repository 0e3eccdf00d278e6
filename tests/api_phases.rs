//! init's API phases end to end: `kubeboot firstboot` for a control-plane
//! init against a loopback HTTPS API server that requires a client
//! certificate from the cluster CA (admin.conf's), records every request
//! and answers like the API server (201 create, 409 exists, 200 get/put/
//! patch; the Node appears after a while). Checks every request's method,
//! path and body (as k8s-openapi types), that the token secret only travels
//! in the Secret body, rerun idempotency, a refusing server, and a worker
//! joining with the cluster-info the builders produce.

mod api_support;
mod cli_support;
mod net_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use api_support::{Fault, FaultKind, Options, StandIn, client_cn, kubelet_healthz};
use cli_support::{
    fake_systemctl_tls_bootstrap as systemctl_script, firstboot_args, kubeboot,
    render_control_plane as render, seed, text,
};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kubeboot::secret::Secret as S;
use net_support::{Request, Server, ok, tls_config};
use serde_json::{Value, json};

fn tmpdir(name: &str) -> PathBuf {
    cli_support::tmpdir("api", name)
}

struct Cluster {
    dir: PathBuf,
    root: PathBuf,
    api: StandIn,
    _kcm: Server,
    _sched: Server,
    healthz: Server,
    systemctl: PathBuf,
}

fn tls_ok(pki: &Path) -> Server {
    Server::https(
        tls_config(
            &pki.join("front-proxy-client.crt"),
            &pki.join("front-proxy-client.key"),
            None,
        ),
        |_, _| ok(b"ok"),
    )
}

/// A rendered control plane, the strict API server stand-in (client
/// certificates from the cluster CA, Kubernetes 1.`minor` schemas; the
/// kubelet registers cp-1 on the third look and updates it once after a
/// read) and health stubs (the kubelet's answers 503 twice first), with
/// userdata for an init on that port.
fn cluster(name: &str, minor: u32) -> Cluster {
    let dir = tmpdir(name);
    let root = render(&dir);
    let pki = root.join("etc/kubernetes/pki");
    let api = StandIn::start_pki(
        &pki,
        Options {
            minor,
            node: Some("cp-1".into()),
            ..Options::default()
        },
    );
    let (kcm, sched) = (tls_ok(&pki), tls_ok(&pki));
    let userdata = format!(
        "#cloud-config\nkubeboot:\n  role: control-plane\n  node:\n    name: cp-1\n    advertiseAddress: 127.0.0.1\n    bindPort: {}\n  cluster:\n    podSubnet: 10.244.0.0/16\n    controllerManager:\n      extraArgs:\n        secure-port: \"{}\"\n    scheduler:\n      extraArgs:\n        secure-port: \"{}\"\n",
        api.port(),
        kcm.port,
        sched.port
    );
    seed(&root, &userdata);
    let systemctl = fake_systemctl(&dir, &root);
    Cluster {
        dir,
        root,
        api,
        _kcm: kcm,
        _sched: sched,
        healthz: kubelet_healthz(2),
        systemctl,
    }
}

/// `kubeboot firstboot` on `root`, watched by the stand-in (a failure in
/// it kills kubeboot and fails the test at once).
fn firstboot(api: &StandIn, root: &Path, systemctl: &Path, healthz: &Server, wait: &str) -> Output {
    let healthz = format!("{}/healthz", healthz.base());
    let args = firstboot_args(root, systemctl, &healthz, wait, "20");
    api.run(Command::new(env!("CARGO_BIN_EXE_kubeboot")).args(&args))
}

fn status(root: &Path) -> (String, Value) {
    let s = std::fs::read_to_string(root.join("var/lib/kubeboot/status.json")).unwrap();
    let v = serde_json::from_str(&s).unwrap();
    (s, v)
}

fn api_requests(api: &StandIn) -> Vec<Request> {
    api.server
        .requests()
        .into_iter()
        .filter(|r| r.path != "/livez")
        .collect()
}

fn body<T: serde::de::DeserializeOwned>(r: &Request) -> T {
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("{} {}: {e}: {}", r.method, r.path, text(&r.body)))
}

/// kubeadm's component-config hash, recomputed here from a ConfigMap body
/// independently of kubeboot: SHA-256 over the data values in key order.
fn kubeadm_hash(cm: &ConfigMap) -> String {
    let data = cm.data.as_ref().unwrap();
    let mut keys: Vec<&String> = data.keys().collect();
    keys.sort();
    let bytes: Vec<u8> = keys.iter().flat_map(|k| data[*k].bytes()).collect();
    // `sha256:<hex>` of any bytes
    kubeboot::pki::spki_hash(&bytes)
}

/// Time left until an RFC 3339 `expiration`.
fn expires_in(rfc3339: &str) -> time::Duration {
    let exp = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap();
    exp - time::OffsetDateTime::now_utc()
}

const HASH: &str = "kubeadm.kubernetes.io/component-config.hash";

/// Rewrites the seeded userdata (`from` → `to`, once).
fn edit_userdata(c: &Cluster, from: &str, to: &str) {
    let seed = c.root.join("var/lib/cloud/seed/nocloud/user-data");
    let ud = std::fs::read_to_string(&seed).unwrap();
    assert!(ud.contains(from), "{ud}");
    std::fs::write(&seed, ud.replacen(from, to, 1)).unwrap();
}

/// A binding's name, role name and subjects.
type Binding = (String, String, Vec<(String, String)>);

const RBAC: &str = "/apis/rbac.authorization.k8s.io/v1";
const GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";

fn subjects(b: &Option<Vec<k8s_openapi::api::rbac::v1::Subject>>) -> Vec<(String, String)> {
    b.as_ref()
        .unwrap()
        .iter()
        .map(|s| (s.kind.clone(), s.name.clone()))
        .collect()
}

fn g(name: &str) -> (String, String) {
    ("Group".into(), name.into())
}

/// Every request of a fresh init, in order, with its body checked; returns
/// the token (id, secret) read from the Secret body.
fn check_first_run(c: &Cluster) -> (String, String) {
    let reqs = api_requests(&c.api);
    let seq: Vec<(String, String)> = reqs
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    let p = |m: &str, path: String| (m.to_string(), path);
    let ks = "/api/v1/namespaces/kube-system";
    let mut want = vec![
        p("POST", format!("{RBAC}/clusterrolebindings")), // as admin.conf: 403
        p("POST", format!("{RBAC}/clusterrolebindings")), // as super-admin.conf
        p("POST", format!("{ks}/configmaps")),
        p("POST", format!("{RBAC}/namespaces/kube-system/roles")),
        p(
            "POST",
            format!("{RBAC}/namespaces/kube-system/rolebindings"),
        ),
        p("POST", format!("{ks}/configmaps")),
        p("POST", format!("{RBAC}/namespaces/kube-system/roles")),
        p(
            "POST",
            format!("{RBAC}/namespaces/kube-system/rolebindings"),
        ),
        p("GET", "/api/v1/nodes/cp-1".into()), // 404: not registered yet
        p("GET", "/api/v1/nodes/cp-1".into()),
        p("GET", "/api/v1/nodes/cp-1".into()), // the kubelet updates it right after
        p("PATCH", "/api/v1/nodes/cp-1".into()), // 409: stale resourceVersion
        p("GET", "/api/v1/nodes/cp-1".into()),
        p("PATCH", "/api/v1/nodes/cp-1".into()),
        p("POST", format!("{ks}/secrets")),
        p("POST", format!("{RBAC}/clusterroles")),
    ];
    want.extend(std::iter::repeat_n(
        p("POST", format!("{RBAC}/clusterrolebindings")),
        4,
    ));
    want.push(p(
        "POST",
        "/api/v1/namespaces/kube-public/configmaps".into(),
    ));
    want.push(p("POST", format!("{RBAC}/namespaces/kube-public/roles")));
    want.push(p(
        "POST",
        format!("{RBAC}/namespaces/kube-public/rolebindings"),
    ));
    // addon: CoreDNS, then kube-proxy
    let apps = "/apis/apps/v1/namespaces/kube-system";
    want.extend([
        p("POST", format!("{ks}/configmaps")),
        p("POST", format!("{RBAC}/clusterroles")),
        p("POST", format!("{RBAC}/clusterrolebindings")),
        p("POST", format!("{ks}/serviceaccounts")),
        p("POST", format!("{apps}/deployments")),
        p("POST", format!("{ks}/services")),
        p("POST", format!("{ks}/configmaps")),
        p("POST", format!("{apps}/daemonsets")),
        p("POST", format!("{ks}/serviceaccounts")),
        p("POST", format!("{RBAC}/clusterrolebindings")),
        p("POST", format!("{RBAC}/namespaces/kube-system/roles")),
        p(
            "POST",
            format!("{RBAC}/namespaces/kube-system/rolebindings"),
        ),
    ]);
    assert_eq!(seq, want);
    // a phase's POSTs are written ahead of their answers (Kube::apply_all
    // pipelines them): the stand-in had the next one in hand when it read
    // one to its end. A client that waits for each answer never shows this.
    let ahead: Vec<&str> = reqs
        .iter()
        .filter(|r| r.ahead)
        .map(|r| r.path.as_str())
        .collect();
    // Here 24 of the 35 are: every POST but each phase's last. Asked for:
    // one per phase, which leaves room for bytes split up in transit.
    assert!(
        reqs.iter()
            .filter(|r| r.method == "POST" && r.ahead)
            .count()
            >= 3,
        "POSTs written ahead of an answer: {ahead:?}"
    );
    // admin.conf's client is made once and shared by every API phase: its
    // requests ride one kept-alive TLS connection (super-admin.conf's is its own)
    let admin = reqs[0]
        .client_cert
        .clone()
        .expect("admin.conf's client certificate");
    assert_ne!(
        reqs[1].client_cert.as_ref(),
        Some(&admin),
        "the retry is super-admin.conf's"
    );
    let mut conns: Vec<usize> = reqs
        .iter()
        .filter(|r| r.client_cert.as_ref() == Some(&admin))
        .map(|r| r.connection)
        .collect();
    conns.dedup();
    assert_eq!(
        conns.len(),
        1,
        "admin.conf's requests used connections {conns:?}"
    );
    // wait-control-plane polled /livez as admin.conf's user (the local API
    // server is the control-plane endpoint here) on that same connection,
    // before the first API phase: two TLS connections in all, admin.conf's
    // and super-admin.conf's
    let all = c.api.server.requests();
    let livez: Vec<&Request> = all.iter().filter(|r| r.path == "/livez").collect();
    assert!(!livez.is_empty(), "wait-control-plane polled /livez");
    assert!(
        livez
            .iter()
            .all(|r| r.client_cert.as_ref() == Some(&admin) && r.connection == conns[0]),
        "/livez went on connections {:?}, admin.conf's is {}",
        livez.iter().map(|r| r.connection).collect::<Vec<_>>(),
        conns[0]
    );
    assert_eq!(all[0].path, "/livez", "the health poll comes first");
    let mut every: Vec<usize> = all.iter().map(|r| r.connection).collect();
    every.sort_unstable();
    every.dedup();
    assert_eq!(
        every.len(),
        2,
        "TLS connections to the API server: {every:?}"
    );

    // every call as admin.conf's user, except the binding it may not create yet
    let cns: Vec<String> = reqs.iter().map(client_cn).collect();
    assert_eq!(cns[1], "kubernetes-super-admin");
    assert!(
        cns.iter()
            .enumerate()
            .all(|(i, cn)| i == 1 || cn == "kubernetes-admin"),
        "{cns:?}"
    );
    // kubeadm:cluster-admins
    for r in &reqs[0..2] {
        let b: ClusterRoleBinding = body(r);
        assert_eq!(b.metadata.name.as_deref(), Some("kubeadm:cluster-admins"));
        assert_eq!(b.role_ref.name, "cluster-admin");
        assert_eq!(subjects(&b.subjects), vec![g("kubeadm:cluster-admins")]);
    }
    // upload-config
    let cm: ConfigMap = body(&reqs[2]);
    assert_eq!(cm.metadata.name.as_deref(), Some("kubeadm-config"));
    assert_eq!(cm.metadata.namespace.as_deref(), Some("kube-system"));
    let cc: Value =
        serde_norway::from_str(&cm.data.as_ref().unwrap()["ClusterConfiguration"]).unwrap();
    assert_eq!(cc["apiVersion"], "kubeadm.k8s.io/v1beta4");
    assert_eq!(cc["kind"], "ClusterConfiguration");
    assert_eq!(cc["networking"]["podSubnet"], "10.244.0.0/16");
    assert_eq!(cc["clusterName"], "kubernetes");
    assert_eq!(
        cc["controllerManager"]["extraArgs"][0]["name"],
        "secure-port"
    );
    for (i, name, cm_name) in [
        (3, "kubeadm:nodes-kubeadm-config", "kubeadm-config"),
        (6, "kubeadm:kubelet-config", "kubelet-config"),
    ] {
        let role: Role = body(&reqs[i]);
        assert_eq!(role.metadata.name.as_deref(), Some(name));
        let rule = &role.rules.as_ref().unwrap()[0];
        assert_eq!(rule.verbs, vec!["get"]);
        assert_eq!(
            rule.resources.as_deref(),
            Some(&["configmaps".to_string()][..])
        );
        assert_eq!(
            rule.resource_names.as_deref(),
            Some(&[cm_name.to_string()][..])
        );
        let rb: RoleBinding = body(&reqs[i + 1]);
        assert_eq!(rb.metadata.name.as_deref(), Some(name));
        assert_eq!(
            (rb.role_ref.kind.as_str(), rb.role_ref.name.as_str()),
            ("Role", name)
        );
        let mut subs = subjects(&rb.subjects);
        subs.sort();
        assert_eq!(subs, vec![g(GROUP), g("system:nodes")]);
    }
    let kc: ConfigMap = body(&reqs[5]);
    assert_eq!(kc.metadata.name.as_deref(), Some("kubelet-config"));
    let on_disk = std::fs::read_to_string(c.root.join("var/lib/kubelet/config.yaml")).unwrap();
    assert_eq!(kc.data.as_ref().unwrap()["kubelet"], on_disk);
    let ann = kc
        .metadata
        .annotations
        .as_ref()
        .expect("kubelet-config signed");
    assert_eq!(ann[HASH], kubeadm_hash(&kc));
    assert!(ann[HASH].starts_with("sha256:") && ann[HASH].len() == 7 + 64);
    assert!(
        cm.metadata.annotations.is_none(),
        "kubeadm-config is not signed"
    );
    // mark-control-plane: the patched node has the labels and both taints
    let node: Node =
        serde_json::from_value(c.api.state().objects["/api/v1/nodes/cp-1"].clone()).unwrap();
    assert!(
        node.metadata.annotations.is_none(),
        "1.34 (NodeLocalCRISocket on): no cri-socket annotation"
    );
    let labels = node.metadata.labels.unwrap();
    assert_eq!(labels["node-role.kubernetes.io/control-plane"], "");
    assert_eq!(
        labels["node.kubernetes.io/exclude-from-external-load-balancers"],
        ""
    );
    assert_eq!(
        labels["kubernetes.io/hostname"], "cp-1",
        "existing labels kept"
    );
    let taints: Vec<(String, String)> = node
        .spec
        .unwrap()
        .taints
        .unwrap()
        .into_iter()
        .map(|t| (t.key, t.effect))
        .collect();
    assert_eq!(
        taints,
        vec![
            ("node.kubernetes.io/not-ready".into(), "NoSchedule".into()),
            (
                "node-role.kubernetes.io/control-plane".into(),
                "NoSchedule".into()
            ),
        ]
    );
    let stale: Value = body(&reqs[11]);
    let patch: Value = body(&reqs[13]);
    assert_ne!(
        stale["metadata"]["resourceVersion"], patch["metadata"]["resourceVersion"],
        "the retry carries the fresh resourceVersion"
    );
    assert!(patch["metadata"]["resourceVersion"].is_string(), "{patch}");
    // bootstrap-token
    let secret: Secret = body(&reqs[14]);
    assert_eq!(
        secret.type_.as_deref(),
        Some("bootstrap.kubernetes.io/token")
    );
    assert_eq!(secret.metadata.namespace.as_deref(), Some("kube-system"));
    let d = secret.data.unwrap();
    let get = |k: &str| String::from_utf8(d[k].0.clone()).unwrap();
    let (id, sec) = (get("token-id"), get("token-secret"));
    assert_eq!(
        secret.metadata.name.as_deref(),
        Some(format!("bootstrap-token-{id}").as_str())
    );
    assert!(id.len() == 6 && sec.len() == 16, "generated token shape");
    assert_eq!(get("usage-bootstrap-signing"), "true");
    assert_eq!(get("usage-bootstrap-authentication"), "true");
    assert_eq!(get("auth-extra-groups"), GROUP);
    let left = expires_in(&get("expiration"));
    assert!(
        left > time::Duration::hours(23) && left <= time::Duration::hours(24),
        "ttl 24h: {left}"
    );
    let cr: ClusterRole = body(&reqs[15]);
    assert_eq!(cr.metadata.name.as_deref(), Some("kubeadm:get-nodes"));
    assert_eq!(
        cr.rules.unwrap()[0].resources.as_deref(),
        Some(&["nodes".to_string()][..])
    );
    let crbs: Vec<Binding> = reqs[16..20]
        .iter()
        .map(|r| {
            let b: ClusterRoleBinding = body(r);
            (
                b.metadata.name.unwrap(),
                b.role_ref.name,
                subjects(&b.subjects),
            )
        })
        .collect();
    assert_eq!(
        crbs,
        vec![
            (
                "kubeadm:get-nodes".into(),
                "kubeadm:get-nodes".into(),
                vec![g(GROUP)]
            ),
            (
                "kubeadm:kubelet-bootstrap".into(),
                "system:node-bootstrapper".into(),
                vec![g(GROUP)]
            ),
            (
                "kubeadm:node-autoapprove-bootstrap".into(),
                "system:certificates.k8s.io:certificatesigningrequests:nodeclient".into(),
                vec![g(GROUP)]
            ),
            (
                "kubeadm:node-autoapprove-certificate-rotation".into(),
                "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient".into(),
                vec![g("system:nodes")]
            ),
        ]
    );
    let ci: ConfigMap = body(&reqs[20]);
    assert_eq!(ci.metadata.name.as_deref(), Some("cluster-info"));
    assert_eq!(ci.metadata.namespace.as_deref(), Some("kube-public"));
    let kubeconfig = &ci.data.as_ref().unwrap()["kubeconfig"];
    assert!(
        kubeconfig.contains(&format!(
            "server: https://127.0.0.1:{}\n  name: \"\"\n",
            c.api.port()
        )),
        "{kubeconfig}"
    );
    let role: Role = body(&reqs[21]);
    assert_eq!(
        role.metadata.name.as_deref(),
        Some("kubeadm:bootstrap-signer-clusterinfo")
    );
    assert_eq!(
        role.rules.unwrap()[0].resource_names.as_deref(),
        Some(&["cluster-info".to_string()][..])
    );
    let rb: RoleBinding = body(&reqs[22]);
    assert_eq!(
        subjects(&rb.subjects),
        vec![("User".into(), "system:anonymous".into())]
    );
    check_addons(
        &reqs[23..],
        c.api.port(),
        cc["kubernetesVersion"].as_str().unwrap(),
    );
    (id, sec)
}

/// The addon phase's twelve requests: CoreDNS, then kube-proxy.
fn check_addons(reqs: &[Request], api_port: u16, version: &str) {
    let ks = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, name: &str| {
        assert_eq!(m.name.as_deref(), Some(name));
        assert_eq!(m.namespace.as_deref(), Some("kube-system"));
    };
    let sa = |name: &str| ("ServiceAccount".to_string(), name.to_string());
    // CoreDNS
    let cm: ConfigMap = body(&reqs[0]);
    ks(&cm.metadata, "coredns");
    let corefile = &cm.data.as_ref().unwrap()["Corefile"];
    assert!(
        corefile.contains("kubernetes cluster.local in-addr.arpa ip6.arpa {"),
        "{corefile}"
    );
    assert!(
        corefile.contains("disable success cluster.local"),
        "{corefile}"
    );
    let cr: ClusterRole = body(&reqs[1]);
    assert_eq!(cr.metadata.name.as_deref(), Some("system:coredns"));
    let rules = cr.rules.unwrap();
    assert_eq!(rules.len(), 2);
    assert_eq!(
        rules[1].resources.as_deref(),
        Some(&["endpointslices".to_string()][..])
    );
    let crb: ClusterRoleBinding = body(&reqs[2]);
    assert_eq!(crb.metadata.name.as_deref(), Some("system:coredns"));
    assert_eq!(crb.role_ref.name, "system:coredns");
    assert_eq!(subjects(&crb.subjects), vec![sa("coredns")]);
    assert_eq!(
        crb.subjects.unwrap()[0].namespace.as_deref(),
        Some("kube-system")
    );
    let acct: ServiceAccount = body(&reqs[3]);
    ks(&acct.metadata, "coredns");
    let dep: Deployment = body(&reqs[4]);
    ks(&dep.metadata, "coredns");
    assert_eq!(dep.metadata.labels.unwrap()["k8s-app"], "kube-dns");
    assert_eq!(dep.spec.replicas, Some(2));
    assert_eq!(
        dep.spec.selector.match_labels.unwrap()["k8s-app"],
        "kube-dns"
    );
    let tmpl = dep.spec.template;
    assert_eq!(
        tmpl.metadata.unwrap().labels.unwrap()["k8s-app"],
        "kube-dns"
    );
    let pod = tmpl.spec.unwrap();
    let (facts, _) = kubeboot::manifests::versions::for_version(version);
    assert_eq!(
        pod.containers[0].image.as_deref(),
        Some(format!("registry.k8s.io/coredns/coredns:{}", facts.coredns_tag).as_str())
    );
    assert_eq!(pod.service_account_name.as_deref(), Some("coredns"));
    assert_eq!(
        pod.volumes.unwrap()[0].config_map.as_ref().unwrap().name,
        "coredns"
    );
    let svc: Service = body(&reqs[5]);
    ks(&svc.metadata, "kube-dns");
    let labels = svc.metadata.labels.unwrap();
    assert_eq!(labels["k8s-app"], "kube-dns");
    assert_eq!(labels["kubernetes.io/cluster-service"], "true");
    let spec = svc.spec.unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.10"));
    assert_eq!(spec.selector.unwrap()["k8s-app"], "kube-dns");
    assert_eq!(spec.ports.unwrap().len(), 3);
    // kube-proxy, in kubeadm's EnsureProxyAddon order: ConfigMap,
    // DaemonSet, then ServiceAccount, ClusterRoleBinding, Role, RoleBinding
    let cm: ConfigMap = body(&reqs[6]);
    ks(&cm.metadata, "kube-proxy");
    assert_eq!(
        cm.metadata.annotations.as_ref().expect("signed")[HASH],
        kubeadm_hash(&cm),
        "kube-proxy ConfigMap signed over config.conf and kubeconfig.conf"
    );
    assert_eq!(cm.metadata.labels.unwrap()["app"], "kube-proxy");
    let data = cm.data.unwrap();
    let conf: Value = serde_norway::from_str(&data["config.conf"]).unwrap();
    assert_eq!(conf["kind"], "KubeProxyConfiguration");
    assert_eq!(conf["clusterCIDR"], "10.244.0.0/16");
    assert_eq!(conf["bindAddress"], "0.0.0.0");
    assert_eq!(
        conf["clientConnection"]["kubeconfig"],
        "/var/lib/kube-proxy/kubeconfig.conf"
    );
    let kc: Value = serde_norway::from_str(&data["kubeconfig.conf"]).unwrap();
    assert_eq!(
        kc["clusters"][0]["cluster"]["server"],
        format!("https://127.0.0.1:{api_port}")
    );
    let ds: DaemonSet = body(&reqs[7]);
    ks(&ds.metadata, "kube-proxy");
    assert_eq!(ds.metadata.labels.unwrap()["k8s-app"], "kube-proxy");
    assert_eq!(
        ds.spec.selector.match_labels.unwrap()["k8s-app"],
        "kube-proxy"
    );
    let pod = ds.spec.template.spec.unwrap();
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(pod.service_account_name.as_deref(), Some("kube-proxy"));
    let c = &pod.containers[0];
    assert_eq!(
        c.image.as_deref(),
        Some(format!("registry.k8s.io/kube-proxy:{version}").as_str())
    );
    assert_eq!(
        c.security_context.as_ref().unwrap().privileged,
        Some(true),
        "kubeadm runs kube-proxy privileged"
    );
    let tol = pod.tolerations.unwrap();
    assert_eq!(tol.len(), 1, "one toleration, `operator: Exists`: {tol:?}");
    assert_eq!(
        (tol[0].key.as_deref(), tol[0].operator.as_deref()),
        (None, Some("Exists"))
    );
    let acct: ServiceAccount = body(&reqs[8]);
    ks(&acct.metadata, "kube-proxy");
    let crb: ClusterRoleBinding = body(&reqs[9]);
    assert_eq!(crb.metadata.name.as_deref(), Some("kubeadm:node-proxier"));
    assert_eq!(crb.role_ref.name, "system:node-proxier");
    assert_eq!(subjects(&crb.subjects), vec![sa("kube-proxy")]);
    let role: Role = body(&reqs[10]);
    ks(&role.metadata, "kube-proxy");
    assert_eq!(
        role.rules.unwrap()[0].resource_names.as_deref(),
        Some(&["kube-proxy".to_string()][..])
    );
    let rb: RoleBinding = body(&reqs[11]);
    ks(&rb.metadata, "kube-proxy");
    assert_eq!(subjects(&rb.subjects), vec![g(GROUP)]);
}

fn assert_no_secret(secret: &str, o: &Output, status_text: &str) {
    for (what, t) in [
        ("stdout", text(&o.stdout)),
        ("stderr", text(&o.stderr)),
        ("status.json", status_text.to_string()),
    ] {
        assert!(!t.contains(secret), "token secret in {what}: {t}");
    }
}

#[test]
fn init_runs_the_api_phases_and_a_rerun_converges() {
    let c = cluster("init", 34);
    let o = firstboot(&c.api, &c.root, &c.systemctl, &c.healthz, "20");
    assert!(
        o.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    let (st_text, st) = status(&c.root);
    assert_eq!(st["result"], "success");
    let done: Vec<&str> = st["phases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["outcome"] == "done")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        done,
        [
            "preflight",
            "certs",
            "kubeconfig",
            "etcd",
            "control-plane",
            "kubelet-start",
            "wait-control-plane",
            "upload-config",
            "mark-control-plane",
            "bootstrap-token",
            "kubelet-finalize",
            "addon",
            "show-join-command"
        ]
    );
    let (id, secret) = check_first_run(&c);
    assert_no_secret(&secret, &o, &st_text);
    // show-join-command: the NodeConfig with the id, the CA pin, no secret
    let err = text(&o.stderr);
    let pin = text(
        &kubeboot(&[
            "certs",
            "ca-hash",
            c.root.join("etc/kubernetes/pki/ca.crt").to_str().unwrap(),
        ])
        .stdout,
    );
    assert!(err.contains(&format!("token: {id}.<secret>")), "{err}");
    assert!(
        err.contains(&format!("caCertHash: {}", pin.trim())),
        "{err}"
    );
    assert!(
        err.contains(&format!("server: 127.0.0.1:{}", c.api.port())),
        "{err}"
    );
    assert!(
        !err.contains("does not yet run kubeadm's API phases"),
        "{err}"
    );

    // The controller manager signs cluster-info for the first token.
    let ci = api_support::CLUSTER_INFO;
    c.api.sign_now();
    let sig1 = format!("jws-kubeconfig-{id}");
    assert!(c.api.state().objects[ci]["data"][&sig1].is_string());
    // A user scales CoreDNS and edits its Corefile; a rerun keeps both.
    let dep = "/apis/apps/v1/namespaces/kube-system/deployments/coredns";
    let corefile = "/api/v1/namespaces/kube-system/configmaps/coredns";
    c.api.edit(dep, |d| d["spec"]["replicas"] = json!(3));
    c.api.edit(corefile, |cm| {
        cm["data"]["Corefile"] = json!(".:53 { edited }")
    });
    let first = api_requests(&c.api).len();
    let first_log = c.api.log().len();
    std::fs::remove_file(c.root.join("var/lib/kubeboot/done")).unwrap();
    let o = firstboot(&c.api, &c.root, &c.systemctl, &c.healthz, "20");
    assert!(o.status.success(), "rerun: {}", text(&o.stderr));
    let again = &api_requests(&c.api)[first..];
    let log = &c.api.log()[first_log..];
    // every existing object: POST (409), GET, PUT (200)
    let updated: std::collections::BTreeSet<&str> = log
        .iter()
        .filter(|l| l.method == "PUT" && l.status == 200)
        .map(|l| l.url.as_str())
        .collect();
    // 6 upload-config + 5 RBAC + 3 cluster-info + 11 addon objects exist
    // already; the new token's Secret is created; the CoreDNS ConfigMap is kept
    assert_eq!(
        updated.len(),
        25,
        "{:?}",
        log.iter()
            .map(|l| format!("{} {} {}", l.method, l.url, l.status))
            .collect::<Vec<_>>()
    );
    // each update: a GET of the item and at once its PUT, after a POST to
    // its collection (a phase's POSTs go out together, written ahead)
    let mut updates = 0;
    for (i, w) in again.windows(2).enumerate() {
        if w[1].method == "PUT" {
            assert_eq!((w[0].method.as_str(), &w[0].path), ("GET", &w[1].path));
            assert!(
                again[..i]
                    .iter()
                    .any(|p| p.method == "POST" && w[0].path.starts_with(&format!("{}/", p.path))),
                "no POST to the collection of {} before its update",
                w[0].path
            );
            updates += 1;
        }
    }
    assert!(updates >= 25, "{updates} GET+PUT pairs");
    // The signer re-signed cluster-info for the new token right after
    // kubeboot read it: the first PUT was stale (409) and was retried.
    let ci_puts: Vec<u16> = log
        .iter()
        .filter(|l| l.method == "PUT" && l.url == ci)
        .map(|l| l.status)
        .collect();
    assert_eq!(ci_puts, [409, 200], "cluster-info update raced the signer");
    let last_put: Value = body(
        again
            .iter()
            .rfind(|r| r.method == "PUT" && r.path == ci)
            .unwrap(),
    );
    assert!(
        last_put["data"][&sig1].is_string(),
        "the update keeps the signer's signatures: {last_put}"
    );
    assert!(
        again.iter().all(|r| r.method != "PATCH"),
        "node already marked: no patch"
    );
    let secrets = again
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/secrets"))
        .count();
    assert_eq!(secrets, 1);
    let state = c.api.state();
    let sigs = state.objects[ci]["data"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("jws-kubeconfig-"))
        .count();
    assert_eq!(sigs, 2, "signed for both tokens");
    assert_eq!(state.objects[dep]["spec"]["replicas"], 3, "scale kept");
    assert_eq!(
        state.objects[corefile]["data"]["Corefile"], ".:53 { edited }",
        "Corefile kept"
    );
    assert!(
        !again
            .iter()
            .any(|r| r.path == corefile && r.method != "POST"),
        "the CoreDNS ConfigMap is only offered (create), never read or replaced"
    );
    let (st_text, _) = status(&c.root);
    assert_no_secret(&secret, &o, &st_text);
    drop(state);
    std::fs::remove_dir_all(&c.dir).unwrap();
}

#[test]
fn a_refusing_api_server_fails_upload_config_within_bounds() {
    let c = cluster("refuse", 34);
    c.api
        .fault(Fault::new("", "/apis/rbac", FaultKind::Status(403)));
    let start = std::time::Instant::now();
    let o = firstboot(&c.api, &c.root, &c.systemctl, &c.healthz, "5");
    // 403 is final: no retry loop runs out a budget
    assert!(
        start.elapsed() < std::time::Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let (_, st) = status(&c.root);
    assert_eq!(st["result"], "failure");
    assert_eq!(st["phase"], "upload-config");
    let e = st["error"].as_str().unwrap();
    // the API server's own message (its Status body) is in the error
    assert!(
        e.contains("clusterrolebindings")
            && e.contains("403")
            && e.contains("injected fault: Forbidden"),
        "{e}"
    );
    assert!(!c.root.join("var/lib/kubeboot/done").exists());
    std::fs::remove_dir_all(&c.dir).unwrap();
}

/// A worker joins the cluster init just made, through the same stand-in:
/// anonymous discovery of the cluster-info init uploaded (readable through
/// init's RoleBinding, signed by the stand-in's bootstrap signer, first
/// answered unsigned), then the bootstrap token init created, authorized
/// by init's RBAC objects.
#[test]
fn a_worker_joins_the_cluster_init_made() {
    let c = cluster("worker", 34);
    let o = firstboot(&c.api, &c.root, &c.systemctl, &c.healthz, "20");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let (id, secret) = check_first_run(&c);
    let pki = c.root.join("etc/kubernetes/pki");
    let ca = std::fs::read(pki.join("ca.crt")).unwrap();
    let first_log = c.api.log().len();
    let wroot = c.dir.join("worker");
    let pin = text(&kubeboot(&["certs", "ca-hash", pki.join("ca.crt").to_str().unwrap()]).stdout);
    seed(
        &wroot,
        &format!(
            "#cloud-config\nkubeboot:\n  role: worker\n  server: 127.0.0.1:{}\n  token: {id}.{secret}\n  caCertHash: {}\n  node:\n    name: worker-1\n",
            c.api.port(),
            pin.trim()
        ),
    );
    let wctl = fake_systemctl(&c.dir, &wroot);
    let o = firstboot(&c.api, &wroot, &wctl, &c.healthz, "20");
    assert!(
        o.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    let (st_text, st) = status(&wroot);
    assert_eq!(st["result"], "success");
    assert_no_secret(&secret, &o, &st_text);
    assert!(text(&o.stderr).contains("using the cluster's kubelet configuration"));
    assert!(wroot.join("etc/kubernetes/kubelet.conf").is_file());
    let log = &c.api.log()[first_log..];
    let ci = api_support::CLUSTER_INFO;
    let reads: Vec<(&str, u16)> = log
        .iter()
        .filter(|l| l.url == ci)
        .map(|l| (l.user.as_str(), l.status))
        .collect();
    assert!(
        reads.len() >= 3 && reads.iter().all(|r| *r == ("system:anonymous", 200)),
        "unsigned first, then signed, then the verified fetch: {reads:?}"
    );
    let kc = "/api/v1/namespaces/kube-system/configmaps/kubelet-config";
    let token_user = format!("system:bootstrap:{id}");
    assert!(
        log.iter()
            .any(|l| l.url == kc && l.status == 200 && l.user == token_user),
        "{log:?}"
    );
    assert_eq!(
        std::fs::read(wroot.join("etc/kubernetes/pki/ca.crt")).unwrap(),
        ca
    );
    std::fs::remove_dir_all(&c.dir).unwrap();
}

/// `upload-certs`: with a certificate key, init stores the shared CAs and
/// sa keys in kube-system/kubeadm-certs, each AES-256-GCM encrypted with the
/// key (a joining control plane's download-certs reads exactly this), and
/// lets bootstrap-token holders read that one Secret.
#[test]
fn upload_certs_encrypts_the_shared_files_with_the_certificate_key() {
    const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let c = cluster("upload-certs", 34);
    edit_userdata(
        &c,
        "kubeboot:\n",
        &format!("kubeboot:\n  certificateKey: {KEY}\n"),
    );
    let o = firstboot(&c.api, &c.root, &c.systemctl, &c.healthz, "20");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let (st_text, st) = status(&c.root);
    assert!(
        !st_text.contains(KEY) && !text(&o.stderr).contains(KEY) && !text(&o.stdout).contains(KEY)
    );
    let done: Vec<&str> = st["phases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["outcome"] == "done")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    let at = |n: &str| {
        done.iter()
            .position(|p| *p == n)
            .unwrap_or_else(|| panic!("{n} not done: {done:?}"))
    };
    assert!(
        at("upload-config") < at("upload-certs") && at("upload-certs") < at("mark-control-plane"),
        "{done:?}"
    );
    let reqs = api_requests(&c.api);
    let post = reqs
        .iter()
        .find(|r| {
            r.method == "POST"
                && r.path == "/api/v1/namespaces/kube-system/secrets"
                && body::<Secret>(r).metadata.name.as_deref() == Some("kubeadm-certs")
        })
        .expect("kubeadm-certs created");
    let secret: Secret = body(post);
    let data = secret.data.unwrap();
    let key = kubeboot::api::certs::key_bytes(&S::new(KEY)).unwrap();
    let pki = c.root.join("etc/kubernetes/pki");
    for (name, file) in [
        ("ca.crt", "ca.crt"),
        ("ca.key", "ca.key"),
        ("front-proxy-ca.crt", "front-proxy-ca.crt"),
        ("front-proxy-ca.key", "front-proxy-ca.key"),
        ("sa.key", "sa.key"),
        ("sa.pub", "sa.pub"),
        ("etcd-ca.crt", "etcd/ca.crt"),
        ("etcd-ca.key", "etcd/ca.key"),
    ] {
        let blob = &data.get(name).unwrap_or_else(|| panic!("{name} missing")).0;
        let on_disk = std::fs::read(pki.join(file)).unwrap();
        assert_ne!(blob, &on_disk, "{name} stored in the clear");
        assert_eq!(
            kubeboot::api::certs::decrypt(&key, blob).as_deref(),
            Some(on_disk.as_slice()),
            "{name}"
        );
        assert!(
            kubeboot::api::certs::decrypt(&[0u8; 32], blob).is_none(),
            "{name} opens with another key"
        );
    }
    let role: Role = body(
        reqs.iter()
            .find(|r| {
                r.method == "POST"
                    && r.path == format!("{RBAC}/namespaces/kube-system/roles")
                    && body::<Role>(r).metadata.name.as_deref() == Some("kubeadm:kubeadm-certs")
            })
            .expect("Role kubeadm:kubeadm-certs"),
    );
    let rule = &role.rules.unwrap()[0];
    assert_eq!(
        rule.resources.as_deref(),
        Some(&["secrets".to_string()][..])
    );
    assert_eq!(
        rule.resource_names.as_deref(),
        Some(&["kubeadm-certs".to_string()][..])
    );
    assert_eq!(rule.verbs, vec!["get".to_string()]);
    let rb: RoleBinding = body(
        reqs.iter()
            .find(|r| {
                r.method == "POST"
                    && r.path == format!("{RBAC}/namespaces/kube-system/rolebindings")
                    && body::<RoleBinding>(r).metadata.name.as_deref()
                        == Some("kubeadm:kubeadm-certs")
            })
            .expect("RoleBinding"),
    );
    assert_eq!(subjects(&rb.subjects), vec![g(GROUP)]);

    // The TTL owner: a 2 h token Secret made just before, read back for its
    // UID, controls kubeadm-certs.
    let ks = "/api/v1/namespaces/kube-system/secrets";
    let seq: Vec<(String, String)> = reqs
        .iter()
        .filter(|r| r.path.starts_with(ks))
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    let (owner, owner_secret) = check_owner_token(&reqs, &c.api, &o, &st_text);
    let p = |m: &str, path: String| (m.to_string(), path);
    assert_eq!(
        &seq[..4],
        [
            p("GET", format!("{ks}/kubeadm-certs")), // 404: no previous owner
            p("POST", ks.to_string()),
            p("GET", format!("{ks}/{owner}")),
            p("POST", ks.to_string()),
        ]
    );

    // A rerun uploads again under a new owner token and expires the old
    // one at once (kubeadm would leave one 2 h token per run).
    let first = api_requests(&c.api).len();
    std::fs::remove_file(c.root.join("var/lib/kubeboot/done")).unwrap();
    let o = firstboot(&c.api, &c.root, &c.systemctl, &c.healthz, "20");
    assert!(o.status.success(), "rerun: {}", text(&o.stderr));
    let (st_text, _) = status(&c.root);
    assert_no_secret(&owner_secret, &o, &st_text);
    let again: Vec<Request> = api_requests(&c.api).split_off(first);
    let (owner2, _) = check_owner_token(&again, &c.api, &o, &st_text);
    assert_ne!(owner2, owner);
    let seq: Vec<(String, String)> = again
        .iter()
        .filter(|r| {
            r.path.starts_with(&format!("{ks}/{owner}")) || r.path.ends_with("/kubeadm-certs")
        })
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    assert_eq!(
        seq,
        [
            p("GET", format!("{ks}/kubeadm-certs")), // owned by the first token
            p("GET", format!("{ks}/kubeadm-certs")), // create said 409: update
            p("PUT", format!("{ks}/kubeadm-certs")),
            p("GET", format!("{ks}/{owner}")),
            p("PATCH", format!("{ks}/{owner}")),
        ]
    );
    let patch: Value = body(
        again
            .iter()
            .find(|r| r.method == "PATCH" && r.path.ends_with(&owner))
            .unwrap(),
    );
    assert_eq!(
        patch.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["data"],
        "only the expiration changes: {patch}"
    );
    let mut state = c.api.state();
    let old: Secret =
        serde_json::from_value(state.objects[&format!("{ks}/{owner}")].clone()).unwrap();
    let exp = String::from_utf8(old.data.unwrap()["expiration"].0.clone()).unwrap();
    assert!(
        expires_in(&exp) <= time::Duration::ZERO,
        "old owner expired: {exp}"
    );
    let certs = &state.objects[&format!("{ks}/kubeadm-certs")];
    assert_eq!(
        certs["metadata"]["ownerReferences"][0]["name"],
        owner2.as_str()
    );
    assert_eq!(
        certs["metadata"]["ownerReferences"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // A third run, after someone made the owner a token of their own (its
    // description changed): the old owner is left alone, not expired.
    let mine = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode("my own token")
    };
    state.objects.get_mut(&format!("{ks}/{owner2}")).unwrap()["data"]["description"] = mine.into();
    drop(state);
    let first = api_requests(&c.api).len();
    std::fs::remove_file(c.root.join("var/lib/kubeboot/done")).unwrap();
    let o = firstboot(&c.api, &c.root, &c.systemctl, &c.healthz, "20");
    assert!(o.status.success(), "third run: {}", text(&o.stderr));
    let again: Vec<Request> = api_requests(&c.api).split_off(first);
    assert!(
        again
            .iter()
            .any(|r| r.method == "GET" && r.path.ends_with(&owner2)),
        "the old owner is read"
    );
    assert!(
        !again
            .iter()
            .any(|r| r.method == "PATCH" && r.path.ends_with(&owner2)),
        "a token that is not kubeadm's certs token is not expired"
    );
    assert!(
        text(&o.stderr).contains("left alone: not kubeadm's certs token"),
        "{}",
        text(&o.stderr)
    );
    std::fs::remove_dir_all(&c.dir).unwrap();
}

/// Checks the owner token upload-certs created in `reqs` and the
/// ownerReference of kubeadm-certs on it; returns its Secret name and the
/// token secret (which must appear nowhere in the output).
fn check_owner_token(
    reqs: &[Request],
    api: &StandIn,
    o: &Output,
    st_text: &str,
) -> (String, String) {
    let ks = "/api/v1/namespaces/kube-system/secrets";
    let posted: Vec<Secret> = reqs
        .iter()
        .filter(|r| r.method == "POST" && r.path == ks)
        .map(body)
        .collect();
    let tokens: Vec<&Secret> = posted
        .iter()
        .filter(|s| {
            s.data
                .as_ref()
                .unwrap()
                .get("description")
                .map(|d| d.0.as_slice())
                == Some(b"Proxy for managing TTL for the kubeadm-certs secret".as_slice())
        })
        .collect();
    assert_eq!(tokens.len(), 1, "one owner token per run");
    let tok = tokens[0];
    assert_eq!(tok.type_.as_deref(), Some("bootstrap.kubernetes.io/token"));
    assert_eq!(tok.metadata.namespace.as_deref(), Some("kube-system"));
    let d = tok.data.as_ref().unwrap();
    let get = |k: &str| String::from_utf8(d[k].0.clone()).unwrap();
    let (id, secret) = (get("token-id"), get("token-secret"));
    assert!(id.len() == 6 && secret.len() == 16, "generated token shape");
    let name = format!("bootstrap-token-{id}");
    assert_eq!(tok.metadata.name.as_deref(), Some(name.as_str()));
    let mut keys: Vec<&str> = d.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["description", "expiration", "token-id", "token-secret"],
        "no usages, no groups"
    );
    let left = expires_in(&get("expiration"));
    assert!(
        left > time::Duration::minutes(100) && left <= time::Duration::hours(2),
        "ttl 2h: {left}"
    );
    assert_no_secret(&secret, o, st_text);
    // kubeadm-certs (created, or updated on a rerun) points at it
    let certs: Secret = reqs
        .iter()
        .filter(|r| r.path.starts_with(ks) && matches!(r.method.as_str(), "POST" | "PUT"))
        .map(body::<Secret>)
        .find(|s| s.metadata.name.as_deref() == Some("kubeadm-certs"))
        .expect("kubeadm-certs sent");
    let uid = api.state().objects[&format!("{ks}/{name}")]["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let refs = certs.metadata.owner_references.expect("ownerReferences");
    assert_eq!(refs.len(), 1);
    let r = &refs[0];
    assert_eq!(
        (
            r.api_version.as_str(),
            r.kind.as_str(),
            r.name.as_str(),
            r.uid.as_str()
        ),
        ("v1", "Secret", name.as_str(), uid.as_str())
    );
    assert_eq!(
        (r.controller, r.block_owner_deletion),
        (Some(true), Some(true))
    );
    (name, secret)
}

/// The addon objects a run created, as `Kind name` from the request paths
/// of the addon phase (everything after the cluster-info RoleBinding).
fn addon_posts(reqs: &[Request]) -> Vec<String> {
    let start = reqs
        .iter()
        .position(|r| r.path.ends_with("/namespaces/kube-public/rolebindings"))
        .expect("bootstrap-token ran")
        + 1;
    reqs[start..]
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| {
            let v: Value = body(r);
            format!(
                "{} {}",
                v["kind"].as_str().unwrap(),
                v["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

fn uploaded_cluster_configuration(reqs: &[Request]) -> Value {
    let cm: ConfigMap = reqs
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/api/v1/namespaces/kube-system/configmaps")
        .map(body::<ConfigMap>)
        .find(|c| c.metadata.name.as_deref() == Some("kubeadm-config"))
        .expect("kubeadm-config");
    serde_norway::from_str(&cm.data.unwrap()["ClusterConfiguration"]).unwrap()
}

/// An init whose userdata's `cluster:` gets `extra` lines: its API
/// requests, after a successful run.
fn init_with(name: &str, extra: &str) -> (Cluster, Vec<Request>) {
    let minor = if extra.contains("v1.33") { 33 } else { 34 };
    let c = cluster(name, minor);
    edit_userdata(&c, "  cluster:\n", &format!("  cluster:\n{extra}"));
    let o = firstboot(&c.api, &c.root, &c.systemctl, &c.healthz, "20");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let reqs = api_requests(&c.api);
    (c, reqs)
}

/// `dns.disabled`: the addon phase installs kube-proxy only, and the
/// uploaded ClusterConfiguration says CoreDNS is disabled.
#[test]
fn dns_disabled_installs_no_coredns() {
    let (c, reqs) = init_with("dns-disabled", "    dns:\n      disabled: true\n");
    assert_eq!(
        addon_posts(&reqs),
        [
            "ConfigMap kube-proxy",
            "DaemonSet kube-proxy",
            "ServiceAccount kube-proxy",
            "ClusterRoleBinding kubeadm:node-proxier",
            "Role kube-proxy",
            "RoleBinding kube-proxy",
        ]
    );
    assert!(
        !reqs
            .iter()
            .any(|r| r.path.contains("coredns") || r.path.contains("kube-dns")),
        "no CoreDNS request at all"
    );
    let cc = uploaded_cluster_configuration(&reqs);
    assert_eq!(cc["dns"], json!({"disabled": true}));
    assert_eq!(cc["proxy"], json!({}));
    std::fs::remove_dir_all(&c.dir).unwrap();
}

/// kubeadm's sub-phase names in `skipPhases` act on a live run: skipping
/// `addon/coredns` and `upload-config/kubelet` leaves kube-proxy and
/// kubeadm-config in place and sends nothing for the skipped parts.
#[test]
fn skipped_sub_phases_send_nothing_on_a_live_run() {
    let c = cluster("skip-subs", 33);
    edit_userdata(
        &c,
        "  cluster:\n",
        "  skipPhases: [addon/coredns, upload-config/kubelet]\n  cluster:\n",
    );
    let o = firstboot(&c.api, &c.root, &c.systemctl, &c.healthz, "20");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let reqs = api_requests(&c.api);
    let addons = addon_posts(&reqs);
    assert!(
        addons.contains(&"DaemonSet kube-proxy".to_string()),
        "{addons:?}"
    );
    assert!(
        !reqs
            .iter()
            .any(|r| r.path.contains("coredns") || r.path.contains("kube-dns")),
        "a CoreDNS request although addon/coredns was skipped"
    );
    let posted: Vec<String> = reqs
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/configmaps"))
        .map(|r| body::<ConfigMap>(r).metadata.name.unwrap_or_default())
        .collect();
    assert!(posted.contains(&"kubeadm-config".to_string()), "{posted:?}");
    assert!(
        !posted.contains(&"kubelet-config".to_string()),
        "{posted:?}"
    );
    // 1.33 annotates the Node with the CRI socket in upload-config/kubelet: skipped too
    assert!(
        !reqs.iter().any(|r| r.method == "PATCH"
            && String::from_utf8_lossy(&r.body).contains("kubeadm.alpha.kubernetes.io/cri-socket")),
        "the CRI socket annotation was sent although upload-config/kubelet was skipped"
    );
    std::fs::remove_dir_all(&c.dir).unwrap();
}

/// `proxy.disabled` with CoreDNS image overrides (NodeConfig; the kubeadm
/// v1beta4 spelling maps onto the same settings, see config's unit tests):
/// CoreDNS from the mirror with the given tag, no kube-proxy objects, and
/// the uploaded ClusterConfiguration keeps both.
#[test]
fn proxy_disabled_and_the_coredns_image_override() {
    let (c, reqs) = init_with(
        "proxy-disabled",
        "    dns: {imageRepository: mirror.example.test/dns, imageTag: v1.12.1-fix.1}\n    proxy: {disabled: true}\n",
    );
    assert_eq!(
        addon_posts(&reqs),
        [
            "ConfigMap coredns",
            "ClusterRole system:coredns",
            "ClusterRoleBinding system:coredns",
            "ServiceAccount coredns",
            "Deployment coredns",
            "Service kube-dns",
        ]
    );
    assert!(!reqs.iter().any(|r| r.path.contains("kube-proxy")
        || r.path.ends_with("/daemonsets")
        || r.path.ends_with("/kubeadm:node-proxier")));
    let dep: Deployment = body(
        reqs.iter()
            .find(|r| r.method == "POST" && r.path.ends_with("/deployments"))
            .unwrap(),
    );
    assert_eq!(
        dep.spec.template.spec.unwrap().containers[0]
            .image
            .as_deref(),
        Some("mirror.example.test/dns/coredns:v1.12.1-fix.1")
    );
    let cc = uploaded_cluster_configuration(&reqs);
    assert_eq!(
        cc["dns"],
        json!({"imageRepository": "mirror.example.test/dns", "imageTag": "v1.12.1-fix.1"})
    );
    assert_eq!(cc["proxy"], json!({"disabled": true}));
    std::fs::remove_dir_all(&c.dir).unwrap();
}

/// Kubernetes 1.33 (kubeadm's NodeLocalCRISocket off by default):
/// upload-config waits for the Node and annotates it with the CRI socket,
/// as kubeadm's AnnotateCRISocket does, before mark-control-plane.
#[test]
fn kubernetes_1_33_annotates_the_node_with_the_cri_socket() {
    let (c, reqs) = init_with("cri-socket", "    kubernetesVersion: v1.33.4\n");
    let node = "/api/v1/nodes/cp-1";
    // after upload-config's last object, the RoleBinding kubeadm:kubelet-config
    let start = reqs
        .iter()
        .position(|r| {
            r.method == "POST"
                && r.path.ends_with("/rolebindings")
                && body::<RoleBinding>(r).metadata.name.as_deref() == Some("kubeadm:kubelet-config")
        })
        .unwrap();
    let seq: Vec<String> = reqs[start + 1..start + 7]
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        seq,
        [
            format!("GET {node}"), // 404: not registered yet
            format!("GET {node}"),
            format!("GET {node}"),
            format!("PATCH {node}"), // the annotation
            format!("GET {node}"),   // mark-control-plane
            format!("PATCH {node}"),
        ]
    );
    let patch: Value = body(reqs.iter().find(|r| r.method == "PATCH").unwrap());
    assert_eq!(
        patch,
        json!({"metadata": {"annotations": {
            "kubeadm.alpha.kubernetes.io/cri-socket": "unix:///var/run/containerd/containerd.sock"}}})
    );
    let state = c.api.state();
    let n: Node = serde_json::from_value(state.objects[node].clone()).unwrap();
    assert_eq!(
        n.metadata.annotations.unwrap()["kubeadm.alpha.kubernetes.io/cri-socket"],
        "unix:///var/run/containerd/containerd.sock"
    );
    assert_eq!(
        n.metadata.labels.unwrap()["node-role.kubernetes.io/control-plane"],
        ""
    );
    drop(state);
    std::fs::remove_dir_all(&c.dir).unwrap();
}

/// The fake systemctl for a run on `root` (its log beside the script).
fn fake_systemctl(dir: &Path, root: &Path) -> PathBuf {
    let name = root.file_name().unwrap().to_str().unwrap();
    let script = dir.join(format!("systemctl-{name}"));
    systemctl_script(
        &script,
        root,
        &dir.join(format!("systemctl-{name}.log")),
        false,
    )
}

/// init's API phases at `--log-level trace`, with the syslog copy
/// captured: the generated token secret travels in the Secret's body (as
/// base64) and back in the server's answer, but reaches no log, not even
/// inside a raw traffic dump.
#[test]
fn init_api_phases_at_trace_level_show_the_token_nowhere() {
    use base64::Engine;
    let c = cluster("init-trace", 34);
    let syslog = cli_support::SyslogCapture::new(&c.dir);
    let healthz = format!("{}/healthz", c.healthz.base());
    let args = firstboot_args(&c.root, &c.systemctl, &healthz, "20", "20");
    let o = c.api.run(
        std::process::Command::new(env!("CARGO_BIN_EXE_kubeboot"))
            .args(["--log-level", "trace"])
            .args(&args)
            .env("KUBEBOOT_SYSLOG_SOCKET", &syslog.path)
            .env_remove("JOURNAL_STREAM"),
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let reqs = api_requests(&c.api);
    let secret_post = reqs
        .iter()
        .find(|r| r.method == "POST" && r.path.ends_with("/secrets"))
        .expect("the token Secret was created");
    let s: Secret = body(secret_post);
    let data = s.data.unwrap();
    let token_secret = String::from_utf8(data["token-secret"].0.clone()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&token_secret);
    for canary in [&token_secret, &b64] {
        cli_support::assert_no_canary(canary, &o, &syslog, &c.root);
    }
    // one trace line per request to the API server, those written ahead
    // in a batch too
    let stderr = text(&o.stderr);
    for method in ["POST", "GET", "PATCH"] {
        let to_api = format!(" {method} https://127.0.0.1:{}/", c.api.port());
        let traced = stderr
            .lines()
            .filter(|l| l.contains(&to_api) && l.contains("values not shown"))
            .count();
        let sent = c
            .api
            .server
            .requests()
            .iter()
            .filter(|r| r.method == method)
            .count();
        assert_eq!(
            traced, sent,
            "{method}: {traced} trace lines, {sent} requests"
        );
    }
    eprintln!("trace canary sweep (init API phases): 1 command, canary hits 0");
    std::fs::remove_dir_all(&c.dir).unwrap();
}
