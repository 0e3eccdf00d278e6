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
#[command(defer = true)]
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
    /// Show the outcome of kubeboot's runs on this node: first boot (also while it runs), renewals.
    Status(StatusArgs),
    /// Undo what kubeboot did to this node (like `kubeadm reset`): remove its etcd member, then its files.
    Reset(lifecycle::ResetArgs),
    /// Print the version.
    Version,
    /// Print a shell completion script (`kubeboot completion bash > /etc/bash_completion.d/kubeboot`).
    Completion {
        /// bash, zsh or fish.
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Print the man page (roff), as installed as kubeboot.1.
    #[command(hide = true)]
    Man,
}

/// Shells `completion` writes for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum CompletionShell {
    /// GNU bash.
    Bash,
    /// zsh.
    Zsh,
    /// fish.
    Fish,
}

// Arguments of `status`.
// (A plain comment, not a doc comment: clap would make it the about text
// of the subcommand, whose arguments are built after it: cli::command.)
#[allow(missing_docs)]
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Host root.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Print the status files as one JSON object (for scripts).
    #[arg(long)]
    pub json: bool,
}

/// `config` subcommands.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
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
    /// Print default configurations (like `kubeadm config print`), with kubeboot's defaults.
    #[command(subcommand)]
    Print(PrintCommand),
    /// Container images (like `kubeadm config images`).
    #[command(subcommand)]
    Images(ImagesCommand),
}

/// `config print` subcommands.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum PrintCommand {
    /// An InitConfiguration and ClusterConfiguration (kubeadm v1beta4) with kubeboot's defaults.
    InitDefaults {
        /// `kubeadm` (v1beta4 documents) or `kubeboot` (a NodeConfig).
        #[arg(long, value_enum, default_value = "kubeadm")]
        format: crate::kubeadm_cmds::PrintFormat,
    },
    /// A JoinConfiguration (kubeadm v1beta4) with kubeboot's defaults.
    JoinDefaults {
        /// `kubeadm` (v1beta4 documents) or `kubeboot` (a NodeConfig).
        #[arg(long, value_enum, default_value = "kubeadm")]
        format: crate::kubeadm_cmds::PrintFormat,
    },
}

/// `config images` subcommands.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum ImagesCommand {
    /// Print the images a control-plane node runs, one per line, in kubeadm's order.
    List {
        /// Config file (any envelope); kubeboot's defaults when omitted.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Kubernetes version (overrides the config's).
        #[arg(long, value_name = "VERSION")]
        kubernetes_version: Option<String>,
    },
}

/// `token` subcommands.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
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
#[command(defer = true)]
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

const INIT_PHASE_HELP: &str = "\
Examples:
  kubeboot init phase certs --config kubeadm.yaml
  kubeboot init phase certs/apiserver --config kubeadm.yaml
  kubeboot init --config kubeadm.yaml phase control-plane/all
  kubeboot init phase list

Phases (`NAME/all` runs every sub-phase; --skip-phases and skipPhases take the same names):
";

const JOIN_PHASE_HELP: &str = "\
Examples:
  kubeboot join phase kubelet-start --config join.yaml
  kubeboot join phase control-plane-prepare/certs --config join.yaml
  kubeboot join --config join.yaml phase control-plane-join/mark-control-plane
  kubeboot join phase list

Phases (`NAME/all` runs every sub-phase; --skip-phases and skipPhases take the same names):
";

/// The command line as clap sees it: [`Cli`] with `init phase` and
/// `join phase` each given their own help (examples and the phase tree).
/// `main`, completions and the man page all use this.
///
/// Every subcommand's arguments are deferred (`#[command(defer = true)]`):
/// clap builds them only for the subcommand the command line names (or
/// for all of them when completions or the man page are generated), so a
/// `render` or `firstboot` does not pay for building every other
/// command's arguments and help strings. The phase tree in `init phase` and
/// `join phase`'s help is likewise built only when `init` or `join` is.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    Cli::command()
        .mut_subcommand("init", |c| c.defer(init_args))
        .mut_subcommand("join", |c| c.defer(join_args))
}

/// [`command`] with `init` and `join` built now rather than deferred, for
/// the completion scripts and the man page: clap copies the subcommand
/// tree under `help` when the top level is built, before a deferred
/// subcommand has its own subcommands, so `help init phase` would be
/// missing from the completions otherwise. (The other subcommands have no
/// subcommands inside their deferred arguments; clap lists their options in
/// another order in the generated scripts, the same options.)
fn command_for_generators() -> clap::Command {
    use clap::CommandFactory;
    Cli::command()
        .mut_subcommand("init", |c| init_args(c.defer(built)))
        .mut_subcommand("join", |c| join_args(c.defer(built)))
}

/// A deferral that adds nothing: replaces the derive's for a subcommand
/// whose arguments were already added.
fn built(c: clap::Command) -> clap::Command {
    c
}

/// `init`'s arguments (what the derive defers) plus `init phase`'s help.
fn init_args(c: clap::Command) -> clap::Command {
    <RunArgs as clap::Args>::augment_args(c).mut_subcommand("phase", |p| {
        p.about("Run one init phase or sub-phase (`kubeboot init phase certs/apiserver`); `list` prints them")
            .after_help(phase_help(true))
    })
}

/// `join`'s arguments (what the derive defers) plus `join phase`'s help.
fn join_args(c: clap::Command) -> clap::Command {
    <RunArgs as clap::Args>::augment_args(c).mut_subcommand("phase", |p| {
        p.about("Run one join phase or sub-phase (`kubeboot join phase kubelet-start`); `list` prints them")
            .after_help(phase_help(false))
    })
}

/// The examples and phase tree shown after `init phase`/`join phase`'s help.
fn phase_help(init: bool) -> String {
    let (head, list) = if init {
        (INIT_PHASE_HELP, crate::phases::plan::init_phases())
    } else {
        (JOIN_PHASE_HELP, crate::phases::plan::join_phases())
    };
    format!("{head}{}", crate::phases::runner::tree(&list))
}

/// Parses the process's arguments with [`command`].
pub fn parse() -> std::result::Result<Cli, clap::Error> {
    use clap::FromArgMatches;
    let mut m = command().try_get_matches()?;
    Cli::from_arg_matches_mut(&mut m)
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
        Command::Config(ConfigCommand::Print(p)) => {
            let text = match p {
                PrintCommand::InitDefaults { format } => {
                    crate::kubeadm_cmds::init_defaults(format)?
                }
                PrintCommand::JoinDefaults { format } => {
                    crate::kubeadm_cmds::join_defaults(format)?
                }
            };
            crate::out!("{text}");
            Ok(())
        }
        Command::Config(ConfigCommand::Images(ImagesCommand::List {
            config,
            kubernetes_version,
        })) => {
            let s = crate::kubeadm_cmds::images_settings(
                config.as_deref(),
                kubernetes_version.as_deref(),
            )?;
            for i in crate::kubeadm_cmds::images(&s) {
                crate::outln!("{i}");
            }
            Ok(())
        }
        Command::Completion { shell } => {
            let shell = match shell {
                CompletionShell::Bash => clap_complete::Shell::Bash,
                CompletionShell::Zsh => clap_complete::Shell::Zsh,
                CompletionShell::Fish => clap_complete::Shell::Fish,
            };
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut command_for_generators(), "kubeboot", &mut out);
            crate::out!("{}", String::from_utf8_lossy(&out));
            Ok(())
        }
        Command::Man => {
            let mut out = Vec::new();
            clap_mangen::Man::new(command_for_generators())
                .render(&mut out)
                .map_err(|e| crate::error::Error::Failed(format!("rendering the man page: {e}")))?;
            crate::out!("{}", String::from_utf8_lossy(&out));
            Ok(())
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
        Command::Status(args) => crate::status_view::show(&args.root, args.json),
        Command::Reset(args) => lifecycle::reset(&args, lock_wait),
        Command::Render(args) => run::render(&args, lock_wait),
        Command::Firstboot(args) => run::firstboot(&args, lock_wait),
        Command::Init(args) => run::init_or_join(&args, true, lock_wait),
        Command::Join(args) => run::init_or_join(&args, false, lock_wait),
    }
}
