//! The command line: clap data and dispatch only. The node commands' bodies
//! (and their argument structs) live in `run`, the others in `commands`.
//! Each command returns a `Result`; `main` prints the error once and maps
//! it to the exit code.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::commands;
use crate::error::Result;
use crate::run::{self, FirstbootArgs, RenderArgs, RunArgs, SourceArgs};

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
    /// After changing etcd's manifest, wait up to this many seconds for the kubelet to restart etcd
    /// (a new, healthy process) before changing the API server's (only when etcd answered before; 0: never).
    #[arg(long, value_name = "SECS", default_value_t = 180)]
    pub restart_wait: u64,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Version => commands::version(),
        Command::Config(ConfigCommand::Validate { files }) => commands::config_validate(&files),
        Command::Config(ConfigCommand::Show { file, source }) => {
            commands::config_show(file, &source)
        }
        Command::Token(TokenCommand::Generate) => commands::token_generate(),
        Command::Token(cmd) => crate::api::tokens::run(cmd),
        Command::Certs(CertsCommand::CaHash { file }) => commands::certs_ca_hash(&file),
        Command::Certs(CertsCommand::Renew(args)) => crate::pki::renew::run(&args),
        Command::Certs(CertsCommand::CheckExpiration { config, root }) => {
            commands::certs_check_expiration(config.as_deref(), &root)
        }
        Command::Reset(args) => crate::reset::run(&args),
        Command::Render(args) => run::render(&args),
        Command::Firstboot(args) => run::firstboot(&args),
        Command::Init(args) => run::init_or_join(&args, true),
        Command::Join(args) => run::init_or_join(&args, false),
    }
}
