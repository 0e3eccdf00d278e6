//! OpenStack: userdata from the Nova metadata service (the config drive
//! is read by [`super::disk`]).
//!
//! Endpoint: `<base>/openstack/latest/user_data`. 404 or an empty body means the instance has
//! no userdata.

use std::time::Duration;

use super::metadata::MetadataGet;
use super::{Fetch, Source, SourceError};
use crate::net::http::Retry;

/// The real metadata service base URL (the default; tests pass 127.0.0.1).
pub const DEFAULT_BASE_URL: &str = "http://169.254.169.254";

/// The userdata path under the base URL.
pub const USERDATA_PATH: &str = "/openstack/latest/user_data";

/// Userdata from the OpenStack (Nova) metadata service.
pub struct OpenStack(MetadataGet);

impl OpenStack {
    /// Reads `<base_url>/openstack/latest/user_data` within `budget`.
    pub fn new(base_url: &str, budget: Duration) -> Self {
        Self::with_retry(base_url, Retry::within(budget))
    }

    /// Like [`OpenStack::new`] with an explicit retry shape.
    pub fn with_retry(base_url: &str, retry: Retry) -> Self {
        OpenStack(MetadataGet::new(
            "openstack metadata",
            base_url,
            USERDATA_PATH,
            &[],
            retry,
        ))
    }
}

impl Source for OpenStack {
    fn name(&self) -> String {
        self.0.name()
    }
    fn fetch(&self) -> Result<Fetch, SourceError> {
        self.0.fetch()
    }
}
