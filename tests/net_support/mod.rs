//! Loopback HTTP(S) servers for the network-source tests: bound to
//! 127.0.0.1:0, one thread per connection, every request recorded.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kubeboot::net::http::Retry;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The request body (Content-Length bytes).
    pub body: Vec<u8>,
    /// The DER of the client certificate the TLS peer presented, if any.
    pub client_cert: Option<Vec<u8>>,
    /// When the server accepted the connection that carried it (before
    /// the TLS handshake): the arrival time least shaped by the server's
    /// own threads being scheduled late.
    pub accepted: Instant,
    /// When the kernel received the connection's first bytes (a TLS
    /// ClientHello: when the client set out), for a server started with
    /// [`Server::https_stamped`]; independent of when this server's
    /// threads got to run.
    pub sent: Option<Instant>,
    /// Which TCP connection carried it: 1 for the server's first accepted
    /// connection, 2 for the next... (keep-alive reuse shows as one number).
    pub connection: usize,
    /// Whether bytes of the next request had already arrived when this one
    /// was read to its end: the client wrote it ahead of this answer
    /// (pipelining). Never true for a client that waits for each answer.
    pub ahead: bool,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the server does with a request.
pub enum Reply {
    /// Status, extra headers, body.
    Respond(u16, Vec<(String, String)>, Vec<u8>),
    /// Sleep, then respond 200 with the body (a slow server).
    Slow(Duration, Vec<u8>),
    /// Close the connection without answering.
    Hang(Duration),
    /// Start a response (status, headers announcing the whole body), send
    /// half the body, then reset the connection (RST): a server or proxy
    /// dying mid-response.
    Reset(u16, Vec<u8>),
    /// 200 without a length, then this chunk over and over until the
    /// client goes away (an endless body).
    Endless(Vec<u8>),
}

pub fn ok(body: &[u8]) -> Reply {
    Reply::Respond(200, vec![], body.to_vec())
}
pub fn status(code: u16) -> Reply {
    Reply::Respond(code, vec![], format!("status {code}\n").into_bytes())
}

/// A rustls server config from PEM files: the certificate chain `cert`
/// and its `key`; with `client_ca`, a client certificate from that CA is
/// required.
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
    client_ca: Option<&std::path::Path>,
) -> Arc<rustls::ServerConfig> {
    tls_config_with(cert, key, client_ca, false)
}

/// Like [`tls_config`]; with `optional`, a client certificate from
/// `client_ca` is verified when presented but not required (as the API
/// server does: anonymous requests reach /livez).
pub fn tls_config_with(
    cert: &std::path::Path,
    key: &std::path::Path,
    client_ca: Option<&std::path::Path>,
    optional: bool,
) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).unwrap() {
                roots.add(c.unwrap()).unwrap();
            }
            let mut verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            if optional {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier.build().unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    Arc::new(builder.with_single_cert(chain, key).unwrap())
}

type Handler = dyn Fn(&Request, usize) -> Reply + Send + Sync;

/// A running loopback server.
pub struct Server {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    /// An HTTP server calling `handler(request, index)` for every request.
    pub fn http(handler: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static) -> Server {
        Server::start(handler, None, false)
    }

    /// An HTTPS server with the given rustls config.
    pub fn https(
        config: Arc<rustls::ServerConfig>,
        handler: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static,
    ) -> Server {
        Server::start(handler, Some(config), false)
    }

    /// An HTTPS server that, like the real API server, keeps a connection
    /// open for further requests unless the client asks to close it.
    pub fn https_keep_alive(
        config: Arc<rustls::ServerConfig>,
        handler: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static,
    ) -> Server {
        Server::start(handler, Some(config), true)
    }

    /// [`Server::https`] that also records, per connection, when the
    /// kernel received its first bytes ([`Request::sent`], from
    /// `SO_TIMESTAMPNS`).
    pub fn https_stamped(
        config: Arc<rustls::ServerConfig>,
        handler: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static,
    ) -> Server {
        Server::start_with(handler, Some(config), false, true)
    }

    fn start(
        handler: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static,
        tls: Option<Arc<rustls::ServerConfig>>,
        keep_alive: bool,
    ) -> Server {
        Server::start_with(handler, tls, keep_alive, false)
    }

    fn start_with(
        handler: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static,
        tls: Option<Arc<rustls::ServerConfig>>,
        keep_alive: bool,
        stamped: bool,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        if stamped {
            // accepted sockets inherit it
            nix::sys::socket::setsockopt(
                &listener,
                nix::sys::socket::sockopt::ReceiveTimestampns,
                &true,
            )
            .unwrap();
        }
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let recorded = requests.clone();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { continue };
                let accepted = Instant::now();
                let connection = n + 1;
                let (handler, recorded, tls) = (handler.clone(), recorded.clone(), tls.clone());
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    let _ = stream.set_nodelay(true);
                    // a second handle on the socket, to reset it (Reply::Reset)
                    let raw = stream.try_clone().ok();
                    let sent = if stamped {
                        first_bytes_at(&stream)
                    } else {
                        None
                    };
                    let accepted = (accepted, sent);
                    match tls {
                        None => serve(
                            stream,
                            &*handler,
                            &recorded,
                            (None, connection),
                            false,
                            raw,
                            accepted,
                        ),
                        Some(cfg) => {
                            let Ok(mut conn) = rustls::ServerConnection::new(cfg) else {
                                return;
                            };
                            let mut stream = stream;
                            while conn.is_handshaking() {
                                if conn.complete_io(&mut stream).is_err() {
                                    return;
                                }
                            }
                            let client = conn
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .map(|c| c.to_vec());
                            serve(
                                rustls::StreamOwned::new(conn, stream),
                                &*handler,
                                &recorded,
                                (client, connection),
                                keep_alive,
                                raw,
                                accepted,
                            )
                        }
                    }
                });
            }
        });
        Server { port, requests }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

/// When the kernel received the first bytes waiting on `stream`
/// (`SO_TIMESTAMPNS`, read with `MSG_PEEK`: they stay for the reader).
fn first_bytes_at(stream: &TcpStream) -> Option<Instant> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg};
    use std::os::fd::AsRawFd;
    let mut byte = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!(nix::sys::time::TimeSpec);
    let msg = recvmsg::<SockaddrStorage>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_PEEK,
    )
    .ok()?;
    let ts = msg.cmsgs().ok()?.find_map(|c| match c {
        ControlMessageOwned::ScmTimestampns(t) => Some(t),
        _ => None,
    })?;
    let at = std::time::UNIX_EPOCH + Duration::new(ts.tv_sec() as u64, ts.tv_nsec() as u32);
    // the wall-clock stamp as an Instant: how long ago it was
    let age = std::time::SystemTime::now().duration_since(at).ok()?;
    Instant::now().checked_sub(age)
}

fn serve<S: Read + Write>(
    stream: S,
    handler: &Handler,
    recorded: &Mutex<Vec<Request>>,
    peer: (Option<Vec<u8>>, usize),
    keep_alive: bool,
    raw: Option<TcpStream>,
    accepted: (Instant, Option<Instant>),
) {
    let mut reader = BufReader::new(stream);
    while let Some(again) = serve_one(
        &mut reader,
        handler,
        recorded,
        &peer,
        keep_alive,
        raw.as_ref(),
        accepted,
    ) {
        if !again {
            return;
        }
    }
}

/// Reads and answers one request; `Some(true)` when the connection stays open.
fn serve_one<S: Read + Write>(
    reader: &mut BufReader<S>,
    handler: &Handler,
    recorded: &Mutex<Vec<Request>>,
    (client_cert, connection): &(Option<Vec<u8>>, usize),
    keep_alive: bool,
    raw: Option<&TcpStream>,
    (accepted, sent): (Instant, Option<Instant>),
) -> Option<bool> {
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut headers = Vec::new();
    let mut content_length = 0usize;
    let mut keep_alive = keep_alive;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                content_length = v.trim().parse().unwrap_or(0);
            }
            if k.eq_ignore_ascii_case("connection") && v.trim().eq_ignore_ascii_case("close") {
                keep_alive = false;
            }
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        read_chunked(reader)
    } else {
        let mut body = vec![0u8; content_length];
        let _ = reader.read_exact(&mut body);
        body
    };
    let req = Request {
        method,
        path,
        headers,
        body,
        client_cert: client_cert.clone(),
        accepted,
        sent,
        connection: *connection,
        ahead: !reader.buffer().is_empty(),
    };
    let index = {
        let mut r = recorded.lock().unwrap();
        r.push(req.clone());
        r.len() - 1
    };
    let (code, extra, body) = match handler(&req, index) {
        Reply::Respond(code, extra, body) => (code, extra, body),
        Reply::Reset(code, body) => {
            let head = format!(
                "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nContent-Type: application/json\r\n\r\n",
                body.len()
            );
            let stream = reader.get_mut();
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body[..body.len() / 2]);
            let _ = stream.flush();
            if let Some(raw) = raw {
                // linger 0: closing sends RST instead of FIN
                let _ = rustix::net::sockopt::set_socket_linger(raw, Some(Duration::ZERO));
            }
            return None;
        }
        Reply::Slow(d, body) => {
            std::thread::sleep(d);
            (200, vec![], body)
        }
        Reply::Hang(d) => {
            std::thread::sleep(d);
            return None;
        }
        Reply::Endless(chunk) => {
            let stream = reader.get_mut();
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
            while stream.write_all(&chunk).is_ok() {}
            return None;
        }
    };
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let mut head = format!(
        "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: {connection}\r\n",
        body.len()
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    // One write: a second small segment would wait for the client's delayed ACK.
    let mut out = head.into_bytes();
    out.extend_from_slice(&body);
    let stream = reader.get_mut();
    let _ = stream.write_all(&out);
    let _ = stream.flush();
    Some(keep_alive)
}

/// A `Transfer-Encoding: chunked` body (kubectl streams `-f` files so).
fn read_chunked<R: BufRead>(reader: &mut R) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        if reader.read_line(&mut size).unwrap_or(0) == 0 {
            return body;
        }
        let hex = size.trim().split(';').next().unwrap_or("");
        let Ok(n) = usize::from_str_radix(hex, 16) else {
            return body;
        };
        if n == 0 {
            // trailers end with an empty line
            loop {
                let mut t = String::new();
                if reader.read_line(&mut t).unwrap_or(0) == 0 || t.trim().is_empty() {
                    return body;
                }
            }
        }
        let mut chunk = vec![0u8; n];
        if reader.read_exact(&mut chunk).is_err() {
            return body;
        }
        body.extend_from_slice(&chunk);
        let mut crlf = String::new();
        let _ = reader.read_line(&mut crlf);
    }
}

/// A port on 127.0.0.1 nothing listens on (connections are refused).
pub fn closed_port() -> u16 {
    // A port just freed can be taken at once by a server of a test running
    // in parallel (the kernel hands out ephemeral ports again): draw again
    // until one is really closed.
    for _ in 0..50 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        if TcpStream::connect(("127.0.0.1", port)).is_err() {
            return port;
        }
    }
    panic!("no closed port on 127.0.0.1 in 50 draws");
}

/// A retry shape for tests: generous attempts (slow shared machines), short backoff.
pub fn quick_retry() -> Retry {
    Retry {
        budget: Duration::from_secs(20),
        attempt_timeout: Duration::from_secs(5),
        first_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
    }
}

/// A retry shape whose attempts time out quickly, inside a short budget.
pub fn impatient_retry() -> Retry {
    Retry {
        budget: Duration::from_millis(1200),
        attempt_timeout: Duration::from_millis(300),
        first_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
    }
}

/// A fresh temporary directory.
pub fn tmpdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("kubeboot-net-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A gzip-compressed cloud-config (binary bytes) and a MIME multipart body.
pub fn gzip_body() -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(b"#cloud-config\nkubeboot:\n  role: worker\n")
        .unwrap();
    enc.finish().unwrap()
}
pub const MIME_BODY: &[u8] = b"Content-Type: multipart/mixed; boundary=\"XB\"\r\nMIME-Version: 1.0\r\n\r\n--XB\r\nContent-Type: text/cloud-config\r\n\r\n#cloud-config\r\nkubeboot: {role: worker}\r\n--XB--\r\n";
