//! The command line: argument parsing and dispatch. Each command returns a
//! `Result`; `main` prints the error once and maps it to the exit code.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, Loaded};
use crate::error::{Error, Result};
use crate::host::{HostFacts, Paths};

/// kubeboot: bootstrap a Kubernetes node at first boot from its userdata.
///
/// Exit codes: 0 success, 1 failure, 2 invalid input or usage.
#[derive(Debug, Parser)]
#[command(name = "kubeboot", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Log level: error, warn, info, debug, trace.
    #[arg(long, global = true, default_value = "info", value_name = "LEVEL")]
    pub log_level: log::LevelFilter,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Find the userdata, then init or join this node (run by kubeboot.service at first boot).
    Firstboot(FirstbootArgs),
    /// Bootstrap the first control-plane node (like `kubeadm init`).
    Init(RunArgs),
    /// Join this node to a cluster (like `kubeadm join`).
    Join(RunArgs),
    /// Write every file a node needs under --root, offline: PKI, kubeconfigs, manifests, kubelet files.
    Render(RenderArgs),
    /// Validate or show configurations.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Bootstrap tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Certificates.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Undo what kubeboot did to this node (like `kubeadm reset`): remove its etcd member, then its files.
    Reset(ResetArgs),
    /// Print the version.
    Version,
}

/// Arguments of `reset`.
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

/// Where the configuration comes from, for commands that run a node.
#[derive(Debug, Args, Clone)]
pub struct SourceArgs {
    /// A config file in any accepted envelope (kubeboot or kubeadm YAML, cloud-config, MIME, Ignition, gzip).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where to look for userdata: `auto` (local sources, then the platform's) or `file:PATH`.
    #[arg(long, value_name = "SPEC", conflicts_with = "config")]
    pub source: Option<String>,
    /// Host root: every path kubeboot reads or writes is under it.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Platform override (skips detection), e.g. aws, gcp, azure, openstack, hetzner, digitalocean, nocloud, none.
    #[arg(long, value_name = "NAME")]
    pub platform: Option<String>,
    /// Base URL of the platform's metadata service (tests point it at 127.0.0.1).
    #[arg(long, value_name = "URL")]
    pub metadata_url: Option<String>,
}

/// Options shared by the commands that run a node.
#[derive(Debug, Args, Clone)]
pub struct RunOpts {
    /// Comma-separated phases to skip.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub skip_phases: Vec<String>,
    /// Write under --root but start nothing and contact nothing; print what would be done.
    #[arg(long)]
    pub dry_run: bool,
    /// Comma-separated preflight checks whose errors become warnings (kubeadm's names), or `all`.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub ignore_preflight_errors: Vec<String>,
    /// How long token discovery may take, in seconds (kubeadm: 300).
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub discovery_timeout: u64,
    /// How long each health wait (kubelet, control plane, TLS bootstrap) may take, in seconds (kubeadm: 240).
    #[arg(long, value_name = "SECS", default_value_t = 240)]
    pub wait_timeout: u64,
    /// The kubelet's healthz URL (its healthzPort; tests point it at 127.0.0.1).
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:10248/healthz"
    )]
    pub kubelet_healthz_url: String,
    /// The systemctl program to drive units with (a wrapper in image builds or tests).
    #[arg(long, value_name = "PATH", default_value = "systemctl")]
    pub systemctl: String,
}

/// Arguments of `firstboot`.
#[derive(Debug, Args)]
pub struct FirstbootArgs {
    /// Source selection.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Run options.
    #[command(flatten)]
    pub opts: RunOpts,
}

/// Arguments of `init` and `join`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Source selection.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Run options.
    #[command(flatten)]
    pub opts: RunOpts,
    /// Run a single phase (`phase NAME`) instead of all.
    #[command(subcommand)]
    pub phase: Option<PhaseCommand>,
}

/// `init phase NAME` / `join phase NAME`.
#[derive(Debug, Subcommand)]
pub enum PhaseCommand {
    /// Run one phase by name (`kubeboot init phase certs`); `list` prints the phases.
    Phase {
        /// Phase name.
        name: String,
    },
}

/// Arguments of `render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Config file (any envelope).
    #[arg(long, value_name = "FILE", required_unless_present = "example")]
    pub config: Option<PathBuf>,
    /// Render a built-in example instead: `control-plane` or `worker`.
    #[arg(long, value_name = "NAME", conflicts_with = "config")]
    pub example: Option<String>,
    /// Directory to render the node's files into.
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
}

/// `config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check config files (any envelope); exit 2 naming the field on the first invalid one.
    Validate {
        /// Files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the resolved configuration as JSON, secrets redacted.
    Show {
        /// A config file (any envelope); omit with --source auto.
        file: Option<PathBuf>,
        /// Source selection.
        #[command(flatten)]
        source: SourceArgs,
    },
}

/// `token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a new random bootstrap token (`[a-z0-9]{6}.[a-z0-9]{16}`).
    Generate,
    /// Create a bootstrap token in the cluster (kubeadm's bootstrap-token-<id> Secret) and print it.
    Create(TokenCreateArgs),
    /// List the cluster's bootstrap tokens (ids, expiry, usages; never the secrets).
    List(TokenClientArgs),
    /// Delete bootstrap tokens by id (or whole token).
    Delete {
        /// Token ids (`abcdef`) or tokens.
        #[arg(required = true, value_name = "ID", value_parser = secret_arg)]
        ids: Vec<crate::secret::Secret>,
        /// Cluster access.
        #[command(flatten)]
        client: TokenClientArgs,
    },
}

/// Keeps a command-line value that may be a secret out of `Debug` output.
fn secret_arg(s: &str) -> std::result::Result<crate::secret::Secret, String> {
    Ok(crate::secret::Secret::new(s))
}

/// How the `token` commands reach the cluster.
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

/// Arguments of `token create`.
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

/// `certs` subcommands.
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Print the CA public key pin (`sha256:<hex>`) for --discovery-token-ca-cert-hash / caCertHash.
    CaHash {
        /// CA certificate (PEM), e.g. /etc/kubernetes/pki/ca.crt.
        file: PathBuf,
    },
    /// Renew leaf certificates and kubeconfig client certificates (kubeadm's names, or `all`).
    Renew(CertsRenewArgs),
    /// Show the expiry of every certificate under --root.
    CheckExpiration {
        /// Config file (any envelope); defaults are used when omitted.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Host root.
        #[arg(long, value_name = "DIR", default_value = "/")]
        root: PathBuf,
    },
}

/// Arguments of `certs renew`.
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
}

/// Reads a file given on the command line (bounded like every userdata
/// source); a missing, unreadable or oversized file is invalid input.
pub fn read_input(path: &std::path::Path) -> Result<Vec<u8>> {
    crate::userdata::local::read_bounded(path)
        .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
}

/// Loads and validates a config file (any envelope).
pub fn load_file(path: &std::path::Path, facts: &HostFacts) -> Result<Loaded> {
    let bytes = read_input(path)?;
    config::load(&bytes, &path.display().to_string(), facts)
}

pub(crate) fn log_warnings(loaded: &Loaded) {
    for w in &loaded.settings.warnings {
        if w.field.is_empty() {
            // envelope warnings already say where in the userdata they are
            log::warn!("{}: {}", loaded.source, w.message);
        } else {
            log::warn!("{}: {}: {}", loaded.origin, w.field, w.message);
        }
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Version => {
            crate::outln!("kubeboot {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Config(ConfigCommand::Validate { files }) => {
            let facts = HostFacts::detect(std::path::Path::new("/proc"));
            for f in &files {
                let name = f.display().to_string();
                let bytes = read_input(f)?;
                let unwrapped = crate::envelope::unwrap(&bytes, &facts)
                    .map_err(|e| Error::Invalid(format!("{name}: {e}")))?;
                if unwrapped.documents.is_empty() && !unwrapped.config_urls.is_empty() {
                    for u in &unwrapped.config_urls {
                        let pin = if u.sha256.is_some() {
                            "content pinned by sha256"
                        } else {
                            "not pinned"
                        };
                        // same rules as at boot: http:// only with a pin
                        crate::userdata::url::ConfigUrl::new(&u.url, u.sha256.as_deref(), None)
                            .map_err(|e| Error::Invalid(format!("{name}: {e}")))?;
                        crate::outln!(
                            "{name}: ok (points to {}, {pin}; that config is validated when fetched)",
                            u.url
                        );
                    }
                    continue;
                }
                let loaded = config::from_unwrapped(unwrapped, &name, &facts)?;
                log_warnings(&loaded);
                crate::outln!(
                    "{name}: ok ({}, {})",
                    format_name(&loaded.format),
                    serde_json::to_value(loaded.settings.mode)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
        Command::Config(ConfigCommand::Show { file, source }) => {
            let paths = Paths::new(&source.root);
            let facts = HostFacts::detect(&paths.host("/proc"));
            let file = file.or(source.config.clone());
            let loaded = match (&file, source.source.as_deref()) {
                (Some(f), _) => load_file(f, &facts)?,
                (None, Some(spec)) if spec.starts_with("file:") => {
                    load_file(std::path::Path::new(&spec[5..]), &facts)?
                }
                (None, Some(_)) => return crate::run::show_auto(&source),
                (None, None) => {
                    return Err(Error::Invalid(
                        "config show: give a FILE or --source auto|file:PATH".into(),
                    ));
                }
            };
            log_warnings(&loaded);
            print_settings(&loaded)
        }
        Command::Token(cmd) => crate::api::tokens::run(cmd),
        Command::Certs(CertsCommand::CaHash { file }) => {
            let pem = read_input(&file)?;
            let hash = crate::pki::ca_hash(&pem).map_err(|e| match e {
                Error::Invalid(m) => Error::Invalid(format!("{}: {m}", file.display())),
                other => other,
            })?;
            crate::outln!("{hash}");
            Ok(())
        }
        Command::Certs(CertsCommand::Renew(args)) => crate::pki::renew::run(&args),
        Command::Certs(CertsCommand::CheckExpiration { config, root }) => {
            let paths = Paths::new(&root);
            let facts = HostFacts::detect(&paths.host("/proc"));
            let settings = match config {
                Some(f) => load_file(&f, &facts)?.settings,
                None => {
                    config::load(
                        config::examples::MINIMAL_CONTROL_PLANE.as_bytes(),
                        "defaults",
                        &facts,
                    )?
                    .settings
                }
            };
            let rows =
                crate::pki::check_expiration(&settings, &paths, time::OffsetDateTime::now_utc())?;
            crate::out!("{}", crate::pki::format_expiration_table(&rows));
            Ok(())
        }
        Command::Reset(args) => crate::reset::run(&args),
        Command::Render(args) => crate::run::render(&args),
        Command::Firstboot(args) => crate::run::firstboot(&args),
        Command::Init(args) => crate::run::init_or_join(&args, true),
        Command::Join(args) => crate::run::init_or_join(&args, false),
    }
}

pub(crate) fn format_name(f: &config::parse::Format) -> String {
    match f {
        config::parse::Format::Kubeboot => "kubeboot NodeConfig".into(),
        config::parse::Format::Kubeadm(v) => format!("kubeadm {v}"),
        config::parse::Format::KernelArgs => "kernel command line".into(),
    }
}

pub(crate) fn print_settings(loaded: &Loaded) -> Result<()> {
    let out = serde_json::json!({
        "source": loaded.origin,
        "format": format_name(&loaded.format),
        "envelope": loaded.envelope.kind,
        "carriedFiles": loaded.envelope.files.iter().map(|f| serde_json::json!({
            "path": f.path, "mode": format!("{:04o}", f.mode), "bytes": f.content.len()
        })).collect::<Vec<_>>(),
        "settings": loaded.settings,
    });
    let text = serde_json::to_string_pretty(&out)
        .map_err(|e| Error::Failed(format!("encoding JSON: {e}")))?;
    crate::outln!("{text}");
    Ok(())
}

/// A new random bootstrap token from the system CSPRNG.
pub fn generate_token() -> Result<config::BootstrapToken> {
    use ring::rand::SecureRandom;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let rng = ring::rand::SystemRandom::new();
    let mut out = String::with_capacity(22);
    while out.len() < 22 {
        let mut buf = [0u8; 32];
        rng.fill(&mut buf)
            .map_err(|_| Error::Failed("the system random number generator failed".into()))?;
        // rejection sampling keeps the distribution uniform: 252 = 7 * 36
        for b in buf {
            if b < 252 && out.len() < 22 {
                out.push(ALPHABET[(b % 36) as usize] as char);
            }
        }
    }
    let (id, secret) = out.split_at(6);
    Ok(config::BootstrapToken {
        id: id.to_string(),
        secret: crate::secret::Secret::new(secret),
    })
}
