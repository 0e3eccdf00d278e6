//! Microsoft Azure: `userData` from the Instance Metadata Service.
//!
//! Endpoint: `<base>/metadata/instance/compute/userData?api-version=2021-01-01&format=text`
//! with `Metadata: true` (IMDS refuses requests without it). The body is
//! the userdata in base64; it is decoded here. An empty body means the VM
//! has no userData. (Azure `customData` travels on the provisioning ISO,
//! not through IMDS.)

use std::time::Duration;

use base64::Engine;

use super::metadata::MetadataGet;
use super::{Fetch, Source, SourceError};
use crate::net::http::Retry;

/// The real IMDS base URL (the default; tests pass 127.0.0.1).
pub const DEFAULT_BASE_URL: &str = "http://169.254.169.254";

/// The userdata path and query under the base URL.
pub const USERDATA_PATH: &str =
    "/metadata/instance/compute/userData?api-version=2021-01-01&format=text";

/// Azure IMDS userData.
pub struct Azure(MetadataGet);

impl Azure {
    /// Reads userData from `base_url` within `budget`.
    pub fn new(base_url: &str, budget: Duration) -> Self {
        Self::with_retry(base_url, Retry::within(budget))
    }

    /// Like [`Azure::new`] with an explicit retry shape.
    pub fn with_retry(base_url: &str, retry: Retry) -> Self {
        Azure(MetadataGet::new(
            "azure imds",
            base_url,
            USERDATA_PATH,
            &[("Metadata", "true")],
            retry,
        ))
    }
}

impl Source for Azure {
    fn name(&self) -> String {
        self.0.name()
    }

    fn fetch(&self) -> Result<Fetch, SourceError> {
        match self.0.fetch()? {
            Fetch::Found(b64) => {
                let text: Vec<u8> = b64
                    .into_iter()
                    .filter(|c| !c.is_ascii_whitespace())
                    .collect();
                if text.is_empty() {
                    return Ok(Fetch::Absent("empty userData".into()));
                }
                base64::engine::general_purpose::STANDARD
                    .decode(&text)
                    .map(Fetch::Found)
                    .map_err(|e| SourceError {
                        source_name: self.name(),
                        message: format!("userData is not valid base64: {e}"),
                        retryable: false,
                    })
            }
            absent => Ok(absent),
        }
    }
}
