//! The command line: clap data and dispatch only. The node commands' bodies
//! (and their argument structs) live in `run`, the others in `commands`.
//! Each command returns a `Result`; `main` prints the error once and maps
//! it to the exit code.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::error::Result;
use crate::run::{self, FirstbootArgs, RenderArgs, RunArgs, SourceArgs};
use crate::{commands, lifecycle};

/// kubeboot: bootstrap a Kubernetes node at first boot from its userdata.
///
/// Exit codes: 0 success, 1 failure, 2 invalid input or usage.
#[derive(Debug, Parser)]
#[command(name = "kubeboot", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Log level: error, warn, info, debug, trace.
    #[arg(long, global = true, default_value = "info", value_name = "LEVEL")]
    pub log_level: log::LevelFilter,
    /// How long a command that writes under --root waits for another kubeboot run holding
    /// `<root>/var/lib/kubeboot/lock`, in seconds, before it fails naming that run's pid.
    #[arg(
        long,
        global = true,
        env = "KUBEBOOT_LOCK_TIMEOUT",
        default_value_t = 60,
        value_name = "SECS"
    )]
    pub lock_timeout: u64,
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
    Reset(lifecycle::ResetArgs),
    /// Print the version.
    Version,
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
    Create(lifecycle::TokenCreateArgs),
    /// List the cluster's bootstrap tokens (ids, expiry, usages; never the secrets).
    List(lifecycle::TokenClientArgs),
    /// Delete bootstrap tokens by id (or whole token).
    Delete {
        /// Token ids (`abcdef`) or tokens.
        #[arg(required = true, value_name = "ID", value_parser = lifecycle::secret_arg)]
        ids: Vec<crate::secret::Secret>,
        /// Cluster access.
        #[command(flatten)]
        client: lifecycle::TokenClientArgs,
    },
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
    Renew(lifecycle::CertsRenewArgs),
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

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let lock_wait = std::time::Duration::from_secs(cli.lock_timeout);
    match cli.command {
        Command::Version => commands::version(),
        Command::Config(ConfigCommand::Validate { files }) => commands::config_validate(&files),
        Command::Config(ConfigCommand::Show { file, source }) => {
            commands::config_show(file, &source)
        }
        Command::Token(TokenCommand::Generate) => commands::token_generate(),
        Command::Token(TokenCommand::Create(args)) => lifecycle::token_create(&args),
        Command::Token(TokenCommand::List(client)) => lifecycle::token_list(&client),
        Command::Token(TokenCommand::Delete { ids, client }) => {
            lifecycle::token_delete(&ids, &client)
        }
        Command::Certs(CertsCommand::CaHash { file }) => commands::certs_ca_hash(&file),
        Command::Certs(CertsCommand::Renew(args)) => lifecycle::certs_renew(&args, lock_wait),
        Command::Certs(CertsCommand::CheckExpiration { config, root }) => {
            commands::certs_check_expiration(config.as_deref(), &root)
        }
        Command::Reset(args) => lifecycle::reset(&args, lock_wait),
        Command::Render(args) => run::render(&args, lock_wait),
        Command::Firstboot(args) => run::firstboot(&args, lock_wait),
        Command::Init(args) => run::init_or_join(&args, true, lock_wait),
        Command::Join(args) => run::init_or_join(&args, false, lock_wait),
    }
}
