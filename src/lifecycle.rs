//! The commands for a node's life after its first boot: `token
//! create|list|delete` (new join tokens, `api::tokens`), `certs renew`
//! (`pki::renew`) and `reset` (`reset`). Their clap argument structs live
//! here, as the node commands' live in `run`; `cli.rs` dispatches here.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use time::OffsetDateTime;

use crate::api::objects::go_duration;
use crate::api::tokens;
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::host::{Paths, fs};
use crate::pki::renew;
use crate::run::load_file;
use crate::secret::Secret;

/// Keeps a command-line value that may be a secret out of `Debug` output.
pub fn secret_arg(s: &str) -> std::result::Result<crate::secret::Secret, String> {
    Ok(crate::secret::Secret::new(s))
}

// How the `token` commands reach the cluster.
// (A plain comment, not a doc comment: clap would make it the about text
// of the subcommand, whose arguments are built after it: cli::command.)
#[allow(missing_docs)]
#[derive(Debug, Args)]
pub struct TokenClientArgs {
    /// Kubeconfig whose user may manage Secrets in kube-system; its server and CA are used.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/kubernetes/admin.conf"
    )]
    pub kubeconfig: PathBuf,
    /// How long requests may retry (transport errors, 5xx, 429), in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub timeout: u64,
}

// Arguments of `token create`.
// (A plain comment, not a doc comment: clap would make it the about text
// of the subcommand, whose arguments are built after it: cli::command.)
#[allow(missing_docs)]
#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// The token to create (`[a-z0-9]{6}.[a-z0-9]{16}`); a random one when omitted.
    #[arg(value_name = "TOKEN", value_parser = secret_arg)]
    pub token: Option<crate::secret::Secret>,
    /// Time to live (Go duration, e.g. 24h, 720h); 0 = never expires.
    #[arg(long, value_name = "DURATION", default_value = "24h0m0s")]
    pub ttl: String,
    /// Comma-separated usages: signing, authentication.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "signing,authentication"
    )]
    pub usages: Vec<String>,
    /// Comma-separated extra groups the token authenticates as.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "system:bootstrappers:kubeadm:default-node-token"
    )]
    pub groups: Vec<String>,
    /// A human description of the token.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// Print the worker NodeConfig that joins with the new token instead of the token alone.
    #[arg(long)]
    pub print_join_config: bool,
    /// Cluster access.
    #[command(flatten)]
    pub client: TokenClientArgs,
}

// Arguments of `certs renew`.
// (A plain comment, not a doc comment: clap would make it the about text
// of the subcommand, whose arguments are built after it: cli::command.)
#[allow(missing_docs)]
#[derive(Debug, Args)]
pub struct CertsRenewArgs {
    /// `all`, or kubeadm's certificate names: apiserver, apiserver-kubelet-client,
    /// front-proxy-client, etcd-server, etcd-peer, etcd-healthcheck-client,
    /// apiserver-etcd-client, admin.conf, super-admin.conf, controller-manager.conf, scheduler.conf.
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
    /// Renew only certificates that expire within this window (Go duration like 720h, or days like 30d).
    #[arg(long, value_name = "DURATION")]
    pub if_expiring_within: Option<String>,
    /// Config file (any envelope) for certificatesDir, validity, key algorithm and etcd mode;
    /// default: /etc/kubeboot/config.yaml under --root when present, else the defaults.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Host root.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Do not change the static pod manifests (restart the components yourself).
    #[arg(long)]
    pub no_restart: bool,
    /// After changing etcd's manifest, wait up to this many seconds for the kubelet to restart etcd
    /// (a new, healthy process) before changing the API server's (only when etcd answered before);
    /// after changing the API server's, wait for it to restart and answer /livez before changing the
    /// controller manager's and scheduler's. Default: 180 for etcd, timeouts.controlPlaneComponentHealthCheck
    /// (kubeadm's 4 min) for the API server; 0: never wait.
    #[arg(long, value_name = "SECS")]
    pub restart_wait: Option<u64>,
}

// Arguments of `reset`.
// (A plain comment, not a doc comment: clap would make it the about text
// of the subcommand, whose arguments are built after it: cli::command.)
#[allow(missing_docs)]
#[derive(Debug, Args)]
pub struct ResetArgs {
    /// Host root.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Config file (any envelope) for certificatesDir and the etcd mode; default:
    /// /etc/kubeboot/config.yaml under --root when present, else the defaults.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print what would be removed; remove and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Reset even when this node's etcd member cannot be removed safely (quorum, unreachable).
    #[arg(long)]
    pub force: bool,
    /// Keep the certificate directory (/etc/kubernetes/pki).
    #[arg(long)]
    pub keep_pki: bool,
    /// Comma-separated etcd client URLs to reach the cluster through (default: etcd.yaml's advertise-client-urls).
    #[arg(long, value_name = "URLS", value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
    /// How long etcd calls may retry, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub timeout: u64,
    /// The systemctl program (stops kubelet.service).
    #[arg(long, value_name = "PATH", default_value = "systemctl")]
    pub systemctl: String,
}

/// `kubeboot token create [TOKEN] ...`: the token on stdout (or the worker
/// join config with `--print-join-config`).
pub fn token_create(a: &TokenCreateArgs) -> Result<()> {
    let spec = tokens::spec(
        a.token.as_ref(),
        &a.ttl,
        &a.usages,
        &a.groups,
        a.description.clone(),
    )?;
    let kube = connect(&a.client)?;
    let token = tokens::create(&kube, &spec, OffsetDateTime::now_utc())?;
    log::info!(
        "created bootstrap token {} (Secret kube-system/bootstrap-token-{}, {})",
        token.id,
        token.id,
        if spec.ttl_seconds == 0 {
            "never expires".to_string()
        } else {
            format!("expires in {}", go_duration(spec.ttl_seconds))
        }
    );
    if a.print_join_config {
        let bytes = fs::read_optional(&a.client.kubeconfig)?.unwrap_or_default();
        let (server, ca) = crate::pki::kubeconfig::server_and_ca(&bytes)
            .map_err(|e| Error::Invalid(format!("{}: {e}", a.client.kubeconfig.display())))?;
        let hash = crate::pki::ca_hash(&ca)?;
        crate::out!("{}", tokens::join_config(&server, &token, &hash));
    } else {
        crate::outln!("{}.{}", token.id, token.secret.expose());
    }
    Ok(())
}

/// `kubeboot token list`: ids, TTL, expiry, usages, groups; never a secret.
pub fn token_list(c: &TokenClientArgs) -> Result<()> {
    let kube = connect(c)?;
    let list = tokens::list(&kube)?;
    crate::out!("{}", tokens::format_list(&list, OffsetDateTime::now_utc()));
    Ok(())
}

/// `kubeboot token delete ID...` (ids or whole tokens).
pub fn token_delete(ids: &[Secret], c: &TokenClientArgs) -> Result<()> {
    let ids = ids
        .iter()
        .map(|a| tokens::id_of(a.expose()))
        .collect::<Result<Vec<_>>>()?;
    let kube = connect(c)?;
    for id in ids {
        tokens::delete(&kube, &id)?;
        crate::outln!("bootstrap token {id:?} deleted");
    }
    Ok(())
}

fn connect(c: &TokenClientArgs) -> Result<crate::api::kube::Kube> {
    tokens::client(&c.kubeconfig, Duration::from_secs(c.timeout))
}

/// The node's settings for commands run on a node after its bootstrap
/// (`certs renew`, `reset`): from `config` when given, else from
/// `/etc/kubeboot/config.yaml` under the root when present, else the
/// defaults. The flag says whether a file was read.
pub fn node_settings(paths: &Paths, config: Option<&std::path::Path>) -> Result<(Settings, bool)> {
    let facts = crate::host::HostFacts::detect(&paths.host("/proc"));
    let node_config = paths.kubeboot_config();
    let file = config
        .map(std::path::Path::to_path_buf)
        .or_else(|| node_config.exists().then_some(node_config));
    Ok(match &file {
        Some(f) => (load_file(f, &facts)?.settings, true),
        None => (
            crate::config::load(
                crate::config::examples::MINIMAL_CONTROL_PLANE.as_bytes(),
                "defaults",
                &facts,
            )?
            .settings,
            false,
        ),
    })
}

/// How long `certs renew` waits for the restarted API server: the
/// configuration's `timeouts.controlPlaneComponentHealthCheck`, else (not
/// given, or 0 = no deadline, which a renewal timer must not take)
/// kubeadm's default of 4 minutes.
fn apiserver_restart_wait(settings: &crate::config::Settings) -> Duration {
    match settings.timeouts.control_plane_component_health_check {
        Some(d) if d != Duration::MAX => d,
        _ => Duration::from_secs(240),
    }
}

/// Runs `certs renew`: renews, writes the renewal status file, prints one
/// line per certificate; fails (exit 1) when a certificate that was due
/// could not be renewed.
pub fn certs_renew(args: &CertsRenewArgs, lock_wait: Duration) -> Result<()> {
    let names = renew::resolve_names(&args.names)?;
    let window_seconds = match &args.if_expiring_within {
        Some(w) => Some(renew::parse_window(w).ok_or_else(|| {
            Error::Invalid(format!(
                "--if-expiring-within: {w:?} is not a duration like 720h or 30d"
            ))
        })?),
        None => None,
    };
    let paths = Paths::new(&args.root);
    // never beside a first boot (or another renewal) writing the same files
    let _lock = crate::host::lock::RunLock::acquire(&paths, lock_wait)?;
    let (settings, from_file) = node_settings(&paths, args.config.as_deref())?;
    let opts = renew::Options {
        names,
        window_seconds,
        window_label: window_seconds.map(go_duration),
        key_algorithm: from_file.then_some(settings.cluster.key_algorithm),
        restart_pods: !args.no_restart,
        restart_wait: std::time::Duration::from_secs(args.restart_wait.unwrap_or(180)),
        apiserver_wait: match args.restart_wait {
            Some(s) => std::time::Duration::from_secs(s),
            None => apiserver_restart_wait(&settings),
        },
    };
    let result = renew::renew(&settings, &paths, &opts, OffsetDateTime::now_utc());
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            let failed = renew::Report {
                result: "failure".into(),
                window: window_seconds.map(go_duration),
                certificates: vec![renew::Row {
                    name: "all".into(),
                    outcome: renew::Outcome::Failed,
                    file: String::new(),
                    expires_before: None,
                    expires_after: None,
                    message: e.to_string(),
                }],
                restarted: Vec::new(),
                restart_checks: Vec::new(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                finished_at: renew::rfc3339(OffsetDateTime::now_utc()),
            };
            renew::write_status(&paths, &failed)?;
            return Err(e);
        }
    };
    for row in &report.certificates {
        let line = renew::describe(row);
        // stdout reaches the journal under the timer's unit too; problems
        // also go to the log at warning level
        if matches!(
            row.outcome,
            renew::Outcome::CannotSign | renew::Outcome::Failed
        ) {
            log::warn!(target: "renew", "{line}");
        }
        crate::outln!("{line}");
    }
    if report.restarted.is_empty() {
        crate::outln!("no static pod restarted");
    } else {
        crate::outln!("restarting static pods: {}", report.restarted.join(", "));
    }
    for c in &report.restart_checks {
        crate::outln!("{c}");
    }
    renew::write_status(&paths, &report)?;
    if report.ok() {
        log::info!(
            target: "renew",
            "{} certificate(s) renewed; status in {}",
            report.renewed(),
            renew::status_file(&paths).display()
        );
        Ok(())
    } else {
        let bad: Vec<&str> = report
            .certificates
            .iter()
            .filter(|r| {
                matches!(
                    r.outcome,
                    renew::Outcome::CannotSign | renew::Outcome::Failed
                )
            })
            .map(|r| r.name.as_str())
            .collect();
        Err(Error::Failed(format!(
            "certificate renewal: {} could not be renewed (see above and {})",
            bad.join(", "),
            renew::status_file(&paths).display()
        )))
    }
}

/// Runs `kubeboot reset` from the command line.
pub fn reset(args: &ResetArgs, lock_wait: Duration) -> Result<()> {
    let paths = Paths::new(&args.root);
    let _lock = if args.dry_run {
        None
    } else {
        Some(crate::host::lock::RunLock::acquire(&paths, lock_wait)?)
    };
    let (settings, _) = node_settings(&paths, args.config.as_deref())?;
    let opts = crate::reset::Options {
        dry_run: args.dry_run,
        force: args.force,
        keep_pki: args.keep_pki,
        etcd_endpoints: args.etcd_endpoints.clone(),
        systemctl: args.systemctl.clone(),
        timeout: Duration::from_secs(args.timeout),
    };
    crate::reset::reset(&settings, &paths, &opts)
}
