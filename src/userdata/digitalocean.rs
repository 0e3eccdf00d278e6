//! DigitalOcean: userdata from the droplet metadata service.
//!
//! Endpoint: `<base>/metadata/v1/user-data`. 404 or an empty body means the instance has
//! no userdata.

use std::time::Duration;

use super::metadata::MetadataGet;
use super::{Fetch, Source, SourceError};
use crate::net::http::Retry;

/// The real metadata service base URL (the default; tests pass 127.0.0.1).
pub const DEFAULT_BASE_URL: &str = "http://169.254.169.254";

/// The userdata path under the base URL.
pub const USERDATA_PATH: &str = "/metadata/v1/user-data";

/// Userdata from the DigitalOcean droplet metadata service.
pub struct DigitalOcean(MetadataGet);

impl DigitalOcean {
    /// Reads `<base_url>/metadata/v1/user-data` within `budget`.
    pub fn new(base_url: &str, budget: Duration) -> Self {
        Self::with_retry(base_url, Retry::within(budget))
    }

    /// Like [`DigitalOcean::new`] with an explicit retry shape.
    pub fn with_retry(base_url: &str, retry: Retry) -> Self {
        DigitalOcean(MetadataGet::new(
            "digitalocean metadata",
            base_url,
            USERDATA_PATH,
            &[],
            retry,
        ))
    }
}

impl Source for DigitalOcean {
    fn name(&self) -> String {
        self.0.name()
    }
    fn fetch(&self) -> Result<Fetch, SourceError> {
        self.0.fetch()
    }
}
