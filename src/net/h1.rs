//! kubeboot's HTTP/1.1 client for the API server (`api::kube`): one
//! kept-alive TLS connection per client, and a batch of requests written
//! ahead of their answers (pipelining, RFC 9112 section 9.3.2).
//!
//! Why not ureq here: ureq writes a request only after the previous answer
//! was read, so init's API phases paid one round trip per object (about
//! thirty, docs/building.md). Written ahead, a phase's objects cost about
//! one round trip plus the server's own time. A server answers pipelined
//! requests one at a time and in order: Go's net/http server
//! (kube-apiserver's HTTP/1.1 side) reads the next request only after it
//! has answered the one before (`tests/tls_go_peer.rs` checks this against
//! Go).
//!
//! Bounds:
//! - At most [`WINDOW`] requests and [`WINDOW_BYTES`] of request bytes are
//!   unanswered at once, so neither side blocks writing while the other
//!   does. The answers waiting unread then stay within the sockets' buffers.
//! - Answers are framed by `Content-Length` or the chunked coding (httparse
//!   reads the head and the chunk sizes), or end with the connection. A head
//!   over [`MAX_HEAD`] or a body over [`MAX_BODY`] fails the batch.
//! - One deadline covers the whole batch (connect, handshake, every read
//!   and write). A host name (not an address literal) is looked up with the
//!   system resolver only when a connection is opened; the lookup keeps the
//!   resolver's own timeouts (`resolv.conf`), as Go's transport does.
//!
//! What an unanswered request did is unknown: the caller sends it again the
//! ordinary way. kubeboot's API writes are create-or-update, so a second
//! POST of an object the first one created answers 409 and goes on to the
//! update.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use super::http::{self, Cut, MAX_BODY, Method, Reply, Step, io_cut, timed_out};
use crate::error::Error;

/// The most requests unanswered at once on one connection.
pub(crate) const WINDOW: usize = 16;
/// The most request bytes unanswered at once (one request larger than this
/// is still sent, alone).
pub(crate) const WINDOW_BYTES: usize = 64 * 1024;
/// The largest answer head (status line and headers) accepted: the same
/// bound as ureq's for the other clients (`net::http`, `BUFFER_IN`).
pub(crate) const MAX_HEAD: usize = 16 * 1024;
/// The most header fields in one answer.
const MAX_HEADERS: usize = 64;
/// How much one read asks for.
const READ_CHUNK: usize = 16 * 1024;

/// One answer of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body (dechunked), at most [`MAX_BODY`] bytes.
    pub body: Vec<u8>,
    /// The `Retry-After` header, as sent.
    pub retry_after: Option<String>,
    /// The `Location` header, as sent.
    pub location: Option<String>,
}

impl Answer {
    /// The answer as the retry loop takes it: 5xx and 429 are tried again
    /// (their `Retry-After` kept for the wait), anything else is final.
    pub(crate) fn step(self) -> Step<Reply> {
        if let Some(why) = http::retryable_status(self.status, self.retry_after.as_deref()) {
            return Step::Again(why);
        }
        Step::Done(Reply {
            status: self.status,
            body: self.body,
            location: self.location,
        })
    }
}

/// What a batch gave: the answers, in the order of the requests, and when
/// there are fewer answers than requests, why.
#[derive(Debug)]
pub(crate) struct Exchanged {
    pub answers: Vec<Answer>,
    pub cut: Option<Cut>,
}

/// A client of one `https://host:port` as one user (a client certificate),
/// keeping its connection alive between calls. Shared by clones of
/// `api::kube::Kube`; calls on one client take turns on its connection.
pub(crate) struct Client {
    tls: Arc<ClientConfig>,
    /// The base URL, for messages.
    base: String,
    /// The address to connect to when the URL's host is an address literal.
    literal: Option<SocketAddr>,
    /// The host name to look up otherwise.
    host: String,
    port: u16,
    /// The `Host` header: the URL's authority.
    authority: String,
    name: ServerName<'static>,
    conn: Mutex<Option<Conn>>,
}

impl Client {
    /// A client of `base` (`https://host[:port]`) verifying the server with
    /// the certificates of `ca_pem` and presenting `cert_pem` (leaf first)
    /// with `key_pem`. Errors name what did not parse, never the key.
    pub(crate) fn new(
        base: &str,
        ca_pem: &[u8],
        cert_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<Client, Error> {
        let uri: ureq::http::Uri = base
            .parse()
            .map_err(|e| Error::Failed(format!("{base}: not a URL: {e}")))?;
        if uri.scheme_str() != Some("https") {
            return Err(Error::Failed(format!("{base}: not an https URL")));
        }
        let Some(auth) = uri.authority() else {
            return Err(Error::Failed(format!("{base}: no host")));
        };
        // an address literal is connected to as it is; a name is looked up
        let literal = http::literal_address(&uri);
        let name = match literal {
            Some(a) => ServerName::IpAddress(a.ip().into()),
            None => ServerName::try_from(auth.host().to_string())
                .map_err(|e| Error::Failed(format!("{base}: {e}")))?,
        };
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca_pem).flatten() {
            roots
                .add(c)
                .map_err(|e| Error::Failed(format!("the CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(Error::Failed(
                "the CA bundle holds no PEM CERTIFICATE".into(),
            ));
        }
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert_pem).flatten().collect();
        if chain.is_empty() {
            return Err(Error::Failed(
                "the client certificate holds no PEM CERTIFICATE".into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|_| Error::Failed("the client key is not a PEM private key".into()))?;
        let tls = ClientConfig::builder_with_provider(http::crypto_provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Failed(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            // rustls names the mismatch or the key type, never key bytes
            .map_err(|e| Error::Failed(format!("the client certificate and key: {e}")))?;
        Ok(Client {
            tls: Arc::new(tls),
            base: base.trim_end_matches('/').to_string(),
            literal,
            host: auth.host().to_string(),
            port: uri.port_u16().unwrap_or(443),
            authority: auth.as_str().to_string(),
            name,
            conn: Mutex::new(None),
        })
    }

    /// One request with `timeout`, as the retry loop takes it.
    pub(crate) fn send(&self, method: Method<'_>, path: &str, timeout: Duration) -> Step<Reply> {
        let mut done = self.exchange(&[(method, path)], timeout);
        match (done.answers.pop(), done.cut) {
            (Some(a), _) => a.step(),
            (None, Some(cut)) => cut.step(),
            (None, None) => Step::Again("no answer".into()),
        }
    }

    /// Sends `requests` (method and path) in order on the kept-alive
    /// connection (or a new one), writing ahead of the answers within the
    /// window, and reads the answers, all within `timeout`. A kept-alive
    /// connection that turns out closed before anything was answered (the
    /// server dropped it while idle) is replaced once, at once.
    pub(crate) fn exchange(&self, requests: &[(Method<'_>, &str)], timeout: Duration) -> Exchanged {
        if log::log_enabled!(target: "http", log::Level::Trace) {
            for (method, path) in requests {
                let url = format!("{}{path}", self.base);
                http::trace_request(*method, &url, &[("Accept", "application/json")]);
            }
        }
        let deadline = Instant::now() + timeout;
        let mut slot = match self.conn.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut kept = slot.take();
        loop {
            let reused = kept.is_some();
            let mut conn = match kept.take() {
                Some(c) => c,
                None => match self.connect(deadline, timeout) {
                    Ok(c) => c,
                    Err(cut) => {
                        return Exchanged {
                            answers: Vec::new(),
                            cut: Some(cut),
                        };
                    }
                },
            };
            let (answers, cut, keep) = conn.batch(requests, &self.authority, deadline, timeout);
            if keep {
                *slot = Some(conn);
            }
            if reused && answers.is_empty() && matches!(cut, Some(Cut::Closed(_))) {
                continue;
            }
            return Exchanged { answers, cut };
        }
    }

    fn connect(&self, deadline: Instant, timeout: Duration) -> Result<Conn, Cut> {
        let addrs: Vec<SocketAddr> = match self.literal {
            Some(a) => vec![a],
            // looked up here only: a kept-alive connection needs no lookup
            None => (self.host.as_str(), self.port)
                .to_socket_addrs()
                .map_err(|e| Cut::Transport(format!("host not found: {e}")))?
                .collect(),
        };
        let mut last = Cut::Transport("host not found: no address".into());
        let mut sock = None;
        for addr in addrs {
            let left = left(deadline, timeout)?;
            match TcpStream::connect_timeout(&addr, left) {
                Ok(s) => {
                    sock = Some(s);
                    break;
                }
                Err(e) => last = io_cut(&e, timeout),
            }
        }
        let sock = sock.ok_or(last)?;
        // small requests go out at once, not after the last answer's ACK
        sock.set_nodelay(true)
            .map_err(|e| Cut::Transport(format!("I/O error: {e}")))?;
        let tls = ClientConnection::new(self.tls.clone(), self.name.clone())
            .map_err(|e| Cut::Tls(e.to_string()))?;
        let mut s = StreamOwned::new(tls, sock);
        while s.conn.is_handshaking() {
            timeouts(&s.sock, deadline, timeout)?;
            s.conn
                .complete_io(&mut s.sock)
                .map_err(|e| io_cut(&e, timeout))?;
        }
        Ok(Conn {
            s,
            buf: Vec::new(),
            at: 0,
            end: 0,
        })
    }
}

/// The time left before `deadline`; a timeout failure when none is.
fn left(deadline: Instant, timeout: Duration) -> Result<Duration, Cut> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left < Duration::from_millis(1) {
        return Err(timed_out(timeout));
    }
    Ok(left)
}

/// Sets the socket's read and write timeouts to what is left.
fn timeouts(sock: &TcpStream, deadline: Instant, timeout: Duration) -> Result<(), Cut> {
    let left = Some(left(deadline, timeout)?);
    sock.set_read_timeout(left)
        .and_then(|()| sock.set_write_timeout(left))
        .map_err(|e| Cut::Transport(format!("I/O error: {e}")))
}

/// How an answer's body is delimited.
enum Framing {
    Length(usize),
    Chunked,
    /// Until the connection closes (no length, not chunked).
    Close,
}

/// What the head of an answer says.
struct Head {
    status: u16,
    len: usize,
    framing: Framing,
    close: bool,
    retry_after: Option<String>,
    location: Option<String>,
}

/// Reads an answer's head from `bytes`: `Ok(None)` when it is not complete yet.
fn parse_head(bytes: &[u8]) -> Result<Option<Head>, Cut> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut r = httparse::Response::new(&mut fields);
    let len = match r.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if bytes.len() > MAX_HEAD => {
            return Err(Cut::Invalid(format!(
                "response head larger than {} KiB",
                MAX_HEAD >> 10
            )));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(Cut::Invalid(format!("not an HTTP/1.1 response: {e}"))),
    };
    let status = r.code.unwrap_or(0);
    // HTTP/1.0 closes after the answer unless told otherwise
    let mut close = r.version == Some(0);
    let (mut length, mut chunked) = (None::<u64>, false);
    let (mut retry_after, mut location) = (None, None);
    let text = |v: &[u8]| String::from_utf8_lossy(v).trim().to_string();
    for h in r.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let n: u64 = text(h.value)
                .parse()
                .map_err(|_| Cut::Invalid("response Content-Length is not a number".into()))?;
            if length.is_some_and(|l| l != n) {
                return Err(Cut::Invalid("response has two Content-Lengths".into()));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            let codings = text(h.value).to_ascii_lowercase();
            if codings.rsplit(',').next().map(str::trim) != Some("chunked") {
                return Err(Cut::Invalid(format!(
                    "response Transfer-Encoding {codings:?} is not chunked"
                )));
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in text(h.value).split(',') {
                match token.trim().to_ascii_lowercase().as_str() {
                    "close" => close = true,
                    "keep-alive" if r.version == Some(0) => close = false,
                    _ => {}
                }
            }
        } else if name.eq_ignore_ascii_case("retry-after") {
            retry_after = Some(text(h.value));
        } else if name.eq_ignore_ascii_case("location") {
            location = Some(text(h.value));
        }
    }
    let framing = if status == 204 || status == 304 || (100..200).contains(&status) {
        Framing::Length(0)
    } else if chunked {
        // RFC 9112 6.3: chunked wins over a Content-Length
        Framing::Chunked
    } else if let Some(n) = length {
        if n > MAX_BODY {
            return Err(Cut::TooLarge);
        }
        Framing::Length(n as usize)
    } else {
        close = true;
        Framing::Close
    };
    Ok(Some(Head {
        status,
        len,
        framing,
        close,
        retry_after,
        location,
    }))
}

/// A request as written on the wire; `Err` for a path that could smuggle
/// a header or a second request (spaces, control characters).
fn encode(out: &mut Vec<u8>, method: Method<'_>, path: &str, authority: &str) -> Result<(), Cut> {
    if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Cut::Invalid(format!(
            "{:?}: not a request path",
            http::shown_url(path)
        )));
    }
    let _ = write!(
        out,
        "{} {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: kubeboot/{}\r\nAccept: application/json\r\n",
        method.verb(),
        env!("CARGO_PKG_VERSION")
    );
    if let Some((kind, body)) = method.body() {
        if !kind.is_empty() {
            let _ = write!(out, "Content-Type: {kind}\r\n");
        }
        let _ = write!(out, "Content-Length: {}\r\n\r\n", body.len());
        out.extend_from_slice(body);
    } else {
        out.extend_from_slice(b"\r\n");
    }
    Ok(())
}

/// One TLS connection and the bytes read from it but not yet used.
struct Conn {
    s: StreamOwned<ClientConnection, TcpStream>,
    buf: Vec<u8>,
    /// Where the unused bytes of `buf` start and end.
    at: usize,
    end: usize,
}

impl Conn {
    /// Sends `requests` with at most [`WINDOW`] (and [`WINDOW_BYTES`])
    /// unanswered, reading answers in order. The answers, why they stopped
    /// short, and whether the connection can carry more requests.
    fn batch(
        &mut self,
        requests: &[(Method<'_>, &str)],
        authority: &str,
        deadline: Instant,
        timeout: Duration,
    ) -> (Vec<Answer>, Option<Cut>, bool) {
        let mut answers = Vec::with_capacity(requests.len());
        // the wire size of each request written so far
        let mut sizes = Vec::with_capacity(requests.len());
        let mut out = Vec::new();
        while answers.len() < requests.len() {
            out.clear();
            let mut unanswered: usize = sizes[answers.len()..].iter().sum();
            while sizes.len() < requests.len() && sizes.len() - answers.len() < WINDOW {
                let before = out.len();
                let (method, path) = requests[sizes.len()];
                if let Err(cut) = encode(&mut out, method, path, authority) {
                    // the ones written so far are answered first
                    out.truncate(before);
                    if out.is_empty() && sizes.len() == answers.len() {
                        return (answers, Some(cut), true);
                    }
                    break;
                }
                let n = out.len() - before;
                if sizes.len() > answers.len() && unanswered + n > WINDOW_BYTES {
                    out.truncate(before);
                    break;
                }
                unanswered += n;
                sizes.push(n);
            }
            if !out.is_empty()
                && let Err(cut) = self.write(&out, deadline, timeout)
            {
                return (answers, Some(cut), false);
            }
            match self.answer(deadline, timeout) {
                Ok((a, close)) => {
                    answers.push(a);
                    if close {
                        let cut = (answers.len() < requests.len()).then(|| {
                            Cut::Closed("the server closed the connection after an answer".into())
                        });
                        return (answers, cut, false);
                    }
                }
                Err(cut) => return (answers, Some(cut), false),
            }
        }
        (answers, None, true)
    }

    fn write(&mut self, bytes: &[u8], deadline: Instant, timeout: Duration) -> Result<(), Cut> {
        timeouts(&self.s.sock, deadline, timeout)?;
        self.s
            .write_all(bytes)
            .and_then(|()| self.s.flush())
            .map_err(|e| io_cut(&e, timeout))
    }

    /// The bytes read and not used yet.
    fn unused(&self) -> &[u8] {
        &self.buf[self.at..self.end]
    }

    /// Reads more bytes; `Ok(false)` at a clean end of the connection (the
    /// server's close_notify). The buffer is zeroed only when it grows.
    fn fill(&mut self, deadline: Instant, timeout: Duration) -> Result<bool, Cut> {
        if self.at == self.end {
            (self.at, self.end) = (0, 0);
        } else if self.at >= READ_CHUNK {
            self.buf.copy_within(self.at..self.end, 0);
            (self.at, self.end) = (0, self.end - self.at);
        }
        if self.buf.len() - self.end < READ_CHUNK {
            self.buf.resize(self.end + READ_CHUNK, 0);
        }
        timeouts(&self.s.sock, deadline, timeout)?;
        match self.s.read(&mut self.buf[self.end..]) {
            Ok(0) => Ok(false),
            Ok(n) => {
                self.end += n;
                Ok(true)
            }
            Err(e) => Err(io_cut(&e, timeout)),
        }
    }

    /// Reads more bytes, failing at the end of the connection.
    fn more(&mut self, deadline: Instant, timeout: Duration) -> Result<(), Cut> {
        if self.fill(deadline, timeout)? {
            return Ok(());
        }
        Err(Cut::Closed("the server closed the connection".into()))
    }

    /// Reads the next final answer (1xx interim answers are skipped) and
    /// whether the server closes the connection after it.
    fn answer(&mut self, deadline: Instant, timeout: Duration) -> Result<(Answer, bool), Cut> {
        let head = loop {
            match parse_head(self.unused())? {
                Some(h) if (100..200).contains(&h.status) => self.at += h.len,
                Some(h) => break h,
                None => self.more(deadline, timeout)?,
            }
        };
        self.at += head.len;
        let body = match head.framing {
            Framing::Length(n) => {
                while self.end - self.at < n {
                    self.more(deadline, timeout)?;
                }
                let body = self.buf[self.at..self.at + n].to_vec();
                self.at += n;
                body
            }
            Framing::Chunked => self.chunked(deadline, timeout)?,
            Framing::Close => {
                while self.fill(deadline, timeout)? {
                    if (self.end - self.at) as u64 > MAX_BODY {
                        return Err(Cut::TooLarge);
                    }
                }
                let body = self.unused().to_vec();
                self.at = self.end;
                body
            }
        };
        let answer = Answer {
            status: head.status,
            body,
            retry_after: head.retry_after,
            location: head.location,
        };
        Ok((answer, head.close))
    }

    /// A chunked body (RFC 9112 section 7.1); trailer fields are read and
    /// dropped.
    fn chunked(&mut self, deadline: Instant, timeout: Duration) -> Result<Vec<u8>, Cut> {
        let mut body = Vec::new();
        loop {
            let (used, size) = match httparse::parse_chunk_size(self.unused()) {
                Ok(httparse::Status::Complete(c)) => c,
                Ok(httparse::Status::Partial) if self.end - self.at > MAX_HEAD => {
                    return Err(Cut::Invalid("response chunk size line too long".into()));
                }
                Ok(httparse::Status::Partial) => {
                    self.more(deadline, timeout)?;
                    continue;
                }
                Err(_) => return Err(Cut::Invalid("response chunk size is not hex".into())),
            };
            if size == 0 {
                self.at += used;
                return self.trailers(deadline, timeout).map(|()| body);
            }
            if body.len() as u64 + size > MAX_BODY {
                return Err(Cut::TooLarge);
            }
            let size = size as usize;
            while self.end - self.at < used + size + 2 {
                self.more(deadline, timeout)?;
            }
            let data = self.at + used;
            if &self.buf[data + size..data + size + 2] != b"\r\n" {
                return Err(Cut::Invalid("response chunk does not end in CRLF".into()));
            }
            body.extend_from_slice(&self.buf[data..data + size]);
            self.at = data + size + 2;
        }
    }

    /// Skips the trailer section up to and including its empty line.
    fn trailers(&mut self, deadline: Instant, timeout: Duration) -> Result<(), Cut> {
        let mut seen = 0usize;
        loop {
            let rest = self.unused();
            match rest.windows(2).position(|w| w == b"\r\n") {
                Some(0) => {
                    self.at += 2;
                    return Ok(());
                }
                Some(i) => {
                    seen += i + 2;
                    self.at += i + 2;
                }
                None if rest.len() + seen > MAX_HEAD => {
                    return Err(Cut::Invalid("response trailers too long".into()));
                }
                None => self.more(deadline, timeout)?,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A self-signed certificate for 127.0.0.1: (PEM, DER, key DER).
    fn self_signed() -> (String, CertificateDer<'static>, PrivateKeyDer<'static>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let der = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        (cert.pem(), cert.der().clone(), der)
    }

    /// A TLS server config for 127.0.0.1 and a client of it (a throwaway
    /// client certificate the server does not ask for).
    fn server_and_client(port: u16) -> (rustls::ServerConfig, Client) {
        let (pem, der, key) = self_signed();
        let config = rustls::ServerConfig::builder_with_provider(http::crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der], key)
            .unwrap();
        let client_key = rcgen::KeyPair::generate().unwrap();
        let client = rcgen::CertificateParams::new(vec!["c".to_string()])
            .unwrap()
            .self_signed(&client_key)
            .unwrap();
        let c = Client::new(
            &format!("https://127.0.0.1:{port}"),
            pem.as_bytes(),
            client.pem().as_bytes(),
            client_key.serialize_pem().as_bytes(),
        )
        .unwrap();
        (config, c)
    }

    /// A TLS server on 127.0.0.1 answering with the given raw bytes: one
    /// connection per entry of `conns`, one request (a head, no body) per
    /// answer; after its last answer a connection is closed, with a
    /// close_notify when the entry says so, else by dropping the socket.
    /// An answer is written in pieces, 100 ms apart, where it holds `\u{1}`.
    /// The client of it.
    fn raw_server(conns: Vec<(Vec<&'static str>, bool)>) -> Client {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (config, client) = server_and_client(listener.local_addr().unwrap().port());
        let config = Arc::new(config);
        std::thread::spawn(move || {
            for (answers, notify) in conns {
                let (sock, _) = listener.accept().unwrap();
                let conn = rustls::ServerConnection::new(config.clone()).unwrap();
                let mut s = StreamOwned::new(conn, sock);
                for answer in answers {
                    let mut head = Vec::new();
                    let mut b = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if s.read(&mut b).unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(b[0]);
                    }
                    for (i, piece) in answer.split('\u{1}').enumerate() {
                        if i > 0 {
                            std::thread::sleep(Duration::from_millis(100));
                        }
                        s.write_all(piece.as_bytes()).unwrap();
                        s.flush().unwrap();
                    }
                }
                if notify {
                    s.conn.send_close_notify();
                    let _ = s.conn.complete_io(&mut s.sock);
                }
            }
        });
        client
    }

    fn get(c: &Client, path: &str) -> Step<Reply> {
        c.send(Method::Get, path, Duration::from_secs(20))
    }

    /// A server's answer built at run time, for [`raw_server`].
    fn leak(s: String) -> &'static str {
        Box::leak(s.into_boxed_str())
    }

    fn done(step: Step<Reply>) -> Reply {
        match step {
            Step::Done(r) => r,
            Step::Again(w) | Step::Stop(w) => panic!("no answer: {w}"),
        }
    }

    #[test]
    fn chunked_bodies_interim_answers_and_the_close_are_read_right() {
        let endless = leak(format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;{}",
            "e".repeat(MAX_HEAD + 1)
        ));
        let long_trailer = leak(format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: {}",
            "t".repeat(MAX_HEAD + 1)
        ));
        let endless_trailer = leak(format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n{}",
            // short trailer lines, more than 16 KiB of them, no end
            "X: y\r\n".repeat(MAX_HEAD / 4)
        ));
        // one long trailer line, then the rest later: 9 KiB seen of the
        // 16 KiB allowed, so the reader waits for more
        let late_trailer = leak(format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nzz\r\n0\r\nX: {}\r\n\u{1}Y: 2\r\n\r\n",
            "t".repeat(9000)
        ));
        // a chunk size line and a trailer section of exactly the 16 KiB
        // allowed, each completed 100 ms later
        let edge_line = leak(format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;{}\u{1}\r\nhello\r\n0\r\n\r\n",
            "e".repeat(MAX_HEAD - 2)
        ));
        let edge_trailers = leak(format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nq\r\n0\r\nX: {}\u{1}\r\n\r\n",
            "t".repeat(MAX_HEAD - 3)
        ));
        let c = raw_server(vec![
            (
                vec![
                    // an extension, a trailer field: the next answer follows exactly
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\nY: 2\r\n\r\n",
                    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}",
                    "HTTP/1.1 204 No Content\r\n\r\n",
                    // an empty body with an extension; a chunk's CRLF sent later
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0;e=1\r\n\r\n",
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\u{1}\r\n0\r\n\r\n",
                    // trailer fields arriving in two pieces
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\nX-T: 1\u{1}\r\n\r\n",
                    late_trailer,
                    // a body whose second half comes later
                    "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello\u{1}world",
                    edge_line,
                    edge_trailers,
                    "HTTP/1.1 200 OK\r\n\r\nto the end",
                ],
                true,
            ),
            (
                vec!["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n"],
                true,
            ),
            (vec![endless], true),
            (vec![endless_trailer], true),
            (vec![long_trailer], true),
        ]);
        let r = done(get(&c, "/1"));
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello world"[..]));
        // the trailers' empty line was used up: nothing is left unread
        let left = c.conn.lock().unwrap().as_ref().map(|k| k.unused().len());
        assert_eq!(left, Some(0));
        let r = done(get(&c, "/2"));
        assert_eq!((r.status, r.body.as_slice()), (201, &b"{}"[..]));
        let r = done(get(&c, "/3"));
        assert_eq!((r.status, r.body.len()), (204, 0));
        let r = done(get(&c, "/4"));
        assert_eq!((r.status, r.body.len()), (200, 0));
        let r = done(get(&c, "/5"));
        assert_eq!(r.body, b"hello");
        assert_eq!(done(get(&c, "/6")).body, b"z");
        assert_eq!(done(get(&c, "/6a")).body, b"zz");
        assert_eq!(done(get(&c, "/6c")).body, b"helloworld");
        assert_eq!(done(get(&c, "/6d")).body, b"hello");
        assert_eq!(done(get(&c, "/6e")).body, b"q");
        let r = done(get(&c, "/6b"));
        assert_eq!((r.status, r.body.as_slice()), (200, &b"to the end"[..]));
        // the next connection: a chunk not ended by CRLF is refused, not read on
        match get(&c, "/7") {
            Step::Stop(w) => assert!(w.contains("CRLF"), "{w}"),
            _ => panic!("a bad chunk was accepted"),
        }
        // and the next: a chunk size line that never ends
        match get(&c, "/8") {
            Step::Stop(w) => assert!(w.contains("too long"), "{w}"),
            _ => panic!("an endless chunk size line was read on"),
        }
        // trailers that never end: many short lines, then one long line
        for path in ["/9", "/10"] {
            match get(&c, path) {
                Step::Stop(w) => assert!(w.contains("trailers too long"), "{w}"),
                _ => panic!("endless trailers were read on"),
            }
        }
    }

    #[test]
    fn a_body_to_the_close_is_bounded_and_a_last_answer_closing_is_no_cut() {
        let huge = leak(format!(
            "HTTP/1.1 200 OK\r\n\r\n{}",
            "x".repeat(MAX_BODY as usize + 1)
        ));
        let close = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\na";
        let c = raw_server(vec![
            (vec![close], true),
            (vec![close], true),
            (vec![huge], true),
        ]);
        // every request answered: no cut, though the connection ends there
        let done = c.exchange(&[(Method::Get, "/1")], Duration::from_secs(20));
        assert_eq!((done.answers.len(), done.cut), (1, None));
        // a request left unanswered by the close: the cut says why
        let done = c.exchange(
            &[(Method::Get, "/1a"), (Method::Get, "/1b")],
            Duration::from_secs(20),
        );
        assert_eq!(done.answers.len(), 1);
        assert!(matches!(done.cut, Some(Cut::Closed(_))), "{:?}", done.cut);
        match get(&c, "/2") {
            Step::Stop(w) => assert!(w.contains("larger than 16 MiB"), "{w}"),
            _ => panic!("a body over the limit was read"),
        }
    }

    #[test]
    fn bodies_of_exactly_16_mib_are_read_and_a_chunk_may_span_reads() {
        let most = MAX_BODY as usize;
        let to_close = leak(format!("HTTP/1.1 200 OK\r\n\r\n{}", "c".repeat(most)));
        let chunked = leak(format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{most:x}\r\n{}\r\n0\r\n\r\n",
            "k".repeat(most)
        ));
        // a 20,000-byte chunk, then the next one's start; the rest 100 ms
        // later: the unread part is moved to the front of the buffer
        let spanning = leak(format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4e20\r\n{}\r\na\r\nbbbbb\u{1}bbbbb\r\n0\r\n\r\n",
            "a".repeat(20_000)
        ));
        let c = raw_server(vec![
            (vec![chunked, spanning], true),
            (vec![to_close], true),
        ]);
        assert_eq!(done(get(&c, "/1")).body.len(), most);
        let r = done(get(&c, "/2"));
        assert_eq!(r.body.len(), 20_010);
        assert!(r.body.ends_with(b"abbbbbbbbbb"));
        assert_eq!(done(get(&c, "/3")).body.len(), most);
    }

    #[test]
    fn a_request_path_with_a_space_fails_at_once_and_keeps_the_connection() {
        let c = raw_server(vec![(
            vec!["HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"],
            true,
        )]);
        // the connection is opened, then nothing is written
        match get(&c, "/a b") {
            Step::Stop(w) => assert!(w.contains("not a request path"), "{w}"),
            _ => panic!("a path with a space was sent"),
        }
        // the kept connection answers the next request
        assert_eq!(done(get(&c, "/ok")).body, b"a");
    }

    #[test]
    fn a_kept_alive_connection_closed_while_idle_is_replaced_at_once() {
        // each connection answers once, keeps alive, then closes: the first
        // with a close_notify, the second by dropping its socket
        let answer = |b| (vec![b], true);
        let c = raw_server(vec![
            answer("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"),
            (vec!["HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb"], false),
            answer("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nc"),
        ]);
        assert_eq!(done(get(&c, "/1")).body, b"a");
        std::thread::sleep(Duration::from_millis(200));
        // one call, no retry loop: the closed connection is found and replaced
        assert_eq!(done(get(&c, "/2")).body, b"b");
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(done(get(&c, "/3")).body, b"c");
    }

    #[test]
    fn a_refused_connection_and_a_silent_server_are_told_apart() {
        // a port held by a socket that never listens: connections to it are
        // refused, and no other test can be handed the port meanwhile
        let held = rustix::net::socket(
            rustix::net::AddressFamily::INET,
            rustix::net::SocketType::STREAM,
            None,
        )
        .unwrap();
        rustix::net::bind(
            &held,
            &"127.0.0.1:0".parse::<std::net::SocketAddrV4>().unwrap(),
        )
        .unwrap();
        let port = std::net::SocketAddrV4::try_from(rustix::net::getsockname(&held).unwrap())
            .unwrap()
            .port();
        let (_, c) = server_and_client(port);
        match c.send(Method::Get, "/", Duration::from_secs(5)) {
            Step::Again(w) => assert_eq!(w, "connection refused"),
            Step::Done(_) | Step::Stop(_) => panic!("a refused connection is retried"),
        }
        // a listener the kernel completes connections for, that never
        // answers the TLS handshake
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let (_, c) = server_and_client(silent.local_addr().unwrap().port());
        match c.send(Method::Get, "/", Duration::from_millis(300)) {
            Step::Again(w) => assert_eq!(w, "timed out after 300 ms"),
            Step::Done(_) | Step::Stop(_) => panic!("a silent server is retried"),
        }
        drop((held, silent));
    }

    #[test]
    fn a_bad_path_after_a_full_window_is_refused_once_the_window_is_answered() {
        let ok = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nk";
        let mut answers = vec![ok; WINDOW];
        answers.push("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz");
        let c = raw_server(vec![(answers, true)]);
        let mut reqs = vec![(Method::Get, "/ok"); WINDOW];
        reqs.push((Method::Get, "/bad path"));
        let ex = c.exchange(&reqs, Duration::from_secs(20));
        // all sixteen written are answered before the bad one is refused
        assert_eq!(ex.answers.len(), WINDOW);
        assert!(ex.answers.iter().all(|a| a.body == b"k"));
        assert!(matches!(ex.cut, Some(Cut::Invalid(_))), "{:?}", ex.cut);
        // and the connection kept holds no answer owed to them
        assert_eq!(done(get(&c, "/after")).body, b"z");
    }

    #[test]
    fn many_small_chunks_keep_the_read_buffer_small() {
        let chunk = format!("64\r\n{}\r\n", "s".repeat(100));
        let answer = leak(format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{}0\r\n\r\n",
            chunk.repeat(40_000)
        ));
        let c = raw_server(vec![(vec![answer], true)]);
        assert_eq!(done(get(&c, "/")).body.len(), 4_000_000);
        // read bytes are moved to the front once 16 KiB are used, so the
        // buffer holds a few reads, not the whole answer
        let held = c.conn.lock().unwrap().as_ref().map(|k| k.buf.len());
        assert!(held.is_some_and(|n| n <= 4 * READ_CHUNK), "{held:?}");
    }

    #[test]
    fn unanswered_requests_stay_within_the_byte_window() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (config, c) = server_and_client(listener.local_addr().unwrap().port());
        // the server reads nothing for a while, then counts what arrived
        let server = std::thread::spawn(move || {
            let (mut sock, _) = listener.accept().unwrap();
            let mut conn = rustls::ServerConnection::new(Arc::new(config)).unwrap();
            while conn.is_handshaking() {
                conn.complete_io(&mut sock).unwrap();
            }
            std::thread::sleep(Duration::from_millis(500));
            sock.set_nonblocking(true).unwrap();
            let mut got = Vec::new();
            loop {
                match conn.read_tls(&mut sock) {
                    Ok(0) => break,
                    Ok(_) => {
                        conn.process_new_packets().unwrap();
                        let _ = conn.reader().read_to_end(&mut got);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{e}"),
                }
            }
            got.len()
        });
        let body = vec![b'x'; 30 * 1024];
        let reqs: Vec<(Method<'_>, &str)> =
            (0..6).map(|_| (Method::PostJson(&body), "/c")).collect();
        let done = c.exchange(&reqs, Duration::from_millis(1500));
        assert!(done.answers.is_empty());
        let arrived = server.join().unwrap();
        // two requests of 30 KiB and their heads: written ahead, but not a third
        assert!(arrived > 2 * 30 * 1024, "{arrived} bytes");
        assert!(arrived <= WINDOW_BYTES, "{arrived} bytes unanswered");
    }

    #[test]
    fn answer_heads_are_framed_as_rfc_9112_says() {
        let head = |t: &str| parse_head(t.as_bytes());
        let h = head("HTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nhello")
            .unwrap()
            .unwrap();
        assert!(matches!(h.framing, Framing::Length(5)) && !h.close && h.status == 201);
        // chunked wins over a length; the last coding must be chunked
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(matches!(h.framing, Framing::Chunked));
        assert!(head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n").is_err());
        assert!(head("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n").is_err());
        assert!(head("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
        // no length: to the close; HTTP/1.0 closes unless kept alive
        let h = head("HTTP/1.1 200 OK\r\n\r\n").unwrap().unwrap();
        assert!(matches!(h.framing, Framing::Close) && h.close);
        let h = head("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.close);
        let h = head("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.close);
        // "close" wins; keep-alive only keeps an HTTP/1.0 answer's connection
        let h =
            head("HTTP/1.1 200 OK\r\nConnection: close, keep-alive\r\nContent-Length: 0\r\n\r\n")
                .unwrap()
                .unwrap();
        assert!(h.close);
        let h = head("HTTP/1.1 204 No Content\r\nConnection: x, Close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(matches!(h.framing, Framing::Length(0)) && h.close);
        let h =
            head("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nContent-Length: 0\r\n\r\n")
                .unwrap()
                .unwrap();
        assert_eq!(h.retry_after.as_deref(), Some("3"));
        let h = head("HTTP/1.1 304 Not Modified\r\n\r\n").unwrap().unwrap();
        assert!(matches!(h.framing, Framing::Length(0)) && !h.close);
        let most = format!("HTTP/1.1 200 OK\r\nContent-Length: {MAX_BODY}\r\n\r\n");
        assert!(head(&most).is_ok());
        let big = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert_eq!(head(&big).err(), Some(Cut::TooLarge));
        // incomplete, then too long to be a head
        assert!(head("HTTP/1.1 200 OK\r\nA: b").unwrap().is_none());
        let long = format!("HTTP/1.1 200 OK\r\nA: {}", "b".repeat(MAX_HEAD));
        assert!(head(&long).is_err());
        assert!(head("SSH-2.0-x\r\n\r\n").is_err());
    }

    #[test]
    fn a_path_that_could_smuggle_a_header_is_not_written() {
        let mut out = Vec::new();
        for bad in ["/a b", "/a\r\nX: y", "a", "/\u{e9}"] {
            assert!(encode(&mut out, Method::Get, bad, "h").is_err(), "{bad:?}");
        }
        assert!(out.is_empty());
        encode(&mut out, Method::PostJson(b"{}"), "/p?x=1", "h:1").unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("POST /p?x=1 HTTP/1.1\r\nHost: h:1\r\n"),
            "{text}"
        );
        assert!(
            text.ends_with("Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"),
            "{text}"
        );
    }
}
