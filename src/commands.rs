//! The bodies of the commands that do not run a node: `config validate`,
//! `config show`, `token generate`, `certs ca-hash`, `certs
//! check-expiration`, `version`. `cli.rs` parses and dispatches here and to
//! `run` (the node commands); nothing here knows about clap.

use std::path::{Path, PathBuf};

use crate::config::{self, BootstrapToken};
use crate::error::{Context, Error, Result};
use crate::host::{HostFacts, Paths};
use crate::run::{self, SourceArgs, load_file, log_warnings, read_input};

/// `kubeboot version`.
pub fn version() -> Result<()> {
    crate::outln!("kubeboot {}", env!("CARGO_PKG_VERSION"));
    Ok(())
}

/// `kubeboot config validate FILE...`: exit 2 naming the field on the first invalid one.
pub fn config_validate(files: &[PathBuf]) -> Result<()> {
    let facts = HostFacts::detect(Paths::this_machine_proc());
    for f in files {
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
        // skipPhases names are checked against the plan for this node, as
        // the run checks them (`addon/kube-proxy`, kubeadm's form, is fine)
        let plan = crate::phases::plan::phases_for(loaded.settings.mode);
        crate::phases::runner::check_names(
            &plan,
            &loaded.settings.skip_phases,
            &format!("{}: skipPhases", loaded.origin),
        )?;
        crate::outln!(
            "{name}: ok ({}, {})",
            run::format_name(&loaded.format),
            loaded.settings.mode
        );
    }
    Ok(())
}

/// `kubeboot config show [FILE] [--source auto|file:PATH]`.
pub fn config_show(file: Option<PathBuf>, source: &SourceArgs) -> Result<()> {
    let paths = Paths::new(&source.root);
    let facts = HostFacts::detect(&paths.proc());
    if file.is_some() && (source.config.is_some() || source.source.is_some()) {
        return Err(Error::Invalid(
            "config show: give the config either as FILE or with --config/--source, not both"
                .into(),
        ));
    }
    let file = file.or(source.config.clone());
    let loaded = match (&file, source.source.as_deref()) {
        (Some(f), _) => load_file(f, &facts)?,
        (None, Some(spec)) if spec.starts_with("file:") => {
            load_file(Path::new(&spec[5..]), &facts)?
        }
        (None, Some(_)) => return run::show_auto(source),
        (None, None) => {
            return Err(Error::Invalid(
                "config show: give a FILE or --source auto|file:PATH".into(),
            ));
        }
    };
    log_warnings(&loaded);
    run::print_settings(&loaded)
}

/// `kubeboot token generate`.
pub fn token_generate() -> Result<()> {
    crate::outln!("{}", BootstrapToken::generate()?.expose());
    Ok(())
}

/// `kubeboot certs ca-hash FILE`.
pub fn certs_ca_hash(file: &Path) -> Result<()> {
    let pem = read_input(file)?;
    let hash = crate::pki::ca_hash(&pem).context(file.display())?;
    crate::outln!("{hash}");
    Ok(())
}

/// `kubeboot certs check-expiration [--config FILE] [--root DIR]`.
pub fn certs_check_expiration(config: Option<&Path>, root: &Path) -> Result<()> {
    let paths = Paths::new(root);
    let facts = HostFacts::detect(&paths.proc());
    let settings = match config {
        Some(f) => load_file(f, &facts)?.settings,
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
        crate::pki::expiry::check_expiration(&settings, &paths, time::OffsetDateTime::now_utc())?;
    crate::out!("{}", crate::pki::expiry::format_expiration_table(&rows));
    Ok(())
}
