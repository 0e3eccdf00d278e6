//! The mapping from HTTP outcomes to [`Fetch`] / [`SourceError`], the same
//! for every metadata service:
//! - 200 with a body: userdata found; 200 with an empty body or 404: "no
//!   userdata here" ([`Fetch::Absent`]).
//! - 5xx, 429, connection refused/reset, timeouts, DNS failures: retried
//!   until the budget is spent, then a retryable [`SourceError`].
//! - Any other status (400, 401, 403, ...): a non-retryable error naming
//!   the URL and status.

use ureq::Agent;

use super::{Fetch, SourceError};
use crate::net::http::{
    GaveUp, Method, Reply, Retry, Tried, agent, join, retry, send, status_text,
};

/// GETs a metadata URL with retries and maps the outcome: 200 + body is
/// found, 200 empty or 404 is absent, other statuses are permanent errors,
/// transient failures past the budget are retryable errors.
pub(crate) fn get_userdata(
    name: &str,
    agent: &Agent,
    url: &str,
    headers: &[(&str, &str)],
    policy: &Retry,
) -> Result<Fetch, SourceError> {
    match retry(
        policy,
        |t| send(agent, Method::Get, url, headers, t),
        |r| status_text(r.status),
    ) {
        Ok((reply, tried)) => interpret(name, reply, &tried),
        Err(gave_up) => Err(gave_up_error(name, gave_up, "")),
    }
}

/// Maps a final reply to found / absent / error.
pub(crate) fn interpret(name: &str, reply: Reply, tried: &Tried) -> Result<Fetch, SourceError> {
    match reply.status {
        200 if reply.body.is_empty() => Ok(Fetch::Absent(format!("empty userdata ({tried})"))),
        200 => Ok(Fetch::Found(reply.body)),
        404 => Ok(Fetch::Absent(format!("no userdata ({tried})"))),
        _ => Err(SourceError {
            source_name: name.to_string(),
            message: format!("refused ({tried})"),
            retryable: false,
        }),
    }
}

/// The error for a retry loop that ended without an answer; `hint` is
/// appended when non-empty.
pub(crate) fn gave_up_error(name: &str, gave_up: GaveUp, hint: &str) -> SourceError {
    let (tried, retryable, what) = match gave_up {
        GaveUp::Budget(t) => (t, true, "gave up within the retry budget"),
        GaveUp::Permanent(t) => (t, false, "failed"),
    };
    let hint = if hint.is_empty() {
        String::new()
    } else {
        format!("; {hint}")
    };
    SourceError {
        source_name: name.to_string(),
        message: format!("{what} ({tried}){hint}"),
        retryable,
    }
}

/// A metadata endpoint read with one GET: the shape shared by the
/// services that need nothing more than a URL and fixed headers.
pub struct MetadataGet {
    service: &'static str,
    url: String,
    headers: &'static [(&'static str, &'static str)],
    retry: Retry,
    agent: Agent,
}

impl MetadataGet {
    /// `service` names it in messages ("gce metadata"); `path` is joined to
    /// `base_url`.
    pub fn new(
        service: &'static str,
        base_url: &str,
        path: &str,
        headers: &'static [(&'static str, &'static str)],
        retry: Retry,
    ) -> Self {
        MetadataGet {
            service,
            url: join(base_url, path),
            headers,
            retry,
            agent: agent(None),
        }
    }

    /// The full URL this source reads.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `"<service> <url>"`.
    pub fn name(&self) -> String {
        format!("{} {}", self.service, self.url)
    }

    /// GETs the URL with retries (see the module rules).
    pub fn fetch(&self) -> Result<Fetch, SourceError> {
        get_userdata(
            &self.name(),
            &self.agent,
            &self.url,
            self.headers,
            &self.retry,
        )
    }
}
