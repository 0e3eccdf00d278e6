//! The node configuration: kubeboot's own NodeConfig format and kubeadm's
//! v1beta3/v1beta4 documents, merged, defaulted and validated into one
//! [`Settings`] value.
//!
//! Three layers (see `docs/architecture.md`): [`raw`] (every field
//! optional) ← [`parse`] (documents → one raw config) → [`resolve`]
//! (defaults and validation, in one function).

pub mod component;
pub mod examples;
pub mod from_cluster;
pub mod kubeadm;
pub mod model;
pub mod parse;
pub mod patches;
pub mod raw;
pub mod resolve;
pub mod token;

pub use model::*;
pub use token::BootstrapToken;

use crate::envelope::{self, Unwrapped};
use crate::error::Error;
use crate::host::HostFacts;

/// A configuration read from userdata, with what else the userdata carried.
#[derive(Debug)]
pub struct Loaded {
    /// The validated settings.
    pub settings: Settings,
    /// The format the config was written in.
    pub format: parse::Format,
    /// Where in the userdata the config was found.
    pub origin: String,
    /// The source the userdata came from (file path, URL).
    pub source: String,
    /// The envelope it came in and the files it carries.
    pub envelope: Unwrapped,
}

/// Unwraps `bytes` (any envelope), parses and validates the config inside.
/// `name` names the source in messages (a file path, a URL).
pub fn load(bytes: &[u8], name: &str, facts: &HostFacts) -> Result<Loaded, Error> {
    let unwrapped =
        envelope::unwrap(bytes, facts).map_err(|e| Error::Invalid(format!("{name}: {e}")))?;
    from_unwrapped(unwrapped, name, facts)
}

/// Parses and validates the config documents of an unwrapped envelope.
pub fn from_unwrapped(
    mut unwrapped: Unwrapped,
    name: &str,
    facts: &HostFacts,
) -> Result<Loaded, Error> {
    for d in &mut unwrapped.documents {
        if !d.origin.starts_with(name) {
            d.origin = if d.origin.is_empty() {
                name.to_string()
            } else {
                format!("{name}: {}", d.origin)
            };
        }
    }
    if unwrapped.documents.is_empty() {
        return Err(Error::Invalid(format!(
            "{name}: no kubeboot or kubeadm configuration found in this {}",
            if unwrapped.kind.is_empty() {
                "userdata"
            } else {
                unwrapped.kind.as_str()
            }
        )));
    }
    let parsed = parse::parse_documents(&unwrapped.documents)?;
    let carried_pki = unwrapped.files.iter().any(|f| f.path.ends_with("/ca.crt"));
    let format = parsed.format.clone();
    let origin = parsed.origin.clone();
    let mut settings = resolve::resolve(parsed, facts, carried_pki)?;
    settings
        .warnings
        .extend(unwrapped.warnings.iter().map(|w| Warning {
            field: String::new(),
            message: w.clone(),
        }));
    Ok(Loaded {
        settings,
        format,
        origin,
        source: name.to_string(),
        envelope: unwrapped,
    })
}

#[cfg(test)]
mod tests;
