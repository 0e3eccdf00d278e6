//! The only code that touches the machine: paths under `--root`, atomic
//! file writes with modes, and facts read from the host (hostname, default
//! route address).

pub mod alloc;
pub mod dirs;
pub mod dryrun;
pub mod facts;
pub mod fs;
pub mod lock;
pub mod paths;

pub use facts::HostFacts;
pub use paths::Paths;
pub mod detect;
pub mod disks;
pub mod probes;
pub mod proxy;
pub mod systemd;
