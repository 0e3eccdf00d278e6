//! Helpers shared by the tests that drive the `kubeboot` binary.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs the kubeboot binary built for these tests.
pub fn kubeboot(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubeboot"))
        .args(args)
        .output()
        .expect("run kubeboot")
}

/// Output bytes as text.
pub fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

/// A fresh, empty directory for one test (`kubeboot-<prefix>-<name>-<pid>`).
pub fn tmpdir(prefix: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kubeboot-{prefix}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A control plane rendered by the binary into `dir/cp` (node cp-1,
/// advertising 127.0.0.1), for its certificates and kubeconfigs.
pub fn render_control_plane(dir: &std::path::Path) -> PathBuf {
    render_config(
        dir,
        "apiVersion: kubeboot.dev/v1alpha1\nrole: control-plane\nnode:\n  name: cp-1\n  advertiseAddress: 127.0.0.1\n",
    )
}

/// The node of config `yaml` rendered by the binary into `dir/cp`.
#[allow(dead_code)]
pub fn render_config(dir: &std::path::Path, yaml: &str) -> PathBuf {
    let cfg = dir.join("cp.yaml");
    std::fs::write(&cfg, yaml).unwrap();
    let root = dir.join("cp");
    let o = kubeboot(&[
        "render",
        "--config",
        cfg.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    root
}

/// Puts `userdata` where a NoCloud image carries it, under `root`.
pub fn seed(root: &std::path::Path, userdata: &str) {
    let p = root.join("var/lib/cloud/seed/nocloud/user-data");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, userdata).unwrap();
}

/// A fake `systemctl` at `script` for runs on `root` (pass it with
/// `--systemctl`): appends its arguments to `log`, and `restart ... kubelet`
/// plays the kubelet's TLS bootstrap by writing `etc/kubernetes/kubelet.conf`
/// (when absent) and, with `client_cert`, the rotated client certificate
/// `var/lib/kubelet/pki/kubelet-client-current.pem` that `kubelet-finalize`
/// waits for.
#[allow(dead_code)]
pub fn fake_systemctl(
    script: &std::path::Path,
    root: &std::path::Path,
    log: &std::path::Path,
    client_cert: bool,
) -> PathBuf {
    systemctl_script(script, root, log, client_cert, false)
}

/// Like [`fake_systemctl`], but the TLS bootstrap is played for real
/// against the API server: when `bootstrap-kubelet.conf` exists, `kubectl`
/// with that kubeconfig (its server, CA and token, nothing else) sends the
/// kubelet's CertificateSigningRequest, and only when the API server
/// accepts it is kubelet.conf written. A bootstrap kubeconfig with a wrong
/// server, CA or token leaves the TLS bootstrap unfinished.
#[allow(dead_code)]
pub fn fake_systemctl_tls_bootstrap(
    script: &std::path::Path,
    root: &std::path::Path,
    log: &std::path::Path,
    client_cert: bool,
) -> PathBuf {
    let found = std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "kubectl is required: the fake kubelet's TLS bootstrap sends its CSR with it"
    );
    systemctl_script(script, root, log, client_cert, true)
}

fn systemctl_script(
    script: &std::path::Path,
    root: &std::path::Path,
    log: &std::path::Path,
    client_cert: bool,
    csr: bool,
) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let cert = if client_cert {
        format!(
            "  mkdir -p '{r}/var/lib/kubelet/pki'\n  echo 'stand-in for the kubelet client cert and key' > '{r}/var/lib/kubelet/pki/kubelet-client-current.pem'\n",
            r = root.display()
        )
    } else {
        String::new()
    };
    let bootstrap = if csr {
        format!(
            r#"  b='{r}/etc/kubernetes/bootstrap-kubelet.conf'
  if [ -f "$b" ] && [ ! -f '{r}/etc/kubernetes/kubelet.conf' ]; then
    export NO_PROXY=127.0.0.1 no_proxy=127.0.0.1
    unset HTTP_PROXY HTTPS_PROXY http_proxy https_proxy
    req=$(openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout /dev/null -subj /O=system:nodes/CN=system:node:fake 2>/dev/null | base64 -w0)
    printf '{{"apiVersion":"certificates.k8s.io/v1","kind":"CertificateSigningRequest","metadata":{{"name":"csr-%s"}},"spec":{{"request":"%s","signerName":"kubernetes.io/kube-apiserver-client-kubelet","usages":["digital signature","client auth"]}}}}' "$$" "$req" > '{r}/csr.json'
    # as a kubelet does, the CSR is sent again when sending it failed
    # (a connection reset under load): five tries, a second apart
    n=0
    until kubectl --kubeconfig "$b" --request-timeout=5s create --raw /apis/certificates.k8s.io/v1/certificatesigningrequests -f '{r}/csr.json' >> '{log}.kubectl' 2>&1; do
      n=$((n+1))
      if [ "$n" -ge 5 ]; then
        echo 'TLS bootstrap: CSR refused' >> '{log}.kubectl'
        exit 0
      fi
      sleep 1
    done
  fi
"#,
            r = root.display(),
            log = log.display()
        )
    } else {
        String::new()
    };
    std::fs::write(
        script,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{log}'\ncase \"$*\" in *restart*kubelet*)\n  mkdir -p '{r}/etc/kubernetes'\n{bootstrap}  [ -f '{r}/etc/kubernetes/kubelet.conf' ] || {{ [ -f '{r}/etc/kubernetes/admin.conf' ] && cp '{r}/etc/kubernetes/admin.conf' '{r}/etc/kubernetes/kubelet.conf' || echo 'apiVersion: v1' > '{r}/etc/kubernetes/kubelet.conf'; }}\n{cert};;\nesac\nexit 0\n",
            log = log.display(),
            r = root.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script.to_path_buf()
}

/// The arguments of a `kubeboot firstboot` on a fake root: no platform
/// probing, preflight errors ignored (the test host is not a node), the
/// fake `systemctl`, a kubelet healthz stub, and the two time budgets (s).
#[allow(dead_code)]
pub fn firstboot_args(
    root: &std::path::Path,
    systemctl: &std::path::Path,
    healthz_url: &str,
    wait: &str,
    discovery: &str,
) -> Vec<String> {
    let mut v = firstboot_args_no_deadline(root, systemctl, healthz_url);
    v.extend(["--wait-timeout", wait, "--discovery-timeout", discovery].map(str::to_string));
    v
}

/// [`firstboot_args`] without the time budgets: the defaults for the role
/// (a join waits for its cluster without a deadline).
#[allow(dead_code)]
pub fn firstboot_args_no_deadline(
    root: &std::path::Path,
    systemctl: &std::path::Path,
    healthz_url: &str,
) -> Vec<String> {
    [
        "firstboot",
        "--root",
        root.to_str().unwrap(),
        "--platform",
        "none",
        "--ignore-preflight-errors",
        "all",
        "--systemctl",
        systemctl.to_str().unwrap(),
        "--kubelet-healthz-url",
        healthz_url,
    ]
    .map(str::to_string)
    .to_vec()
}

/// The CA pin (`sha256:<hex>`) of a rendered control plane's CA, from
/// `kubeboot certs ca-hash`.
#[allow(dead_code)]
pub fn ca_hash(cp: &std::path::Path) -> String {
    let o = kubeboot(&[
        "certs",
        "ca-hash",
        cp.join("etc/kubernetes/pki/ca.crt").to_str().unwrap(),
    ]);
    assert!(o.status.success());
    text(&o.stdout).trim().to_string()
}

/// The `kube-public/cluster-info` ConfigMap (JSON bytes) a cluster with CA
/// `ca` (PEM) serves at `https://127.0.0.1:<port>`, signed for the token
/// `id.secret` as the bootstrap signer signs it.
#[allow(dead_code)]
pub fn cluster_info(ca: &[u8], port: u16, id: &str, secret: &str) -> Vec<u8> {
    use base64::Engine;
    let kubeconfig = format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: https://127.0.0.1:{port}\n  name: \"\"\ncontexts: null\ncurrent-context: \"\"\nkind: Config\npreferences: {{}}\nusers: null\n",
        base64::engine::general_purpose::STANDARD.encode(ca),
    );
    let token = kubeboot::config::BootstrapToken {
        id: id.into(),
        secret: kubeboot::secret::Secret::new(secret),
    };
    let cm = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cluster-info", "namespace": "kube-public"},
        "data": {"kubeconfig": kubeconfig, format!("jws-kubeconfig-{id}"): kubeboot::api::discovery::sign_detached(&kubeconfig, &token)},
    });
    serde_json::to_vec(&cm).unwrap()
}

/// Every file under `dir`, relative to it and sorted, leaving out the
/// subtrees `skip` (relative paths).
#[allow(dead_code)]
pub fn files_under(dir: &std::path::Path, skip: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            if skip.iter().any(|s| rel.starts_with(s)) {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

/// A systemctl stand-in that appends its arguments, one call per line, to
/// `dir/systemctl.log`. Returns (script, log).
#[allow(dead_code)]
pub fn recording_systemctl(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let log = dir.join("systemctl.log");
    let script = dir.join("systemctl");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$@\" >> {}\n", log.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, log)
}

/// A syslog socket for one test: point the binary at it with
/// `KUBEBOOT_SYSLOG_SOCKET`; every datagram it receives is kept.
pub struct SyslogCapture {
    pub path: PathBuf,
    got: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl SyslogCapture {
    pub fn new(dir: &std::path::Path) -> SyslogCapture {
        let path = dir.join("syslog.sock");
        let _ = std::fs::remove_file(&path);
        let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let got: std::sync::Arc<std::sync::Mutex<Vec<u8>>> = Default::default();
        let sink = got.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = sock.recv(&mut buf) {
                let mut g = sink.lock().unwrap();
                g.extend_from_slice(&buf[..n]);
                g.push(b'\n');
            }
        });
        SyslogCapture { path, got }
    }

    /// Everything received so far, as text.
    pub fn text(&self) -> String {
        // give the last datagrams a moment to arrive
        std::thread::sleep(std::time::Duration::from_millis(100));
        String::from_utf8_lossy(&self.got.lock().unwrap()).into_owned()
    }
}

/// The bytes of every hex-dump row in `text` (an HTTP library's raw
/// traffic dump: 8 groups of 4 hex digits, then the characters), joined:
/// a secret split across rows is found there.
pub fn hex_dumps(text: &str) -> String {
    let mut out = Vec::new();
    for line in text.lines() {
        let row = line.rsplit("] ").next().unwrap_or(line);
        let groups: Vec<&str> = row.split(' ').take(8).collect();
        let is_group =
            |g: &&str| g.len() == 4 && g.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
        if groups.len() == 8 && groups.iter().all(is_group) {
            for g in groups {
                for pair in [&g[..2], &g[2..]] {
                    if let Ok(b) = u8::from_str_radix(pair, 16) {
                        out.push(b);
                    }
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Fails naming where `canary` was found: stdout, stderr, the syslog
/// capture or the status file of `root`, as text or inside a hex dump.
pub fn assert_no_canary(canary: &str, o: &Output, syslog: &SyslogCapture, root: &std::path::Path) {
    assert!(!canary.is_empty());
    let status =
        std::fs::read_to_string(root.join("var/lib/kubeboot/status.json")).unwrap_or_default();
    let (err, log) = (text(&o.stderr), syslog.text());
    for (what, t) in [
        ("stdout", text(&o.stdout)),
        ("stderr", err.clone()),
        ("syslog", log.clone()),
        ("status.json", status),
        ("a hex dump on stderr", hex_dumps(&err)),
        ("a hex dump in syslog", hex_dumps(&log)),
    ] {
        if let Some(line) = t.lines().find(|l| l.contains(canary)) {
            let shown: String = line.chars().take(400).collect();
            panic!("canary {canary:?} in {what}: {shown}");
        }
    }
}
