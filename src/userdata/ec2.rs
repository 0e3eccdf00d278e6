//! AWS EC2: userdata from the instance metadata service, IMDSv2 only.
//!
//! First `PUT <base>/latest/api/token` with
//! `X-aws-ec2-metadata-token-ttl-seconds`, then `GET <base>/latest/user-data`
//! with `X-aws-ec2-metadata-token`. There is no fallback to IMDSv1: when the
//! token request is refused or never answered (the classic cause is a
//! response hop limit of 1 seen from a container), the error says so.
//!
//! The token is renewed (a new `PUT`) inside the source's one budget when
//! the `GET` is retried long enough for the token to near its lifetime
//! ([`renew_after`]), or when IMDS answers `401 Unauthorized` (the token
//! expired or was invalidated). A `401` for a token that was itself just
//! renewed because of a `401` is final: IMDS refuses tokens outright, and
//! asking again would only loop. A renewal that fails is an error naming
//! the token URL, never a request without a token.

use std::time::{Duration, Instant};

use ureq::Agent;

use super::metadata;
use super::{Fetch, Source, SourceError};
use crate::net::http::{self, Method, Reply, Retry, Step, Tried};
use crate::secret::Secret;

/// The real IMDS base URL (the default; tests pass 127.0.0.1).
pub const DEFAULT_BASE_URL: &str = "http://169.254.169.254";

/// The token path.
pub const TOKEN_PATH: &str = "/latest/api/token";
/// The userdata path.
pub const USERDATA_PATH: &str = "/latest/user-data";
/// The token lifetime asked for. kubeboot reads once, early: five minutes
/// covers the default 60 s source budget several times over, and a short
/// lifetime limits what a leaked token is worth. Longer budgets are
/// covered by renewal, not by a longer lifetime.
pub const TOKEN_TTL: Duration = Duration::from_secs(300);
/// The longest token lifetime IMDS grants (6 hours).
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(21_600);

/// How many times a `401 Unauthorized` may lead to a renewal in one fetch.
const MAX_UNAUTHORIZED_RENEWALS: u32 = 3;

const HOP_LIMIT_HINT: &str = "the IMDSv2 token request (PUT) got no usable answer; IMDSv1 is never used. \
If kubeboot runs in a container or behind another network hop, raise the instance's metadata \
response hop limit (HttpPutResponseHopLimit) to 2; also check that IMDS is enabled (HttpEndpoint)";

/// The age at which a token of lifetime `ttl` is renewed before its next
/// use: the lifetime minus a fifth of it, at most 60 s less (240 s for the
/// default 300 s). The margin is far longer than one attempt (at most
/// 5 s), so a token never expires in the middle of a request.
pub fn renew_after(ttl: Duration) -> Duration {
    ttl.saturating_sub((ttl / 5).min(Duration::from_secs(60)))
}

/// EC2 userdata through IMDSv2.
pub struct Ec2 {
    token_url: String,
    userdata_url: String,
    retry: Retry,
    token_ttl: Duration,
    agent: Agent,
}

/// A token and when the request that obtained it was sent (its lifetime
/// started no earlier).
struct Token {
    value: Secret,
    sent: Instant,
}

/// Why a token is renewed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Renew {
    /// Older than [`renew_after`] its lifetime.
    Age,
    /// IMDS answered 401.
    Unauthorized,
}

/// What one userdata `GET` round gave.
enum Got {
    /// A final reply (200, 404, 403, ...).
    Reply(Reply),
    /// The token must be renewed before the next attempt.
    Renew(Renew),
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
            token_ttl: TOKEN_TTL,
            agent: http::agent(None),
        }
    }

    /// Asks for tokens of lifetime `ttl` instead of [`TOKEN_TTL`], in whole
    /// seconds from 1 s to [`MAX_TOKEN_TTL`] (the range IMDS accepts).
    pub fn with_token_ttl(mut self, ttl: Duration) -> Self {
        self.token_ttl = Duration::from_secs(ttl.as_secs().clamp(1, MAX_TOKEN_TTL.as_secs()));
        self
    }

    /// The retry shape with what is left of the one budget.
    fn rest(&self, start: Instant) -> Retry {
        Retry {
            budget: self.retry.budget.saturating_sub(start.elapsed()),
            ..self.retry
        }
    }

    fn token_source_name(&self) -> String {
        format!("ec2 imdsv2 token PUT {}", self.token_url)
    }

    /// PUTs for a token; `renewing` says why, for the error.
    fn token(&self, retry: &Retry, renewing: Option<Renew>) -> Result<Token, SourceError> {
        let ttl = self.token_ttl.as_secs().to_string();
        let headers = [("X-aws-ec2-metadata-token-ttl-seconds", ttl.as_str())];
        let mut sent = Instant::now();
        let got = http::retry(
            retry,
            |t| {
                sent = Instant::now();
                match http::send(&self.agent, Method::Put, &self.token_url, &headers, t) {
                    Step::Done(r) if r.status == 200 && !r.body.is_empty() => Step::Done(r.body),
                    Step::Done(r) => Step::Stop(http::status_text(r.status)),
                    Step::Again(why) => Step::Again(why),
                    Step::Stop(why) => Step::Stop(why),
                }
            },
            |_| "HTTP 200 OK".to_string(),
        );
        let name = match renewing {
            None => self.token_source_name(),
            Some(Renew::Age) => format!(
                "{} (renewing the token before it expires)",
                self.token_source_name()
            ),
            Some(Renew::Unauthorized) => format!(
                "{} (renewing the token after {} answered HTTP 401 Unauthorized)",
                self.token_source_name(),
                self.userdata_url
            ),
        };
        match got {
            Ok((body, _)) => match String::from_utf8(body) {
                Ok(t) if !t.trim().is_empty() && !t.trim().contains(['\r', '\n']) => Ok(Token {
                    value: Secret::new(t.trim().to_string()),
                    sent,
                }),
                _ => Err(SourceError {
                    source_name: name,
                    message: "the token is not one line of text".into(),
                    retryable: false,
                }),
            },
            Err(gave_up) => Err(metadata::gave_up_error(&name, gave_up, HOP_LIMIT_HINT)),
        }
    }
}

/// Adds one retry round's attempts to the running total.
fn add(total: &mut Tried, round: Tried, start: Instant) {
    total.attempts += round.attempts;
    total.last = round.last;
    total.elapsed_ms = start.elapsed().as_millis();
}

impl Source for Ec2 {
    fn name(&self) -> String {
        format!("ec2 imdsv2 {}", self.userdata_url)
    }

    fn fetch(&self) -> Result<Fetch, SourceError> {
        let start = Instant::now();
        let mut token = self.token(&self.rest(start), None)?;
        let renew_at = renew_after(self.token_ttl);
        let mut total = Tried::default();
        let mut unauthorized_renewals = 0u32;
        // Set by a renewal after a 401; cleared by any other answer to a GET.
        let mut fresh_after_401 = false;
        loop {
            let round = http::retry(
                &self.rest(start),
                |t| {
                    if token.sent.elapsed() >= renew_at {
                        return Step::Done(Got::Renew(Renew::Age));
                    }
                    let headers = [("X-aws-ec2-metadata-token", token.value.expose())];
                    match http::send(&self.agent, Method::Get, &self.userdata_url, &headers, t) {
                        Step::Done(r) if r.status == 401 => {
                            Step::Done(Got::Renew(Renew::Unauthorized))
                        }
                        Step::Done(r) => Step::Done(Got::Reply(r)),
                        Step::Again(why) => {
                            fresh_after_401 = false;
                            Step::Again(why)
                        }
                        Step::Stop(why) => Step::Stop(why),
                    }
                },
                |g| match g {
                    Got::Reply(r) => http::status_text(r.status),
                    Got::Renew(Renew::Age) => "token due for renewal".into(),
                    Got::Renew(Renew::Unauthorized) => http::status_text(401),
                },
            );
            let why = match round {
                Ok((Got::Reply(reply), tried)) => {
                    add(&mut total, tried, start);
                    return metadata::interpret(&self.name(), reply, &total);
                }
                Ok((Got::Renew(why), mut tried)) => {
                    if why == Renew::Age {
                        // That round's last "attempt" sent nothing.
                        tried.attempts -= 1;
                    }
                    add(&mut total, tried, start);
                    why
                }
                Err(gave_up) => {
                    let (mut tried, budget) = match gave_up {
                        http::GaveUp::Budget(t) => (t, true),
                        http::GaveUp::Permanent(t) => (t, false),
                    };
                    tried.attempts += total.attempts;
                    tried.elapsed_ms = start.elapsed().as_millis();
                    let gave_up = if budget {
                        http::GaveUp::Budget(tried)
                    } else {
                        http::GaveUp::Permanent(tried)
                    };
                    return Err(metadata::gave_up_error(&self.name(), gave_up, ""));
                }
            };
            if why == Renew::Unauthorized {
                unauthorized_renewals += 1;
                let refused = if fresh_after_401 {
                    "refused the IMDSv2 token it had just issued to replace one it refused"
                } else if unauthorized_renewals > MAX_UNAUTHORIZED_RENEWALS {
                    "refused IMDSv2 tokens too often"
                } else {
                    ""
                };
                if !refused.is_empty() {
                    return Err(SourceError {
                        source_name: self.name(),
                        message: format!("{refused} ({total}); IMDSv1 is never used"),
                        retryable: false,
                    });
                }
            }
            fresh_after_401 = why == Renew::Unauthorized;
            token = self.token(&self.rest(start), Some(why))?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_margin() {
        assert_eq!(renew_after(TOKEN_TTL), Duration::from_secs(240));
        assert_eq!(renew_after(MAX_TOKEN_TTL), Duration::from_secs(21_540));
        assert_eq!(
            renew_after(Duration::from_secs(2)),
            Duration::from_millis(1600)
        );
        assert_eq!(
            renew_after(Duration::from_secs(1)),
            Duration::from_millis(800)
        );
    }

    #[test]
    fn token_ttl_is_clamped_to_what_imds_accepts() {
        let e = Ec2::with_retry("http://127.0.0.1:9", Retry::within(Duration::from_secs(1)));
        assert_eq!(e.token_ttl, TOKEN_TTL);
        let e = e.with_token_ttl(Duration::from_millis(10));
        assert_eq!(e.token_ttl, Duration::from_secs(1));
        let e = e.with_token_ttl(Duration::from_secs(100_000));
        assert_eq!(e.token_ttl, MAX_TOKEN_TTL);
    }
}
