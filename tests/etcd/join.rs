//! kubeadm's etcd-join against a real etcd (Debian's etcd 3.4, package
//! etcd-server; `etcdctl` from etcd-client):
//!
//! - node A (`init`, advertise 127.0.0.1, Kubernetes v1.33 → etcd 3.5
//!   flags, which etcd 3.4 knows) gets its PKI and `etcd.yaml` from the
//!   library; etcd A runs from the manifest's flags with 2379/2380/2381
//!   rewritten to free loopback ports (as tests/etcd/manifest.rs does);
//! - node B (`join --control-plane`, the same shared CAs) gets its own PKI;
//!   then the etcd-join library code runs as B's phase does: `member add`
//!   as a learner through the v3 JSON gateway over mutual TLS with B's
//!   `etcd/healthcheck-client`, `etcd.yaml` for B from the member list
//!   (`--initial-cluster` with A, `--initial-cluster-state=existing`), etcd
//!   B started from that manifest (emulating the kubelet), and `member
//!   promote`, retried until the learner caught up;
//! - `etcdctl member list` must show two started voting members and
//!   `endpoint health` must pass on both; a second join with the same peer
//!   URL reuses the member; an unreachable endpoint fails within its budget
//!   naming the URL and the step.
//!
//! The endpoints come from a loopback HTTPS API server that requires a
//! client certificate from the cluster CA and serves the etcd pod list with
//! kubeadm's annotation, read with B's `admin.conf` user; pods without the
//! annotation fail at once, no pods at all are retried within the budget.
//! check-etcd (every endpoint answers status) runs before `member add`, and
//! one dead endpoint stops the join with nothing added. The `etcd-join`
//! phase through the shipped binary (`kubeboot firstboot`) is
//! tests/etcdjoin_firstboot.rs.

#[allow(unused_imports)]
use crate::node_common;

#[allow(unused_imports)]
use crate::etcd_support;

#[allow(unused_imports)]
use crate::net_support;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use etcd_support::{
    Bins, Ports, debian, free_port, pypi, show, start_etcd_healthy_with, start_etcd_with,
    wait_healthy,
};
use kubeboot::api::etcd::{
    ETCD_PODS_PATH, EtcdClient, Promoted, endpoints_from_api, initial_cluster,
};
use kubeboot::config::model::{Mode, Settings};
use kubeboot::host::Paths;
use kubeboot::host::fs::Sync;
use kubeboot::manifests;
use kubeboot::pki::{self, kubeconfig};
use net_support::{Reply, Server, ok, tls_config};
use node_common::{TempRoot, settings};

fn node(name: &str, mode: Mode) -> Settings {
    let mut s = settings::control_plane();
    s.mode = mode;
    s.cluster.kubernetes_version = "v1.33.4".into();
    s.node.name = name.into();
    s.node.advertise_address = "127.0.0.1".parse().unwrap();
    s
}

fn etcdctl(bins: &Bins, root: &Path, endpoints: &str, args: &[&str]) -> Output {
    etcd_support::etcdctl_with(&bins.etcdctl, root, endpoints, args)
}

/// An HTTPS API server with A's apiserver certificate that requires a
/// client certificate from the cluster CA and lists `items` as the etcd
/// pods.
fn api_server_listing(root_a: &Path, items: serde_json::Value) -> Server {
    let pki = root_a.join("etc/kubernetes/pki");
    let config = tls_config(
        &pki.join("apiserver.crt"),
        &pki.join("apiserver.key"),
        Some(&pki.join("ca.crt")),
    );
    let list = serde_json::to_vec(&serde_json::json!({
        "apiVersion": "v1",
        "kind": "PodList",
        "metadata": {},
        "items": items,
    }))
    .unwrap();
    Server::https(config, move |req, _| {
        if req.path == ETCD_PODS_PATH {
            ok(&list)
        } else {
            Reply::Respond(404, vec![], b"not found".to_vec())
        }
    })
}

/// [`api_server_listing`] one etcd pod with `client_url` in kubeadm's annotation.
fn api_server(root_a: &Path, client_url: &str) -> Server {
    api_server_listing(
        root_a,
        serde_json::json!([{"metadata": {
            "name": "etcd-cp-a",
            "namespace": "kube-system",
            "annotations": {"kubeadm.kubernetes.io/etcd.advertise-client-urls": client_url},
        }}]),
    )
}

/// B's etcd client: B's healthcheck-client, the etcd CA, `endpoints`.
fn client(root: &Path, endpoints: Vec<String>, budget: Duration) -> EtcdClient {
    let pki = root.join("etc/kubernetes/pki/etcd");
    let read = |f: &str| std::fs::read(pki.join(f)).unwrap();
    let key =
        kubeboot::secret::Secret::new(String::from_utf8(read("healthcheck-client.key")).unwrap());
    EtcdClient::new(
        endpoints,
        &read("ca.crt"),
        &read("healthcheck-client.crt"),
        &key,
        budget,
    )
    .unwrap()
}

#[test]
fn a_second_control_plane_joins_stacked_etcd_as_learner_then_voter() {
    if let Some(bins) = debian("etcd_join with etcd 3.4") {
        stacked_join(&bins, "etcd-join");
    }
}

#[test]
fn a_second_control_plane_joins_stacked_etcd_35_as_learner_then_voter() {
    if let Some(bins) = pypi("etcd_join with etcd 3.5") {
        stacked_join(&bins, "etcd-join-35");
    }
}

/// Node A runs etcd (`bins`) from its manifest; node B joins it as a
/// learner, is promoted once its etcd runs from B's manifest, and both
/// members serve.
fn stacked_join(bins: &Bins, name: &str) {
    let tmp = TempRoot::new(name);
    let now = time::OffsetDateTime::now_utc();

    // Node A: init.
    let root_a = tmp.path().join("a");
    let paths_a = Paths::new(&root_a);
    let a = node("cp-a", Mode::Init);
    pki::ensure_tree(&a, &paths_a, now, Sync::Deferred).unwrap();
    let pod_a = manifests::etcd_with(&a, &manifests::HostInputs::default(), &[]).unwrap();
    manifests::write_pods(&paths_a, &[(manifests::ETCD, pod_a)], Sync::Deferred).unwrap();
    let ports_a = Ports::new();
    let etcd_a = start_etcd_healthy_with(
        &bins.etcd,
        &root_a,
        &ports_a,
        &tmp.path().join("etcd-a.log"),
    );

    // Node B: the shared CAs (as download-certs or the userdata bring
    // them), then its own leaves (control-plane-prepare).
    let root_b = tmp.path().join("b");
    let paths_b = Paths::new(&root_b);
    for f in etcd_support::SHARED {
        let from = root_a.join("etc/kubernetes/pki").join(f);
        let to = root_b.join("etc/kubernetes/pki").join(f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&from, &to).unwrap();
    }
    let b = node("cp-b", Mode::JoinControlPlane);
    pki::ensure_tree(&b, &paths_b, now, Sync::Deferred).unwrap();
    let ports_b = Ports::new();

    // etcd-join: the endpoints from the etcd pods' annotation, read from
    // the API server as B's admin.conf user (mutual TLS).
    kubeconfig::ensure_kubeconfigs(&b, &paths_b, now, Sync::Deferred).unwrap();
    let api = api_server(&root_a, &ports_a.client_url());
    let admin = std::fs::read(root_b.join("etc/kubernetes/admin.conf")).unwrap();
    let (cert, key) = kubeconfig::client_cert_and_key(&admin, &paths_b).unwrap();
    let ca = std::fs::read(root_b.join("etc/kubernetes/pki/ca.crt")).unwrap();
    let server = format!("https://127.0.0.1:{}", api.port);
    let endpoints = endpoints_from_api(&server, &ca, &cert, &key, Duration::from_secs(30)).unwrap();
    assert_eq!(endpoints, [ports_a.client_url()]);
    assert_eq!(api.requests().len(), 1);
    // without the admin client certificate the API server refuses us
    let (other_cert, other_key) = {
        let pki = root_b.join("etc/kubernetes/pki/etcd");
        let k = std::fs::read_to_string(pki.join("healthcheck-client.key")).unwrap();
        (
            std::fs::read(pki.join("healthcheck-client.crt")).unwrap(),
            kubeboot::secret::Secret::new(k),
        )
    };
    let err = endpoints_from_api(
        &server,
        &ca,
        &other_cert,
        &other_key,
        Duration::from_secs(5),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("listing the etcd endpoints") && err.contains(&server),
        "{err}"
    );

    // check-etcd: one endpoint that does not answer stops the join before
    // any member is added.
    let dead = format!("https://127.0.0.1:{}", free_port());
    let sick = client(
        &root_b,
        vec![ports_a.client_url(), dead.clone()],
        Duration::from_secs(2),
    );
    let err = sick.check_health().unwrap_err().to_string();
    assert!(err.contains(&dead) && err.contains("not healthy"), "{err}");
    // (read through the live member alone, with a budget a busy machine keeps)
    let live = client(&root_b, vec![ports_a.client_url()], Duration::from_secs(60));
    assert_eq!(live.member_list().unwrap().len(), 1);
    // a request goes on to the next endpoint when one does not answer
    let rotating = client(
        &root_b,
        vec![dead.clone(), ports_a.client_url()],
        Duration::from_secs(60),
    );
    assert_eq!(rotating.member_list().unwrap().len(), 1);

    // endpoints synced with the member list, then check-etcd.
    let mut etcd = client(&root_b, endpoints, Duration::from_secs(60));
    assert_eq!(etcd.sync_endpoints().unwrap(), [ports_a.client_url()]);
    etcd.check_health().unwrap();

    // etcd answers a peer URL it cannot take with a 4xx: final, reported at
    // once in etcd's words, not retried until the budget is spent.
    let err = client(&root_b, vec![ports_a.client_url()], Duration::from_secs(20))
        .join_member("ftp://127.0.0.1:1")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("member add")
            && err.contains("given member URLs are invalid")
            && !err.contains("gave up"),
        "{err}"
    );

    // member add as learner.
    let joined = etcd.join_member(&ports_b.peer_url()).unwrap();
    assert!(joined.added);
    assert_eq!(joined.members.len(), 2, "{:?}", joined.members);
    let me = joined.members.iter().find(|m| m.id == joined.id).unwrap();
    assert!(me.is_learner, "{me:?}");
    assert_eq!(me.peer_urls, [ports_b.peer_url()]);
    let members = initial_cluster(&joined.members, &ports_b.peer_url());
    assert_eq!(members.len(), 1);
    assert_eq!(
        (members[0].name.as_str(), members[0].peer_url.as_str()),
        ("cp-a", ports_a.peer_url().as_str())
    );

    // A rerun reuses the learner.
    let again = etcd.join_member(&ports_b.peer_url()).unwrap();
    assert!(!again.added);
    assert_eq!(again.id, joined.id);
    assert_eq!(again.members.len(), 2);

    // etcd refuses to promote a learner that has not caught up (here: not
    // even started); promote keeps retrying that until its budget ends.
    let err = etcd
        .promote(joined.id, "cp-b", Duration::from_secs(5))
        .unwrap_err()
        .to_string();
    assert!(err.contains("member promote"), "{err}");
    // The last attempt gets what is left of the budget: on a loaded machine
    // it may time out instead of hearing etcd's refusal again.
    assert!(
        err.contains("in sync with leader") || err.contains("timed out after"),
        "{err}"
    );
    assert!(err.contains("gave up"), "{err}");
    assert!(
        err.contains("cp-b") && err.contains(&format!("{:016x}", joined.id)),
        "the timeout names the member: {err}"
    );
    assert!(!err.contains(" 1 attempt "), "promote did not retry: {err}");

    // B's etcd.yaml, as the phase writes it.
    let pod_b = manifests::etcd_with(&b, &manifests::HostInputs::default(), &members).unwrap();
    manifests::write_pods(&paths_b, &[(manifests::ETCD, pod_b)], Sync::Deferred).unwrap();

    // The kubelet starts etcd B from it.
    let log_b = tmp.path().join("etcd-b.log");
    let (mut etcd_b, flags_b) =
        start_etcd_with(&bins.etcd, &root_b, &|v| ports_b.rewrite(v), &log_b);
    assert_eq!(flags_b["initial-cluster-state"], "existing");
    assert_eq!(
        ports_b.rewrite(&flags_b["initial-cluster"]),
        format!("cp-a={},cp-b={}", ports_a.peer_url(), ports_b.peer_url())
    );

    // B runs as a learner. Once it has published its name, a sync of the
    // endpoints still leaves it out, as etcd clientv3's Sync does (started
    // voters only), and drops the dead endpoint.
    let named_by = Instant::now() + Duration::from_secs(90);
    loop {
        let list = etcd.member_list().unwrap();
        let b_now = list.iter().find(|m| m.id == joined.id).unwrap();
        assert!(b_now.is_learner, "{list:?}");
        if !b_now.name.is_empty() && !b_now.client_urls.is_empty() {
            break;
        }
        assert!(
            Instant::now() < named_by,
            "learner B never published its name: {list:?}\netcd B log:\n{}",
            std::fs::read_to_string(&log_b).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut synced = client(
        &root_b,
        vec![ports_a.client_url(), dead.clone()],
        Duration::from_secs(60),
    );
    assert_eq!(synced.sync_endpoints().unwrap(), [ports_a.client_url()]);

    // Promote, retried until the learner caught up.
    let promoted = etcd
        .promote(joined.id, "cp-b", Duration::from_secs(120))
        .unwrap_or_else(|e| {
            panic!(
                "{e}\netcd B log:\n{}",
                std::fs::read_to_string(&log_b).unwrap_or_default()
            )
        });
    wait_healthy(
        &mut etcd_b,
        ports_b.metrics,
        &log_b,
        Duration::from_secs(90),
    );
    assert!(matches!(promoted, Promoted::Now(_)), "{promoted:?}");
    etcd.wait_available(&ports_b.client_url(), Duration::from_secs(60))
        .unwrap();
    // the new member's own URL is waited for too: one that does not answer
    // fails the wait, named
    let err = etcd
        .wait_available(&dead, Duration::from_secs(3))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("did not become available") && err.contains(&dead),
        "{err}"
    );
    // both voters now: a sync takes both, and only them
    let mut synced = client(
        &root_b,
        vec![ports_a.client_url(), dead.clone()],
        Duration::from_secs(60),
    );
    let mut eps = synced.sync_endpoints().unwrap();
    eps.sort();
    let mut want = vec![ports_a.client_url(), ports_b.client_url()];
    want.sort();
    assert_eq!(eps, want);
    // Promoting again (a rerun) is a success.
    assert_eq!(
        etcd.promote(joined.id, "cp-b", Duration::from_secs(10))
            .unwrap(),
        Promoted::Already
    );
    // also when the first endpoint does not answer: nothing was promoted now
    let dead_first = client(
        &root_b,
        vec![dead.clone(), ports_a.client_url()],
        Duration::from_secs(60),
    );
    assert_eq!(
        dead_first
            .promote(joined.id, "cp-b", Duration::from_secs(30))
            .unwrap(),
        Promoted::Already
    );

    let both = format!("{},{}", ports_a.client_url(), ports_b.client_url());
    let list = etcdctl(bins, &root_b, &ports_a.client_url(), &["member", "list"]);
    assert!(list.status.success(), "{}", show(&list));
    let text = String::from_utf8_lossy(&list.stdout).into_owned();
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split(", ").collect::<Vec<_>>())
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
    for r in &rows {
        // id, status, name, peer URLs, client URLs, is learner
        assert_eq!(r.len(), 6, "{text}");
        assert_eq!((r[1], r[5]), ("started", "false"), "{text}");
    }
    let names: Vec<&str> = rows.iter().map(|r| r[2]).collect();
    assert!(names.contains(&"cp-a") && names.contains(&"cp-b"), "{text}");
    let b_row = rows.iter().find(|r| r[2] == "cp-b").unwrap();
    assert_eq!(b_row[3], ports_b.peer_url(), "{text}");

    let health = etcdctl(bins, &root_b, &both, &["endpoint", "health"]);
    assert!(health.status.success(), "{}", show(&health));
    assert_eq!(
        String::from_utf8_lossy(&health.stdout)
            .matches(" is healthy")
            .count()
            + String::from_utf8_lossy(&health.stderr)
                .matches(" is healthy")
                .count(),
        2,
        "{}",
        show(&health)
    );

    // The client also works through B's endpoint now.
    let via_b = client(&root_b, vec![ports_b.client_url()], Duration::from_secs(30));
    let list = via_b.member_list().unwrap();
    assert_eq!(list.len(), 2);
    assert!(
        list.iter().all(|m| !m.is_learner && !m.name.is_empty()),
        "{list:?}"
    );
    drop(etcd_b);
    drop(etcd_a);
}

#[test]
fn an_unreachable_etcd_fails_within_the_budget_naming_url_and_step() {
    let tmp = TempRoot::new("etcd-join-unreachable");
    let root = tmp.path().join("b");
    let paths = Paths::new(&root);
    let s = node("cp-x", Mode::Init);
    pki::ensure_tree(&s, &paths, time::OffsetDateTime::now_utc(), Sync::Deferred).unwrap();
    // nothing listens on a port just released
    let url = format!("https://127.0.0.1:{}", free_port());
    let etcd = client(&root, vec![url.clone()], Duration::from_secs(2));
    let started = std::time::Instant::now();
    let err = etcd
        .join_member("https://127.0.0.1:1")
        .unwrap_err()
        .to_string();
    assert!(err.contains("member list"), "{err}");
    assert!(
        err.contains(&format!("{url}/v3/cluster/member/list")),
        "{err}"
    );
    assert!(err.contains("gave up"), "{err}");
    assert!(err.contains("connection"), "{err}");
    // bounded (generous: the machine is slow and shared)
    assert!(started.elapsed() < Duration::from_secs(60), "{err}");

    // check-etcd names the endpoint that did not answer and says nothing was added
    let err = etcd.check_health().unwrap_err();
    assert!(err.retryable());
    let err = err.to_string();
    assert!(
        err.contains("check-etcd") && err.contains("not healthy"),
        "{err}"
    );
    assert!(
        err.contains(&url) && err.contains("no member was added"),
        "{err}"
    );
}

/// As kubeadm: etcd pods without the annotation fail at once; no etcd pod
/// at all (not mirrored yet) is retried until the budget is spent. Both
/// errors say what was looked for.
#[test]
fn etcd_endpoints_come_only_from_annotated_etcd_pods() {
    let tmp = TempRoot::new("etcd-join-endpoints");
    let root = tmp.path().join("a");
    let paths = Paths::new(&root);
    let s = node("cp-a", Mode::Init);
    let now = time::OffsetDateTime::now_utc();
    pki::ensure_tree(&s, &paths, now, Sync::Deferred).unwrap();
    kubeconfig::ensure_kubeconfigs(&s, &paths, now, Sync::Deferred).unwrap();
    let admin = std::fs::read(root.join("etc/kubernetes/admin.conf")).unwrap();
    let (cert, key) = kubeconfig::client_cert_and_key(&admin, &paths).unwrap();
    let ca = std::fs::read(root.join("etc/kubernetes/pki/ca.crt")).unwrap();

    let bare = api_server_listing(
        &root,
        serde_json::json!([{"metadata": {"name": "etcd-cp-a"}}]),
    );
    let server = format!("https://127.0.0.1:{}", bare.port);
    let err = endpoints_from_api(&server, &ca, &cert, &key, Duration::from_secs(30))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("none has the kubeadm.kubernetes.io/etcd.advertise-client-urls annotation"),
        "{err}"
    );
    assert!(
        err.contains("component=etcd,tier=control-plane in kube-system"),
        "{err}"
    );
    assert_eq!(bare.requests().len(), 1, "not retried: {err}");

    // a refusal (RBAC) fails at once, named by its status, not taken for a list
    let pki = root.join("etc/kubernetes/pki");
    let refusing = Server::https(
        tls_config(
            &pki.join("apiserver.crt"),
            &pki.join("apiserver.key"),
            Some(&pki.join("ca.crt")),
        ),
        |_, _| {
            Reply::Respond(
                403,
                vec![("Content-Type".into(), "application/json".into())],
                br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods is forbidden: User \"kubernetes-admin\" cannot list resource \"pods\" in API group \"\" in the namespace \"kube-system\"","reason":"Forbidden","details":{"kind":"pods"},"code":403}"#.to_vec(),
            )
        },
    );
    let server = format!("https://127.0.0.1:{}", refusing.port);
    let err = endpoints_from_api(&server, &ca, &cert, &key, Duration::from_secs(30))
        .unwrap_err()
        .to_string();
    assert!(err.contains("403 Forbidden"), "{err}");
    assert_eq!(refusing.requests().len(), 1, "not retried: {err}");

    let empty = api_server_listing(&root, serde_json::json!([]));
    let server = format!("https://127.0.0.1:{}", empty.port);
    let err = endpoints_from_api(&server, &ca, &cert, &key, Duration::from_secs(5))
        .unwrap_err()
        .to_string();
    // What was looked for is in the message whatever the last attempt saw;
    // that attempt gets what is left of the budget, and on a loaded
    // machine it may time out (seen: "5 attempts in 2018 ms, last: timed
    // out after 50 ms") instead of seeing the empty list again.
    assert!(
        err.contains("listing the etcd endpoints (pods labelled component=etcd,tier=control-plane in kube-system"),
        "{err}"
    );
    assert!(
        err.contains("no pods labelled component=etcd,tier=control-plane in kube-system yet")
            || err.contains("timed out after"),
        "{err}"
    );
    assert!(err.contains(" attempts in "), "{err}");
    let seen = empty.requests();
    assert!(seen.len() > 1, "retried: {err}");
    // kubeadm's selector (etcdutil: "component=etcd,tier=control-plane"),
    // read back from the query the API server received
    for r in &seen {
        let (path, query) = r.path.split_once('?').unwrap();
        assert_eq!(path, "/api/v1/namespaces/kube-system/pods");
        let selector = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("labelSelector="))
            .unwrap_or_else(|| panic!("no labelSelector in {}", r.path));
        let decoded = selector
            .replace("%3D", "=")
            .replace("%3d", "=")
            .replace("%2C", ",")
            .replace("%2c", ",");
        let mut labels: Vec<&str> = decoded.split(',').collect();
        labels.sort();
        assert_eq!(
            labels,
            ["component=etcd", "tier=control-plane"],
            "{}",
            r.path
        );
    }
}
