//! Google Compute Engine: the `user-data` instance attribute from the metadata server.
//!
//! Endpoint: `<base>/computeMetadata/v1/instance/attributes/user-data` with
//! `Metadata-Flavor: Google` (the server refuses requests without it). 404
//! or an empty body means the instance has no userdata.

use std::time::Duration;

use super::metadata::MetadataGet;
use super::{Fetch, Source, SourceError};
use crate::net::http::Retry;

/// The real metadata service base URL (the default; tests pass 127.0.0.1).
pub const DEFAULT_BASE_URL: &str = "http://169.254.169.254";

/// The userdata path under the base URL.
pub const USERDATA_PATH: &str = "/computeMetadata/v1/instance/attributes/user-data";

/// Userdata from the GCE metadata server.
pub struct Gce(MetadataGet);

impl Gce {
    /// Reads `<base_url>/computeMetadata/v1/instance/attributes/user-data` within `budget`.
    pub fn new(base_url: &str, budget: Duration) -> Self {
        Self::with_retry(base_url, Retry::within(budget))
    }

    /// Like [`Gce::new`] with an explicit retry shape.
    pub fn with_retry(base_url: &str, retry: Retry) -> Self {
        Gce(MetadataGet::new(
            "gce metadata",
            base_url,
            USERDATA_PATH,
            &[("Metadata-Flavor", "Google")],
            retry,
        ))
    }
}

impl Source for Gce {
    fn name(&self) -> String {
        self.0.name()
    }
    fn fetch(&self) -> Result<Fetch, SourceError> {
        self.0.fetch()
    }
}
