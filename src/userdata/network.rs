//! Which network and disk sources a platform uses, in the order they are
//! asked: one `match`, read top to bottom. Local sources (files, the
//! NoCloud seed directory, the kernel command line) come before these and
//! are listed elsewhere; this module never adds a metadata service for a
//! platform that was not declared or detected ([`crate::platform`]).

use std::time::Duration;

use super::disk::Disk;
use super::{Source, azure, digitalocean, ec2, gce, hetzner, openstack};
use crate::host::Paths;
use crate::host::disks::Kind;
use crate::platform::Platform;

/// The default overall time a network source may spend (all attempts and
/// backoff waits together).
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(60);

/// What the command line says about network sources.
#[derive(Debug, Clone)]
pub struct NetOptions {
    /// `--metadata-url`: replaces the base URL of whichever metadata service
    /// the platform uses (the default is the service's real address).
    pub metadata_url: Option<String>,
    /// The overall budget per network source.
    pub budget: Duration,
    /// The root config disks are looked for under.
    pub paths: Paths,
}

impl NetOptions {
    /// Defaults: real addresses, [`DEFAULT_BUDGET`]. (A `kubeboot.config=`
    /// URL is not a source here: the kernel command line yields it and
    /// `run` fetches it.)
    pub fn new(paths: &Paths) -> Self {
        NetOptions {
            metadata_url: None,
            budget: DEFAULT_BUDGET,
            paths: paths.clone(),
        }
    }
}

/// The network and disk sources for `platform`, in the order to ask them.
/// Disks come before metadata services (they are local and fast).
pub fn sources_for(platform: Platform, opts: &NetOptions) -> Vec<Box<dyn Source>> {
    let base = |default: &str| {
        opts.metadata_url
            .clone()
            .unwrap_or_else(|| default.to_string())
    };
    let budget = opts.budget;
    let mut out: Vec<Box<dyn Source>> = Vec::new();
    let nocloud = || Box::new(Disk::new(&opts.paths, Kind::NoCloud)) as Box<dyn Source>;
    let config_drive = || Box::new(Disk::new(&opts.paths, Kind::ConfigDrive)) as Box<dyn Source>;
    match platform {
        Platform::None => {}
        Platform::NoCloud => out.push(nocloud()),
        Platform::ConfigDrive => out.push(config_drive()),
        Platform::Qemu | Platform::Metal => {
            out.push(nocloud());
            out.push(config_drive());
        }
        Platform::OpenStack => {
            out.push(config_drive());
            out.push(Box::new(openstack::OpenStack::new(
                &base(openstack::DEFAULT_BASE_URL),
                budget,
            )));
        }
        Platform::Ec2 => out.push(Box::new(ec2::Ec2::new(
            &base(ec2::DEFAULT_BASE_URL),
            budget,
        ))),
        Platform::Gce => out.push(Box::new(gce::Gce::new(
            &base(gce::DEFAULT_BASE_URL),
            budget,
        ))),
        Platform::Azure => out.push(Box::new(azure::Azure::new(
            &base(azure::DEFAULT_BASE_URL),
            budget,
        ))),
        Platform::Hetzner => out.push(Box::new(hetzner::Hetzner::new(
            &base(hetzner::DEFAULT_BASE_URL),
            budget,
        ))),
        Platform::DigitalOcean => out.push(Box::new(digitalocean::DigitalOcean::new(
            &base(digitalocean::DEFAULT_BASE_URL),
            budget,
        ))),
    }
    out
}

pub use super::{Attempted, Search, first_found};
