//! AWS EC2: userdata from the instance metadata service, IMDSv2 only.
//!
//! First `PUT <base>/latest/api/token` with
//! `X-aws-ec2-metadata-token-ttl-seconds`, then `GET <base>/latest/user-data`
//! with `X-aws-ec2-metadata-token`. There is no fallback to IMDSv1: when the
//! token request is refused or never answered (the classic cause is a
//! response hop limit of 1 seen from a container), the error says so.

use std::time::{Duration, Instant};

use ureq::Agent;

use super::http::{self, Method, Retry, Step};
use super::{Fetch, Source, SourceError};
use crate::secret::Secret;

/// The real IMDS base URL (the default; tests pass 127.0.0.1).
pub const DEFAULT_BASE_URL: &str = "http://169.254.169.254";

/// The token path.
pub const TOKEN_PATH: &str = "/latest/api/token";
/// The userdata path.
pub const USERDATA_PATH: &str = "/latest/user-data";
/// The token lifetime asked for, in seconds (kubeboot reads once, early).
pub const TOKEN_TTL_SECONDS: &str = "300";

const HOP_LIMIT_HINT: &str = "the IMDSv2 token request (PUT) got no usable answer; IMDSv1 is never used. \
If kubeboot runs in a container or behind another network hop, raise the instance's metadata \
response hop limit (HttpPutResponseHopLimit) to 2; also check that IMDS is enabled (HttpEndpoint)";

/// EC2 userdata through IMDSv2.
pub struct Ec2 {
    token_url: String,
    userdata_url: String,
    retry: Retry,
    agent: Agent,
}

impl Ec2 {
    /// Reads userdata from `base_url` within `budget`.
    pub fn new(base_url: &str, budget: Duration) -> Self {
        Self::with_retry(base_url, Retry::within(budget))
    }

    /// Like [`Ec2::new`] with an explicit retry shape.
    pub fn with_retry(base_url: &str, retry: Retry) -> Self {
        Ec2 {
            token_url: http::join(base_url, TOKEN_PATH),
            userdata_url: http::join(base_url, USERDATA_PATH),
            retry,
            agent: http::agent(None),
        }
    }

    fn token(&self, retry: &Retry) -> Result<Secret, SourceError> {
        let headers = [("X-aws-ec2-metadata-token-ttl-seconds", TOKEN_TTL_SECONDS)];
        let got = http::retry(
            retry,
            |t| match http::send(&self.agent, Method::Put, &self.token_url, &headers, t) {
                Step::Done(r) if r.status == 200 && !r.body.is_empty() => Step::Done(r.body),
                Step::Done(r) => Step::Stop(http::status_text(r.status)),
                Step::Again(why) => Step::Again(why),
                Step::Stop(why) => Step::Stop(why),
            },
            |_| "HTTP 200 OK".to_string(),
        );
        let name = format!("ec2 imdsv2 token PUT {}", self.token_url);
        match got {
            Ok((body, _)) => match String::from_utf8(body) {
                Ok(t) => Ok(Secret::new(t.trim().to_string())),
                Err(_) => Err(SourceError {
                    source_name: name,
                    message: "token is not text".into(),
                    retryable: false,
                }),
            },
            Err(gave_up) => Err(http::gave_up_error(&name, gave_up, HOP_LIMIT_HINT)),
        }
    }
}

impl Source for Ec2 {
    fn name(&self) -> String {
        format!("ec2 imdsv2 {}", self.userdata_url)
    }

    fn fetch(&self) -> Result<Fetch, SourceError> {
        let start = Instant::now();
        let token = self.token(&self.retry)?;
        // The GET gets what is left of the one budget.
        let mut rest = self.retry;
        rest.budget = self.retry.budget.saturating_sub(start.elapsed());
        let headers = [("X-aws-ec2-metadata-token", token.expose())];
        match http::retry(
            &rest,
            |t| http::send(&self.agent, Method::Get, &self.userdata_url, &headers, t),
            |r| http::status_text(r.status),
        ) {
            Ok((reply, tried)) => http::interpret(&self.name(), reply, &tried),
            Err(gave_up) => Err(http::gave_up_error(&self.name(), gave_up, "")),
        }
    }
}
