//! `kubeboot token create|list|delete` against the loopback API server
//! stand-in (mutual TLS with the cluster CA, as admin.conf's user): the
//! round trip, the stored Secret checked field by field against kubeadm's
//! `bootstrap-token-<id>` format (`cmd/kubeadm/app/apis/bootstraptoken/v1/
//! utils.go`) and against the Kubernetes OpenAPI schema with
//! `kubernetes-validate`, the join config's CA hash against openssl's, and
//! that no token secret reaches stderr.

mod api_support;
mod cli_support;
mod net_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use api_support::{Fault, FaultKind, Options, StandIn};
use cli_support::{kubeboot, render_control_plane, text, tmpdir};
use k8s_openapi::api::core::v1::Secret;

const SECRETS: &str = "/api/v1/namespaces/kube-system/secrets";

struct Cluster {
    dir: PathBuf,
    root: PathBuf,
    api: StandIn,
    admin: PathBuf,
}

/// A rendered control plane and the strict API server stand-in on a
/// loopback port, holding kubeadm's RBAC (admin.conf's group bound to
/// cluster-admin, as after init); admin.conf points at it.
fn cluster(name: &str) -> Cluster {
    let dir = tmpdir("tokens", name);
    let root = render_control_plane(&dir);
    let pki = root.join("etc/kubernetes/pki");
    let api = StandIn::start_pki(
        &pki,
        Options {
            node: None,
            ..Options::default()
        },
    );
    for o in api_support::kubeadm_rbac() {
        api.insert(o);
    }
    let admin = root.join("etc/kubernetes/admin.conf");
    let conf = std::fs::read_to_string(&admin).unwrap();
    assert!(conf.contains("server: https://127.0.0.1:6443"), "{conf}");
    std::fs::write(
        &admin,
        conf.replace(
            "https://127.0.0.1:6443",
            &format!("https://127.0.0.1:{}", api.port()),
        ),
    )
    .unwrap();
    Cluster {
        dir,
        root,
        api,
        admin,
    }
}

/// `kubeboot token ARGS` as admin.conf's user, watched by the stand-in
/// (anything it cannot model fails the test at once).
fn token_cmd(c: &Cluster, args: &[&str]) -> Output {
    let mut all = vec!["--log-level", "debug", "token"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--kubeconfig", c.admin.to_str().unwrap(), "--timeout", "10"]);
    let o = c
        .api
        .run(Command::new(env!("CARGO_BIN_EXE_kubeboot")).args(&all));
    c.api.check();
    o
}

fn stored(c: &Cluster, id: &str) -> Option<serde_json::Value> {
    c.api
        .state()
        .objects
        .get(&format!("{SECRETS}/bootstrap-token-{id}"))
        .cloned()
}

/// The Secret's data, base64-decoded.
fn data(secret: &serde_json::Value) -> BTreeMap<String, String> {
    let s: Secret = serde_json::from_value(secret.clone()).unwrap();
    s.data
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
        .collect()
}

fn is_token(s: &str) -> bool {
    let ok = |p: &str, n: usize| {
        p.len() == n
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    s.split_once('.')
        .is_some_and(|(id, sec)| ok(id, 6) && ok(sec, 16))
}

/// Go's `time.RFC3339` in UTC: `2006-01-02T15:04:05Z`.
fn is_go_rfc3339_utc(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

fn require_peers() -> bool {
    std::env::var("KUBEBOOT_REQUIRE_PEERS").as_deref() == Ok("1")
}

/// Validates a JSON object against the Kubernetes 1.34 OpenAPI schema with
/// PyPI `kubernetes-validate` (strict: unknown fields are errors).
fn kubernetes_validate(dir: &Path, name: &str, obj: &serde_json::Value) {
    let file = dir.join(format!("{name}.json"));
    // the stand-in's own bookkeeping fields are real ObjectMeta fields
    std::fs::write(&file, serde_json::to_vec_pretty(obj).unwrap()).unwrap();
    match Command::new("kubernetes-validate")
        .args(["--strict", "-k", "1.34.0"])
        .arg(&file)
        .output()
    {
        Ok(o) => assert!(
            o.status.success(),
            "kubernetes-validate refused {name}:\n{}{}",
            text(&o.stdout),
            text(&o.stderr)
        ),
        Err(e) if !require_peers() => {
            eprintln!(
                "SKIP kubernetes-validate check of {name}: {e} (pip install kubernetes-validate)"
            )
        }
        Err(e) => panic!("kubernetes-validate is required (KUBEBOOT_REQUIRE_PEERS=1): {e}"),
    }
}

/// The CA pin computed by openssl: SHA-256 of the DER SubjectPublicKeyInfo.
fn openssl_ca_hash(ca: &Path) -> String {
    let script = format!(
        "openssl x509 -pubkey -noout -in {} | openssl pkey -pubin -outform der | openssl dgst -sha256 -r",
        ca.display()
    );
    let o = Command::new("sh").arg("-c").arg(&script).output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    format!(
        "sha256:{}",
        text(&o.stdout).split_whitespace().next().unwrap()
    )
}

#[test]
fn create_list_delete_round_trip_with_kubeadms_secret_format() {
    let c = cluster("roundtrip");
    let before = time::OffsetDateTime::now_utc();

    // 1. a long-lived fleet token: random, never expires
    let o = token_cmd(&c, &["create", "--ttl", "0", "--description", "pxe fleet"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let fleet = text(&o.stdout).trim().to_string();
    assert!(is_token(&fleet), "{fleet:?}");
    let (fleet_id, fleet_secret) = fleet.split_once('.').unwrap();
    assert!(
        !text(&o.stderr).contains(fleet_secret),
        "{}",
        text(&o.stderr)
    );
    assert!(text(&o.stderr).contains(fleet_id), "{}", text(&o.stderr));
    let s = stored(&c, fleet_id).expect("Secret stored");
    assert_eq!(s["type"], "bootstrap.kubernetes.io/token");
    assert_eq!(s["metadata"]["namespace"], "kube-system");
    let d = data(&s);
    let want: BTreeMap<String, String> = [
        ("token-id", fleet_id),
        ("token-secret", fleet_secret),
        ("description", "pxe fleet"),
        ("usage-bootstrap-signing", "true"),
        ("usage-bootstrap-authentication", "true"),
        (
            "auth-extra-groups",
            "system:bootstrappers:kubeadm:default-node-token",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    // ttl 0: no expiration key at all, as kubeadm's encodeTokenSecretData
    assert_eq!(d, want);
    kubernetes_validate(&c.dir, "fleet", &s);

    // 2. a chosen token, 2 hours, signing only, no groups
    let chosen = "k8sabc.0123456789abcdef";
    let o = token_cmd(
        &c,
        &[
            "create", chosen, "--ttl", "2h", "--usages", "signing", "--groups", "",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).trim(), chosen);
    assert!(!text(&o.stderr).contains("0123456789abcdef"));
    let s = stored(&c, "k8sabc").unwrap();
    let d = data(&s);
    let keys: Vec<&str> = d.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "expiration",
            "token-id",
            "token-secret",
            "usage-bootstrap-signing"
        ]
    );
    let exp = &d["expiration"];
    assert!(is_go_rfc3339_utc(exp), "{exp}");
    let exp_t =
        time::OffsetDateTime::parse(exp, &time::format_description::well_known::Rfc3339).unwrap();
    let two_h = time::Duration::hours(2);
    assert!(
        exp_t >= before + two_h - time::Duration::seconds(2)
            && exp_t <= time::OffsetDateTime::now_utc() + two_h,
        "{exp}"
    );
    kubernetes_validate(&c.dir, "chosen", &s);

    // 3. the same id again is refused, without echoing the secret
    let o = token_cmd(&c, &["create", chosen]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("already exists"),
        "{}",
        text(&o.stderr)
    );
    assert!(!text(&o.stderr).contains("0123456789abcdef"));

    // 4. list shows both ids, never a secret
    let o = token_cmd(&c, &["list"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let all = format!("{out}{}", text(&o.stderr));
    assert!(
        !all.contains(fleet_secret) && !all.contains("0123456789abcdef"),
        "{all}"
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("TOKEN ID"), "{out}");
    let row = |id: &str| lines.iter().find(|l| l.starts_with(id)).copied().unwrap();
    let k = row("k8sabc");
    assert!(
        k.contains("signing") && !k.contains("authentication"),
        "{k}"
    );
    assert!(k.contains(" 1h ") || k.contains(" 2h "), "{k}");
    let f = row(fleet_id);
    assert!(
        f.contains("<forever>") && f.contains("pxe fleet") && f.contains("authentication,signing"),
        "{f}"
    );

    // 5. delete one by id and one by whole token
    let o = token_cmd(&c, &["delete", fleet_id, chosen]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(!text(&o.stdout).contains("0123456789abcdef"));
    assert!(stored(&c, fleet_id).is_none() && stored(&c, "k8sabc").is_none());
    let o = token_cmd(&c, &["list"]);
    assert_eq!(text(&o.stdout).lines().count(), 1, "{}", text(&o.stdout));
    let o = token_cmd(&c, &["delete", fleet_id]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("not found"), "{}", text(&o.stderr));

    // 6. refused: each error names the URL it was refused at
    c.api
        .fault(Fault::new("", "/secrets", FaultKind::Status(403)));
    let secrets = format!(
        "https://127.0.0.1:{}/api/v1/namespaces/kube-system/secrets",
        c.api.port()
    );
    for (args, verb) in [
        (&["list"][..], "GET"),
        (&["create"][..], "POST"),
        (&["delete", "k8sabc"][..], "DELETE"),
    ] {
        let o = token_cmd(&c, args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o.stderr));
        let e = text(&o.stderr);
        assert!(
            e.contains(&format!("{verb} {secrets}")) && e.contains("403"),
            "{args:?}: {e}"
        );
    }
    std::fs::remove_dir_all(&c.dir).unwrap();
}

#[test]
fn print_join_config_is_a_worker_config_with_openssls_ca_pin() {
    let c = cluster("joincfg");
    let o = token_cmd(&c, &["create", "--print-join-config", "--ttl", "1h"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let cfg = text(&o.stdout);
    assert_eq!(cfg.lines().count(), 5, "{cfg}");
    let field = |k: &str| {
        cfg.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}: ")))
            .unwrap_or_else(|| panic!("{k} in {cfg}"))
            .to_string()
    };
    let token = field("token");
    assert!(is_token(&token));
    let (id, secret) = token.split_once('.').unwrap();
    assert!(!text(&o.stderr).contains(secret));
    assert_eq!(data(&stored(&c, id).unwrap())["token-secret"], secret);
    let port = c.admin_port();
    assert_eq!(field("server"), format!("127.0.0.1:{port}"));
    assert_eq!(
        field("caCertHash"),
        openssl_ca_hash(&c.root.join("etc/kubernetes/pki/ca.crt"))
    );
    // kubeboot reads it as a worker join
    let file = c.dir.join("join.yaml");
    std::fs::write(&file, &cfg).unwrap();
    let o = kubeboot(&["config", "validate", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("join-worker") || text(&o.stdout).contains("worker"));
    std::fs::remove_dir_all(&c.dir).unwrap();
}

#[test]
fn bad_input_is_refused_before_contacting_anyone() {
    let c = cluster("bad");
    for (args, needle) in [
        (vec!["create", "--ttl", "a day"], "--ttl"),
        (vec!["create", "--usages", "sign"], "--usages"),
        (vec!["create", "--usages", "signing"], "--groups"),
        (vec!["create", "ABCDEF.SECRETSECRETSECR"], "TOKEN"),
        (vec!["delete", "abcdef.TOPSECRETTOPSECRE"], "neither"),
    ] {
        let o = token_cmd(&c, &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o.stderr));
        let err = text(&o.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("SECRET"), "{args:?}: {err}");
    }
    assert!(!c.api.state().objects.keys().any(|k| k.starts_with(SECRETS)));
    // an unreachable server is a failure (exit 1) naming the URL
    let conf = std::fs::read_to_string(&c.admin).unwrap();
    let closed = net_support::closed_port();
    let moved = c.dir.join("moved.conf");
    let port = c.admin_port();
    std::fs::write(
        &moved,
        conf.replace(&format!(":{port}"), &format!(":{closed}")),
    )
    .unwrap();
    let o = kubeboot(&[
        "token",
        "list",
        "--kubeconfig",
        moved.to_str().unwrap(),
        "--timeout",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains(&format!("127.0.0.1:{closed}")));
    std::fs::remove_dir_all(&c.dir).unwrap();
}

impl Cluster {
    fn admin_port(&self) -> u16 {
        let conf = std::fs::read_to_string(&self.admin).unwrap();
        let s = conf.split("https://127.0.0.1:").nth(1).unwrap();
        s[..s.find(|c: char| !c.is_ascii_digit()).unwrap()]
            .parse()
            .unwrap()
    }
}
