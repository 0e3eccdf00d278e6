//! The crate's HTTP layer, shared by the userdata sources, the API client
//! and the bounded waits: one `ureq` agent setup (no proxies, bounded
//! bodies, explicit TLS roots, optional client certificate), one `send`
//! that classifies transport failures and 5xx/429 as retryable, and a retry
//! loop with bounded exponential backoff and full jitter inside an overall
//! budget. Every outcome says what was tried: the attempt count and the
//! last status.
//!
//! What an outcome *means* (userdata found or absent, an API object
//! created) is decided by the caller: `userdata::metadata` maps replies to
//! `Fetch`/`SourceError`, `api::client` maps them to API errors.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ureq::Agent;
use ureq::tls::{RootCerts, TlsConfig};

use crate::error::Error;

/// The largest body any response may have (16 MiB).
pub const MAX_BODY: u64 = 16 * 1024 * 1024;

/// How long and how often a source may try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Overall time for all attempts and waits together.
    pub budget: Duration,
    /// The longest one attempt (connect + request + body) may take.
    pub attempt_timeout: Duration,
    /// The backoff cap before the first retry (doubles each retry).
    pub first_delay: Duration,
    /// The largest backoff cap.
    pub max_delay: Duration,
}

impl Retry {
    /// The default shape inside `budget`: attempts of at most 5 s, backoff
    /// caps 250 ms, 500 ms, 1 s, ... up to 5 s, each wait drawn uniformly
    /// from zero to the cap ("full jitter").
    pub fn within(budget: Duration) -> Self {
        Retry {
            budget,
            attempt_timeout: AGENT_TIMEOUT.min(budget.max(Duration::from_millis(100))),
            first_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(5),
        }
    }

    /// The backoff cap before retry number `n` (0-based).
    fn cap(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.min(16)).unwrap_or(u32::MAX);
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// What one attempt gave.
pub(crate) enum Step<T> {
    /// A final answer.
    Done(T),
    /// A transient failure worth retrying (the text is the reason).
    Again(String),
    /// A failure no retry will fix.
    Stop(String),
}

/// What a retry loop did: how many attempts and the last outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tried {
    /// Attempts made.
    pub attempts: u32,
    /// The last outcome ("HTTP 503", "connection refused", ...).
    pub last: String,
    /// Time spent, in milliseconds.
    pub elapsed_ms: u128,
}

impl fmt::Display for Tried {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = if self.attempts == 1 { "" } else { "s" };
        write!(
            f,
            "{} attempt{s} in {} ms, last: {}",
            self.attempts, self.elapsed_ms, self.last
        )
    }
}

/// Why a retry loop ended without an answer.
pub(crate) enum GaveUp {
    /// The budget ran out while failures were transient.
    Budget(Tried),
    /// A permanent failure.
    Permanent(Tried),
}

/// A budget with no deadline: the loop retries transient failures until
/// they stop (a worker waiting for its control plane to come up).
pub const NO_DEADLINE: Duration = Duration::MAX;

std::thread_local! {
    /// The wait a server asked for with `Retry-After` on its last 429/503
    /// (set by [`send`], taken by the retry loop on the same thread).
    static RETRY_AFTER: std::cell::Cell<Option<Duration>> = const { std::cell::Cell::new(None) };
}

/// The longest `Retry-After` honoured: a larger value is read as this, so
/// a confused server cannot park a node for hours.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// Runs `once` until it gives a final answer, a permanent failure, or the
/// budget is spent. `once` gets the timeout for this attempt.
pub(crate) fn retry<T>(
    policy: &Retry,
    once: impl FnMut(Duration) -> Step<T>,
    describe: impl Fn(&T) -> String,
) -> Result<(T, Tried), GaveUp> {
    retry_watched(policy, "", once, describe)
}

/// [`retry`] that reports while it waits: with a non-empty `what`, the
/// first retry and then one retry at least every progress interval (30 s)
/// log a line and set systemd's status (see [`crate::progress`]): what is
/// awaited, why, the attempt, the time so far and the next try.
///
/// The wait before a retry is drawn uniformly from zero to the backoff cap
/// (full jitter); when the server sent `Retry-After` with a 429 or 503, the
/// wait is that long plus a jitter of up to as long again (or the cap, if
/// larger): never less than asked, and a crowd told to come back together
/// comes back spread out.
pub(crate) fn retry_watched<T>(
    policy: &Retry,
    what: &str,
    mut once: impl FnMut(Duration) -> Step<T>,
    describe: impl Fn(&T) -> String,
) -> Result<(T, Tried), GaveUp> {
    let start = Instant::now();
    // None: no deadline (the budget does not fit in an Instant).
    let deadline = start.checked_add(policy.budget);
    let remaining =
        || deadline.map_or(NO_DEADLINE, |d| d.saturating_duration_since(Instant::now()));
    let mut tried = Tried::default();
    let mut last_report: Option<Instant> = None;
    // the last reason an attempt gave on its own (not cut short by the deadline)
    let mut answered = String::new();
    loop {
        // Always make at least one attempt, even with a tiny budget.
        let timeout = policy
            .attempt_timeout
            .min(remaining())
            .max(Duration::from_millis(50));
        tried.attempts += 1;
        RETRY_AFTER.with(|c| c.set(None));
        let began = Instant::now();
        let step = once(timeout);
        // an attempt the deadline cut shorter than the policy's attempt
        // timeout, which then ran out: it says nothing about the peer
        let cut = timeout < policy.attempt_timeout && began.elapsed() >= timeout;
        tried.elapsed_ms = start.elapsed().as_millis();
        match step {
            Step::Done(v) => {
                tried.last = describe(&v);
                if last_report.is_some() {
                    crate::progress::report(&format!(
                        "{what}: ready after {} ({} attempts)",
                        crate::progress::human(start.elapsed()),
                        tried.attempts
                    ));
                }
                return Ok((v, tried));
            }
            Step::Stop(why) => {
                tried.last = why;
                return Err(GaveUp::Permanent(tried));
            }
            Step::Again(why) => {
                // On a loaded machine the final attempt may get only the
                // deadline's last milliseconds; the error then names the
                // peer's last real answer ("HTTP 503"), not only that cut.
                tried.last = if cut && !answered.is_empty() {
                    format!(
                        "{answered} (then a final attempt cut to {} ms by the deadline: {why})",
                        timeout.as_millis()
                    )
                } else {
                    answered = why.clone();
                    why
                };
                let left = remaining();
                // Not worth another attempt in less than 50 ms.
                if left <= Duration::from_millis(50) {
                    return Err(GaveUp::Budget(tried));
                }
                let asked = RETRY_AFTER.with(std::cell::Cell::take);
                let wait = next_wait(asked, policy.cap(tried.attempts - 1))
                    .min(left - Duration::from_millis(50));
                if what.is_empty() {
                    std::thread::sleep(wait);
                    continue;
                }
                let mut why = tried.last.clone();
                if let Some(a) = asked {
                    why.push_str(&format!(", Retry-After {} s", a.as_secs()));
                }
                // The first retry reports; then a line at least every
                // interval, in the middle of a long backoff too.
                let wake = Instant::now() + wait;
                let every = crate::progress::interval();
                loop {
                    let now = Instant::now();
                    if last_report.is_none_or(|t| now.duration_since(t) >= every) {
                        crate::progress::report(&crate::progress::waiting_line(
                            what,
                            &why,
                            tried.attempts,
                            start.elapsed(),
                            wake.saturating_duration_since(now),
                        ));
                        last_report = Some(now);
                    }
                    let next_line = last_report.map_or(now, |t| t + every);
                    if next_line >= wake {
                        std::thread::sleep(wake.saturating_duration_since(Instant::now()));
                        break;
                    }
                    std::thread::sleep(next_line.saturating_duration_since(Instant::now()));
                }
            }
        }
    }
}

/// The wait before the next attempt: full jitter up to the backoff `cap`;
/// after a `Retry-After` of `a`, never earlier than `a`, plus a jitter of
/// up to as long again (or the cap, if larger), so clients told together
/// do not return together.
fn next_wait(asked: Option<Duration>, cap: Duration) -> Duration {
    match asked {
        Some(a) => a + jitter(cap.max(a)),
        None => jitter(cap),
    }
}

/// The `Retry-After` of a reply in seconds (RFC 9110: delay-seconds; an
/// HTTP date is not used by the API server and is ignored), capped at
/// [`MAX_RETRY_AFTER`].
fn retry_after(value: Option<&str>) -> Option<Duration> {
    let secs: u64 = value?.trim().parse().ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// A uniformly random duration in `[0, cap]` (full jitter).
pub(crate) fn jitter(cap: Duration) -> Duration {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    // If the system RNG fails (it does not on Linux), wait the full cap:
    // still bounded, only less spread out.
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        return cap;
    }
    let cap_ms = cap.as_millis().min(u128::from(u64::MAX)) as u64;
    Duration::from_millis(u64::from_le_bytes(b) % (cap_ms + 1))
}

/// A received response: status and (bounded) body.
pub(crate) struct Reply {
    /// HTTP status.
    pub status: u16,
    /// The body, at most [`MAX_BODY`] bytes.
    pub body: Vec<u8>,
    /// The Location header of a redirect.
    pub location: Option<String>,
}

/// The HTTP method of a request.
#[derive(Clone, Copy)]
pub(crate) enum Method<'b> {
    Get,
    Put,
    /// A POST with a JSON body.
    PostJson(&'b [u8]),
    /// A PUT with a JSON body (replace an API object).
    PutJson(&'b [u8]),
    /// A PATCH with a JSON merge patch body (RFC 7386).
    MergePatch(&'b [u8]),
    /// A DELETE without a body.
    Delete,
}

impl Method<'_> {
    /// The request line's method.
    pub(crate) fn verb(&self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Put | Method::PutJson(_) => "PUT",
            Method::PostJson(_) => "POST",
            Method::MergePatch(_) => "PATCH",
            Method::Delete => "DELETE",
        }
    }

    /// The body and its content type (empty: none), for the methods that
    /// send one.
    pub(crate) fn body(&self) -> Option<(&'static str, &[u8])> {
        match *self {
            Method::PostJson(b) | Method::PutJson(b) => Some(("application/json", b)),
            Method::MergePatch(b) => Some(("application/merge-patch+json", b)),
            Method::Put => Some(("", &[])),
            Method::Get | Method::Delete => None,
        }
    }
}

/// Builds an agent: no proxy (metadata services must be reached directly),
/// statuses returned as responses, redirects returned to the caller, and
/// TLS with exactly the given roots (or none: plain HTTP only).
pub(crate) fn agent(roots: Option<Vec<ureq::tls::Certificate<'static>>>) -> Agent {
    agent_tls(roots, false)
}

/// The CERTIFICATE blocks of a PEM bundle (other blocks are skipped), as
/// trust roots or a client chain.
pub(crate) fn certs_from_pem(pem: &[u8]) -> Vec<ureq::tls::Certificate<'static>> {
    ureq::tls::parse_pem(pem)
        .filter_map(|i| match i {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect()
}

/// An agent that does not verify the server at all. Only for the first
/// step of token discovery, whose answer is then checked by signature and
/// CA pin before anything is trusted.
pub(crate) fn agent_unverified() -> Agent {
    agent_tls(None, true)
}

/// An agent that verifies the server with `roots` and presents a client
/// certificate (`cert_chain_pem`, leaf first) with its key (`key_pem`).
/// The error names what did not parse, never the key's bytes.
pub(crate) fn agent_with_client_cert(
    roots: Vec<ureq::tls::Certificate<'static>>,
    cert_chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<Agent, Error> {
    let chain = certs_from_pem(cert_chain_pem);
    if chain.is_empty() {
        return Err(Error::Failed(
            "the client certificate holds no PEM CERTIFICATE".into(),
        ));
    }
    let key = ureq::tls::PrivateKey::from_pem(key_pem)
        .map_err(|_| Error::Failed("the client key is not a PEM private key".into()))?;
    Ok(agent_config(
        Some(roots),
        false,
        Some(ureq::tls::ClientCert::new_with_certs(&chain, key)),
    ))
}

fn agent_tls(roots: Option<Vec<ureq::tls::Certificate<'static>>>, unverified: bool) -> Agent {
    agent_config(roots, unverified, None)
}

/// ureq's per-connection input buffer, also the largest response header
/// accepted. kube-apiserver's headers are a few hundred bytes plus its
/// `Warning` headers, which it caps at 4,096 runes of text per response
/// (and one more item of at most 256: `k8s.io/apiserver/pkg/endpoints/
/// filters/warning.go`): under 9 KiB even when every character is an
/// escaped quote. Metadata services answer with a few hundred bytes.
const BUFFER_IN: usize = 16 * 1024;
/// ureq's per-connection output buffer (request head and body chunks; a
/// larger body goes out in several writes).
const BUFFER_OUT: usize = 8 * 1024;

/// The timeout an agent gives every request unless [`send`] is asked for
/// another: [`Retry::within`]'s attempt timeout. A request with its own
/// timeout carries a request-level configuration, for which ureq builds a
/// new rustls `ClientConfig` on every connection (no shared session
/// cache, no TLS resumption between the agent's connections).
const AGENT_TIMEOUT: Duration = Duration::from_secs(5);

/// The TLS algorithms kubeboot offers: ring's, with the key exchange
/// groups reordered so that the ClientHello's one key share is P-256.
/// ring computes P-256 with assembly (nistz256) and X25519 with portable
/// code: a key exchange takes half the time (`benches/kx.rs`,
/// docs/building.md). Go's `crypto/tls` (kube-apiserver, the kubelet) takes
/// a group the client sent a share for before going down its own
/// preference list, and rustls takes the client's order, so the P-256
/// share costs no extra round trip (`tests/tls_go_peer.rs`); a server
/// without P-256 asks for X25519 with a HelloRetryRequest.
pub(crate) fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::ring::{self, kx_group};
    Arc::new(rustls::crypto::CryptoProvider {
        kx_groups: vec![kx_group::SECP256R1, kx_group::X25519, kx_group::SECP384R1],
        ..ring::default_provider()
    })
}

fn agent_config(
    roots: Option<Vec<ureq::tls::Certificate<'static>>>,
    unverified: bool,
    client: Option<ureq::tls::ClientCert>,
) -> Agent {
    let mut tls = TlsConfig::builder()
        .unversioned_rustls_crypto_provider(crypto_provider())
        .disable_verification(unverified)
        .client_cert(client);
    tls = tls.root_certs(RootCerts::new_with_certs(&roots.unwrap_or_default()));
    let config = Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .user_agent(concat!("kubeboot/", env!("CARGO_PKG_VERSION")))
        // ureq's default buffers (128 KiB in and out, for the TCP and again
        // for the TLS layer) are allocated zeroed for every connection: a
        // quarter of a control-plane firstboot's instructions went into
        // zeroing them (docs/building.md). kubeboot's requests and the
        // answers' headers are small; bodies stream through the buffers.
        .input_buffer_size(BUFFER_IN)
        .max_response_header_size(BUFFER_IN)
        .output_buffer_size(BUFFER_OUT)
        .timeout_global(Some(AGENT_TIMEOUT))
        .tls_config(tls.build())
        .build();
    Agent::with_parts(
        config,
        ureq::unversioned::transport::DefaultConnector::new(),
        Resolve::<ureq::unversioned::resolver::DefaultResolver>::default(),
    )
}

/// ureq's resolver, except for an address literal (`https://10.0.0.1:6443`,
/// `http://[fd00::1]/`), which needs no lookup, and for a name looked up in
/// the last [`NAME_REUSE`]. ureq resolves the host of every request, a pooled
/// connection's too, and with a timeout set it does so on a new thread each
/// time (`ureq::unversioned::resolver`, `resolve_async`): 35 threads started
/// and joined in a control-plane firstboot, each a wake-up away from the
/// answer on a busy machine. Go's transport (kubeadm's) looks a name up only
/// to open a connection; an agent here reuses a name's addresses for
/// [`NAME_REUSE`], so the requests of one step to a name (discovery's
/// fetches of cluster-info, an etcd client's calls) make one lookup, and a
/// retry after that window looks up again. (The API client, `net::h1`,
/// looks a name up only to open its connection.)
#[derive(Debug, Default)]
struct Resolve<R = ureq::unversioned::resolver::DefaultResolver> {
    inner: R,
    /// (scheme and authority, when looked up, the addresses)
    names: std::sync::Mutex<
        Vec<(
            String,
            Instant,
            ureq::unversioned::resolver::ResolvedSocketAddrs,
        )>,
    >,
}

/// How long one agent reuses a name's addresses.
const NAME_REUSE: Duration = Duration::from_secs(2);

impl<R: ureq::unversioned::resolver::Resolver> ureq::unversioned::resolver::Resolver
    for Resolve<R>
{
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        if let Some(addr) = literal_address(uri) {
            let mut out = self.empty();
            out.push(addr);
            return Ok(out);
        }
        let key = match (uri.scheme_str(), uri.authority()) {
            (Some(s), Some(a)) => format!("{s}://{a}"),
            _ => return self.inner.resolve(uri, config, timeout),
        };
        if let Ok(names) = self.names.lock()
            && let Some((_, at, addrs)) = names.iter().find(|(k, _, _)| *k == key)
            && at.elapsed() < NAME_REUSE
        {
            return Ok(addrs.clone());
        }
        // looked up without the lock held: a slow lookup blocks no other name
        let addrs = self.inner.resolve(uri, config, timeout)?;
        if let Ok(mut names) = self.names.lock() {
            names.retain(|(k, _, _)| *k != key);
            names.push((key, Instant::now(), addrs.clone()));
        }
        Ok(addrs)
    }
}

/// The socket address of a URL whose host is an IP address literal (the
/// scheme's default port when none is given); `None` for a name.
pub(crate) fn literal_address(uri: &ureq::http::Uri) -> Option<std::net::SocketAddr> {
    let authority = uri.authority()?;
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let ip: std::net::IpAddr = host.parse().ok()?;
    let port = match (authority.port_u16(), uri.scheme_str()) {
        (Some(p), _) => p,
        (None, Some("https")) => 443,
        (None, Some("http")) => 80,
        (None, _) => return None,
    };
    Some(std::net::SocketAddr::new(ip, port))
}

/// One request's timeout and extra headers, whatever its method.
fn prepare<B>(
    req: ureq::RequestBuilder<B>,
    timeout: Duration,
    headers: &[(&str, &str)],
) -> ureq::RequestBuilder<B> {
    // the agent's own timeout keeps the agent's TLS configuration (see
    // AGENT_TIMEOUT); any other makes the request carry its own
    let mut req = if timeout == AGENT_TIMEOUT {
        req
    } else {
        req.config().timeout_global(Some(timeout)).build()
    };
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req
}

/// Sends one request with `timeout`; classifies transport failures and
/// retryable statuses (5xx, 429) as [`Step::Again`].
pub(crate) fn send(
    agent: &Agent,
    method: Method<'_>,
    url: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Step<Reply> {
    trace_request(method, url, headers);
    let with_body = |req| match method.body() {
        Some(("", _)) | None => prepare(req, timeout, headers).send_empty(),
        Some((kind, body)) => prepare(req, timeout, headers)
            .header("Content-Type", kind)
            .send(body),
    };
    let result = match method {
        Method::Get => prepare(agent.get(url), timeout, headers).call(),
        Method::Delete => prepare(agent.delete(url), timeout, headers).call(),
        Method::Put | Method::PutJson(_) => with_body(agent.put(url)),
        Method::PostJson(_) => with_body(agent.post(url)),
        Method::MergePatch(_) => with_body(agent.patch(url)),
    };
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => return classify(e, timeout),
    };
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(why) = retryable_status(
        status,
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
    ) {
        return Step::Again(why);
    }
    match resp.body_mut().with_config().limit(MAX_BODY).read_to_vec() {
        Ok(body) => Step::Done(Reply {
            status,
            body,
            location,
        }),
        Err(e) => classify(e, timeout),
    }
}

/// The trace line of one request: method and URL without user info or
/// query, and header names only (values such as a bearer token never).
pub(crate) fn trace_request(method: Method<'_>, url: &str, headers: &[(&str, &str)]) {
    if log::log_enabled!(target: "http", log::Level::Trace) {
        let names: Vec<&str> = headers.iter().map(|(k, _)| *k).collect();
        log::trace!(
            target: "http",
            "{} {} (headers {}: values not shown)",
            method.verb(),
            shown_url(url),
            if names.is_empty() { "-".to_string() } else { names.join(", ") }
        );
    }
}

/// A status the retry loop tries again (5xx, 429): its reason, with the
/// server's `Retry-After` kept for the loop's next wait. `None` for any
/// other status, which is the caller's answer.
pub(crate) fn retryable_status(status: u16, retry_after_value: Option<&str>) -> Option<String> {
    if status >= 500 || status == 429 {
        RETRY_AFTER.with(|c| c.set(retry_after(retry_after_value)));
        return Some(status_text(status));
    }
    None
}

fn classify<T>(e: ureq::Error, timeout: Duration) -> Step<T> {
    match e {
        ureq::Error::Timeout(_) => timed_out(timeout).step(),
        ureq::Error::ConnectionFailed => Step::Again("connection failed".into()),
        ureq::Error::HostNotFound => Step::Again("host not found".into()),
        // a TLS failure (a certificate the roots do not vouch for) will not
        // improve with retries; refused, timed out, reset are retried
        ureq::Error::Io(io) => io_cut(&io, timeout).step(),
        ureq::Error::BodyExceedsLimit(_) => Cut::TooLarge.step(),
        ureq::Error::Rustls(e) => Cut::Tls(e.to_string()).step(),
        ureq::Error::Tls(e) => Cut::Tls(e.to_string()).step(),
        other => Step::Stop(other.to_string()),
    }
}

/// Why a request (or a batch of them, `net::h1`) got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cut {
    /// The TLS handshake or a record failed: a certificate the roots do not
    /// vouch for, a refused client certificate. Retrying will not help.
    Tls(String),
    /// The connection closed or was reset with no answer under way.
    Closed(String),
    /// Any other transport failure (refused, timed out, no such host).
    Transport(String),
    /// The answer is not HTTP/1.1 kubeboot can read, or a request cannot
    /// be written (a path with spaces or control characters).
    Invalid(String),
    /// A body over [`MAX_BODY`].
    TooLarge,
}

impl Cut {
    /// The retry loop's view: TLS failures, unreadable answers and
    /// oversized bodies are permanent; the rest are worth another attempt.
    pub(crate) fn step<T>(self) -> Step<T> {
        match self {
            Cut::Tls(m) => Step::Stop(format!("{TLS_FAILURE}{m}")),
            Cut::Invalid(m) => Step::Stop(m),
            Cut::TooLarge => Step::Stop(format!("response larger than {} MiB", MAX_BODY >> 20)),
            Cut::Closed(m) | Cut::Transport(m) => Step::Again(m),
        }
    }
}

/// What an I/O error means: for the API client's connection (`net::h1`)
/// and, through [`Cut::step`], for ureq's requests ([`send`]).
pub(crate) fn io_cut(e: &std::io::Error, timeout: Duration) -> Cut {
    use std::io::ErrorKind as K;
    if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return Cut::Tls(tls.to_string());
    }
    match e.kind() {
        K::ConnectionRefused => Cut::Transport("connection refused".into()),
        K::TimedOut | K::WouldBlock => timed_out(timeout),
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
            Cut::Closed(format!("connection closed: {e}"))
        }
        _ => Cut::Transport(format!("I/O error: {e}")),
    }
}

/// The failure of an attempt that ran out of `timeout`.
pub(crate) fn timed_out(timeout: Duration) -> Cut {
    Cut::Transport(format!("timed out after {} ms", timeout.as_millis()))
}

/// A URL as logs may show it: no user info, no query string.
pub(crate) fn shown_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority.rsplit('@').next().unwrap_or(authority);
    let path = match path.split_once('?') {
        Some((p, _)) => format!("{p}?<query not shown>"),
        None => path.to_string(),
    };
    if scheme.is_empty() {
        format!("{host}{path}")
    } else {
        format!("{scheme}://{host}{path}")
    }
}

/// Whether a permanent failure's reason (as [`send`] words it) is a failed
/// TLS handshake: the server's certificate is not one the roots vouch for.
pub(crate) fn is_tls_failure(why: &str) -> bool {
    why.starts_with(TLS_FAILURE)
}

/// How [`classify`] starts the reason of a TLS failure.
pub(crate) const TLS_FAILURE: &str = "TLS: ";

/// "HTTP 404 Not Found".
pub(crate) fn status_text(status: u16) -> String {
    match ureq::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        Some(reason) => format!("HTTP {status} {reason}"),
        None => format!("HTTP {status}"),
    }
}

/// Joins a base URL (with or without a trailing slash) and an absolute path.
pub fn join(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_caps_double_and_stop() {
        let r = Retry::within(Duration::from_secs(30));
        assert_eq!(r.cap(0), Duration::from_millis(250));
        assert_eq!(r.cap(1), Duration::from_millis(500));
        assert_eq!(r.cap(3), Duration::from_secs(2));
        assert_eq!(r.cap(10), Duration::from_secs(5));
        assert_eq!(r.cap(u32::MAX), Duration::from_secs(5));
        for n in 0..50 {
            assert!(jitter(r.cap(n % 5)) <= r.cap(n % 5));
        }
    }

    #[test]
    fn an_attempt_the_deadline_cut_short_keeps_the_peers_last_answer() {
        let policy = Retry {
            budget: Duration::from_millis(600),
            attempt_timeout: Duration::from_secs(10),
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
        };
        let mut n = 0;
        let out = retry(
            &policy,
            |timeout| {
                n += 1;
                if n == 1 {
                    return Step::<()>::Again("HTTP 503".into());
                }
                // a peer too slow for what is left of the budget
                std::thread::sleep(timeout);
                Step::Again(format!("timed out after {} ms", timeout.as_millis()))
            },
            |_| String::new(),
        );
        let Err(GaveUp::Budget(t)) = out else {
            panic!("expected budget exhaustion")
        };
        assert!(
            t.last.starts_with("HTTP 503 (then a final attempt cut to "),
            "{t}"
        );
        assert!(t.last.contains("by the deadline: timed out after"), "{t}");
        // an attempt that answers on its own is reported as it is
        let out = retry(
            &policy,
            |_| Step::<()>::Again("HTTP 500".into()),
            |_| String::new(),
        );
        let Err(GaveUp::Budget(t)) = out else {
            panic!("expected budget exhaustion")
        };
        assert_eq!(t.last, "HTTP 500");
    }

    #[test]
    fn retry_stops_at_budget_and_counts() {
        let policy = Retry {
            budget: Duration::from_millis(300),
            attempt_timeout: Duration::from_millis(50),
            first_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(20),
        };
        let mut n = 0;
        let out = retry(
            &policy,
            |_| {
                n += 1;
                Step::<()>::Again(format!("try {n}"))
            },
            |_| String::new(),
        );
        match out {
            Err(GaveUp::Budget(t)) => {
                assert!(t.attempts >= 2, "{t}");
                assert_eq!(t.last, format!("try {}", t.attempts));
            }
            _ => panic!("expected budget exhaustion"),
        }
        let out = retry(&policy, |_| Step::Done(7), |v| format!("got {v}"));
        match out {
            Ok((7, t)) => {
                assert_eq!((t.attempts, t.last.as_str()), (1, "got 7"));
                assert!(t.to_string().starts_with("1 attempt in "), "{t}");
            }
            _ => panic!("expected success"),
        }
    }

    #[test]
    fn no_deadline_retries_until_success() {
        let policy = Retry {
            budget: NO_DEADLINE,
            attempt_timeout: Duration::from_millis(50),
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        };
        let mut n = 0;
        let out = retry_watched(
            &policy,
            "a test peer",
            |t| {
                // the attempt timeout stays bounded without a deadline
                assert!(t <= Duration::from_millis(50));
                n += 1;
                if n < 40 {
                    Step::Again("connection refused".into())
                } else {
                    Step::Done(n)
                }
            },
            |v| format!("got {v}"),
        );
        assert!(matches!(out, Ok((40, ref t)) if t.attempts == 40), "{n}");
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        assert_eq!(retry_after(Some("3")), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(Some(" 7 ")), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(Some("86400")), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")), None);
        assert_eq!(retry_after(None), None);
        let policy = Retry {
            budget: Duration::from_secs(30),
            attempt_timeout: Duration::from_millis(50),
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
        };
        let start = Instant::now();
        let mut n = 0;
        let out = retry(
            &policy,
            |_| {
                n += 1;
                if n == 1 {
                    // what `send` records for a 429 with Retry-After: 1
                    RETRY_AFTER.with(|c| c.set(Some(Duration::from_secs(1))));
                    Step::Again("HTTP 429".into())
                } else {
                    Step::Done(())
                }
            },
            |_| String::new(),
        );
        assert!(out.is_ok());
        assert!(
            start.elapsed() >= Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn a_crowd_told_to_retry_after_one_second_returns_spread_over_the_next() {
        // 300 clients refused at the same moment with Retry-After: 1, on
        // their first retry (cap 250 ms): none before 1 s, all by 2 s, and
        // spread out, not together (each 100 ms of [1 s, 2 s) gets some).
        let waits: Vec<Duration> = (0..300)
            .map(|_| next_wait(Some(Duration::from_secs(1)), Duration::from_millis(250)))
            .collect();
        assert!(
            waits.iter().all(|w| *w >= Duration::from_secs(1)),
            "{waits:?}"
        );
        assert!(
            waits.iter().all(|w| *w <= Duration::from_secs(2)),
            "{waits:?}"
        );
        let mut bins = [0usize; 10];
        for w in &waits {
            bins[((w.as_millis() - 1000) / 100).min(9) as usize] += 1;
        }
        // uniform: 30 expected per bin; 5 or fewer is far outside chance
        assert!(bins.iter().all(|n| *n > 5), "{bins:?}");
        // without Retry-After: full jitter up to the cap
        let w = next_wait(None, Duration::from_millis(250));
        assert!(w <= Duration::from_millis(250));
    }

    #[test]
    fn shown_urls_drop_user_info_and_query() {
        assert_eq!(
            shown_url("https://u:p@10.0.0.1:6443/api?token=x"),
            "https://10.0.0.1:6443/api?<query not shown>"
        );
        assert_eq!(
            shown_url("http://127.0.0.1:1/a/b"),
            "http://127.0.0.1:1/a/b"
        );
    }

    #[test]
    fn address_literals_need_no_lookup() {
        let addr = |u: &str| literal_address(&u.parse().unwrap()).map(|a| a.to_string());
        assert_eq!(
            addr("https://10.0.0.1:6443/livez").as_deref(),
            Some("10.0.0.1:6443")
        );
        assert_eq!(addr("http://127.0.0.1/x").as_deref(), Some("127.0.0.1:80"));
        assert_eq!(addr("https://[fd00::1]/").as_deref(), Some("[fd00::1]:443"));
        assert_eq!(addr("http://[::1]:8080/").as_deref(), Some("[::1]:8080"));
        // names go to ureq's resolver
        assert_eq!(addr("https://api.example.test:6443/"), None);
        assert_eq!(addr("http://metadata.google.internal/"), None);
        assert_eq!(addr("http://localhost:1/"), None);
    }

    /// A resolver that counts its lookups and answers 127.0.0.1.
    #[derive(Debug, Default)]
    struct Counting(std::sync::atomic::AtomicUsize);

    impl ureq::unversioned::resolver::Resolver for Counting {
        fn resolve(
            &self,
            uri: &ureq::http::Uri,
            _config: &ureq::config::Config,
            _timeout: ureq::unversioned::transport::NextTimeout,
        ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let port = uri.port_u16().unwrap_or(443);
            let mut out = self.empty();
            out.push(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
            Ok(out)
        }
    }

    #[test]
    fn a_name_is_looked_up_once_per_window_and_per_port() {
        use ureq::unversioned::resolver::Resolver;
        let r = Resolve::<Counting>::default();
        let config = ureq::config::Config::default();
        let timeout = ureq::unversioned::transport::NextTimeout::default();
        let lookups = || r.inner.0.load(std::sync::atomic::Ordering::SeqCst);
        let resolve = |u: &str| {
            let addrs = r.resolve(&u.parse().unwrap(), &config, timeout).unwrap();
            addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>()
        };
        assert_eq!(
            resolve("https://api.example.test:6443/livez"),
            ["127.0.0.1:6443"]
        );
        assert_eq!(
            resolve("https://api.example.test:6443/api/v1/x"),
            ["127.0.0.1:6443"]
        );
        assert_eq!(lookups(), 1, "the second request reuses the first lookup");
        // another port or scheme is another entry
        assert_eq!(
            resolve("https://api.example.test:8443/"),
            ["127.0.0.1:8443"]
        );
        assert_eq!(lookups(), 2);
        // an address literal is never looked up
        assert_eq!(resolve("https://10.0.0.1:6443/"), ["10.0.0.1:6443"]);
        assert_eq!(lookups(), 2);
        // past the window the name is looked up again
        for entry in r.names.lock().unwrap().iter_mut() {
            entry.1 -= NAME_REUSE;
        }
        resolve("https://api.example.test:6443/");
        assert_eq!(lookups(), 3);
        resolve("https://api.example.test:6443/");
        assert_eq!(lookups(), 3);
    }

    #[test]
    fn join_handles_slashes() {
        assert_eq!(
            join("http://127.0.0.1:1/", "/latest/user-data"),
            "http://127.0.0.1:1/latest/user-data"
        );
        assert_eq!(
            join("http://127.0.0.1:1", "latest"),
            "http://127.0.0.1:1/latest"
        );
    }
}
