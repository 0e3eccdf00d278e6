//! Every metadata service against a loopback fake that behaves like the
//! real one (paths, required headers, IMDSv2 tokens, base64 on Azure):
//! 200, 404, empty 200, 5xx then 200, slow responses, refused headers,
//! binary (gzip) and MIME bodies, and EC2's token failures and renewals
//! (after a 401, near the end of the token's lifetime, refused renewal),
//! each asserting the exact request sequence the fake saw.

mod net_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use kubeboot::net::http::Retry;
use kubeboot::userdata::{
    Fetch, Source, SourceError, azure, digitalocean, ec2, gce, hetzner, openstack,
};
use net_support::*;

const TOKEN: &str = "AQAEAFake-imds-token==";

/// One metadata service as the fake serves it.
#[derive(Clone, Copy)]
struct Svc {
    name: &'static str,
    path: &'static str,
    /// The header the real service insists on, and the status it refuses with.
    header: Option<(&'static str, &'static str, u16)>,
    make: fn(&str, Retry) -> Box<dyn Source>,
    base64: bool,
    imdsv2: bool,
}

fn services() -> Vec<Svc> {
    vec![
        Svc {
            name: "ec2",
            path: "/latest/user-data",
            header: None,
            make: |b, r| Box::new(ec2::Ec2::with_retry(b, r)),
            base64: false,
            imdsv2: true,
        },
        Svc {
            name: "gce",
            path: "/computeMetadata/v1/instance/attributes/user-data",
            header: Some(("Metadata-Flavor", "Google", 403)),
            make: |b, r| Box::new(gce::Gce::with_retry(b, r)),
            base64: false,
            imdsv2: false,
        },
        Svc {
            name: "azure",
            path: "/metadata/instance/compute/userData?api-version=2021-01-01&format=text",
            header: Some(("Metadata", "true", 400)),
            make: |b, r| Box::new(azure::Azure::with_retry(b, r)),
            base64: true,
            imdsv2: false,
        },
        Svc {
            name: "openstack",
            path: "/openstack/latest/user_data",
            header: None,
            make: |b, r| Box::new(openstack::OpenStack::with_retry(b, r)),
            base64: false,
            imdsv2: false,
        },
        Svc {
            name: "hetzner",
            path: "/hetzner/v1/userdata",
            header: None,
            make: |b, r| Box::new(hetzner::Hetzner::with_retry(b, r)),
            base64: false,
            imdsv2: false,
        },
        Svc {
            name: "digitalocean",
            path: "/metadata/v1/user-data",
            header: None,
            make: |b, r| Box::new(digitalocean::DigitalOcean::with_retry(b, r)),
            base64: false,
            imdsv2: false,
        },
    ]
}

/// How the fake answers the userdata GET.
#[derive(Clone)]
struct Behaviour {
    userdata: Option<Vec<u8>>,
    fail_first: usize,
    slow: Option<Duration>,
    /// The header value the fake wants (defaults to the real one).
    header_value: Option<&'static str>,
}

fn serving(userdata: Option<&[u8]>) -> Behaviour {
    Behaviour {
        userdata: userdata.map(<[u8]>::to_vec),
        fail_first: 0,
        slow: None,
        header_value: None,
    }
}

/// A fake metadata service for `svc`.
fn fake(svc: Svc, b: Behaviour) -> (Server, Arc<AtomicUsize>) {
    let gets = Arc::new(AtomicUsize::new(0));
    let counter = gets.clone();
    let server = Server::http(move |req, _| {
        if svc.imdsv2 && req.path == "/latest/api/token" {
            return match (
                req.method.as_str(),
                req.header("X-aws-ec2-metadata-token-ttl-seconds"),
            ) {
                ("PUT", Some(ttl))
                    if ttl.parse::<u32>().is_ok_and(|t| (1..=21600).contains(&t)) =>
                {
                    ok(TOKEN.as_bytes())
                }
                ("PUT", _) => status(400),
                _ => status(405),
            };
        }
        if req.method != "GET" {
            return status(405);
        }
        if svc.imdsv2 && req.header("X-aws-ec2-metadata-token") != Some(TOKEN) {
            return status(401);
        }
        if let Some((name, real, refuse)) = svc.header
            && req.header(name) != Some(b.header_value.unwrap_or(real))
        {
            return status(refuse);
        }
        if req.path != svc.path {
            return status(404);
        }
        let n = counter.fetch_add(1, Ordering::SeqCst);
        if n < b.fail_first {
            return status(503);
        }
        let Some(data) = &b.userdata else {
            return status(404);
        };
        let body = if svc.base64 {
            base64::engine::general_purpose::STANDARD
                .encode(data)
                .into_bytes()
        } else {
            data.clone()
        };
        match b.slow {
            Some(d) => Reply::Slow(d, body),
            None => ok(&body),
        }
    });
    (server, gets)
}

fn fetch(svc: Svc, server: &Server, retry: Retry) -> Result<Fetch, SourceError> {
    let src = (svc.make)(&server.base(), retry);
    assert!(
        src.name().contains(&format!("127.0.0.1:{}", server.port)),
        "{}",
        src.name()
    );
    src.fetch()
}

#[test]
fn found_bodies_come_back_as_exact_bytes() {
    for svc in services() {
        for body in [gzip_body(), MIME_BODY.to_vec()] {
            let (server, _) = fake(svc, serving(Some(&body)));
            match fetch(svc, &server, quick_retry()) {
                Ok(Fetch::Found(got)) => assert_eq!(got, body, "{}", svc.name),
                other => panic!("{}: {other:?}", svc.name),
            }
        }
    }
}

#[test]
fn not_found_means_no_userdata() {
    for svc in services() {
        let (server, gets) = fake(svc, serving(None));
        match fetch(svc, &server, quick_retry()) {
            Ok(Fetch::Absent(why)) => assert!(
                why.contains("no userdata") && why.contains("1 attempt "),
                "{}: {why}",
                svc.name
            ),
            other => panic!("{}: {other:?}", svc.name),
        }
        assert_eq!(
            gets.load(Ordering::SeqCst),
            1,
            "{}: a 404 is not retried",
            svc.name
        );
    }
}

#[test]
fn empty_userdata_means_no_userdata() {
    for svc in services() {
        let (server, _) = fake(svc, serving(Some(b"")));
        match fetch(svc, &server, quick_retry()) {
            Ok(Fetch::Absent(why)) => assert!(why.contains("empty"), "{}: {why}", svc.name),
            other => panic!("{}: {other:?}", svc.name),
        }
    }
}

#[test]
fn server_errors_are_retried_then_succeed() {
    for svc in services() {
        let (server, gets) = fake(
            svc,
            Behaviour {
                fail_first: 2,
                ..serving(Some(b"#cloud-config\n"))
            },
        );
        match fetch(svc, &server, quick_retry()) {
            Ok(Fetch::Found(got)) => assert_eq!(got, b"#cloud-config\n", "{}", svc.name),
            other => panic!("{}: {other:?}", svc.name),
        }
        assert_eq!(gets.load(Ordering::SeqCst), 3, "{}", svc.name);
    }
}

#[test]
fn server_errors_past_the_budget_are_retryable_failures_that_say_what_was_tried() {
    for svc in services() {
        let (server, gets) = fake(
            svc,
            Behaviour {
                fail_first: usize::MAX,
                ..serving(Some(b"x"))
            },
        );
        let err = fetch(svc, &server, impatient_retry()).unwrap_err();
        assert!(err.retryable, "{}: {err}", svc.name);
        let msg = err.to_string();
        println!("{}: {msg}", svc.name);
        // On a loaded machine the last attempt may be cut short by the end
        // of the budget (its timeout is what is left), so it may report a
        // timeout, and the server may not have seen it.
        assert!(
            msg.contains("retry budget") && (msg.contains("HTTP 503") || msg.contains("timed out")),
            "{}: {msg}",
            svc.name
        );
        let n = gets.load(Ordering::SeqCst);
        let attempts: usize = msg
            .split(" attempts")
            .next()
            .and_then(|head| head.rsplit(|c: char| !c.is_ascii_digit()).next())
            .and_then(|d| d.parse().ok())
            .unwrap_or_else(|| panic!("{}: no attempt count in {msg}", svc.name));
        assert!(
            n >= 2 && (n == attempts || n + 1 == attempts),
            "{}: {n} gets, {msg}",
            svc.name
        );
    }
}

#[test]
fn slow_responses_time_out_within_the_budget() {
    for svc in services() {
        let (server, _) = fake(
            svc,
            Behaviour {
                slow: Some(Duration::from_secs(30)),
                ..serving(Some(b"x"))
            },
        );
        let err = fetch(svc, &server, impatient_retry()).unwrap_err();
        assert!(err.retryable, "{}: {err}", svc.name);
        assert!(err.to_string().contains("timed out"), "{}: {err}", svc.name);
    }
}

#[test]
fn connection_refused_is_retried_within_the_budget() {
    for svc in services() {
        let base = format!("http://127.0.0.1:{}", closed_port());
        let err = (svc.make)(&base, impatient_retry()).fetch().unwrap_err();
        assert!(err.retryable, "{}: {err}", svc.name);
        let msg = err.to_string();
        assert!(
            msg.contains("connection") && !msg.contains(" 1 attempt "),
            "{}: {msg}",
            svc.name
        );
    }
}

/// Sends one raw GET without extra headers, returns the status line.
fn raw_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.lines().next().unwrap_or("").to_string()
}

#[test]
fn required_headers_are_sent_and_their_absence_is_refused() {
    for svc in services().into_iter().filter(|s| s.header.is_some()) {
        let Some((name, value, refuse)) = svc.header else {
            unreachable!()
        };
        let (server, _) = fake(svc, serving(Some(b"data")));
        // The fake refuses a request without the header, like the real service ...
        assert!(
            raw_get(server.port, svc.path).contains(&refuse.to_string()),
            "{}",
            svc.name
        );
        // ... and the source sends it.
        assert!(
            matches!(fetch(svc, &server, quick_retry()), Ok(Fetch::Found(_))),
            "{}",
            svc.name
        );
        let reqs = server.requests();
        let last = reqs.last().unwrap();
        assert_eq!(last.header(name), Some(value), "{}", svc.name);
        assert_eq!(last.path, svc.path);

        // A service that wants something else: a permanent error naming the status.
        let (server, gets) = fake(
            svc,
            Behaviour {
                header_value: Some("other"),
                ..serving(Some(b"data"))
            },
        );
        let err = fetch(svc, &server, quick_retry()).unwrap_err();
        assert!(!err.retryable, "{}: {err}", svc.name);
        assert!(
            err.to_string().contains(&format!("HTTP {refuse}")),
            "{}: {err}",
            svc.name
        );
        assert_eq!(
            (gets.load(Ordering::SeqCst), server.requests().len()),
            (0, 1),
            "{}: not retried",
            svc.name
        );
    }
}

fn ec2_svc() -> Svc {
    services().into_iter().find(|s| s.imdsv2).unwrap()
}

#[test]
fn ec2_uses_an_imdsv2_token() {
    let (server, _) = fake(ec2_svc(), serving(Some(b"#cloud-config\n")));
    assert!(matches!(
        fetch(ec2_svc(), &server, quick_retry()),
        Ok(Fetch::Found(_))
    ));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        (reqs[0].method.as_str(), reqs[0].path.as_str()),
        ("PUT", "/latest/api/token")
    );
    assert!(
        reqs[0]
            .header("X-aws-ec2-metadata-token-ttl-seconds")
            .is_some()
    );
    assert_eq!(
        (reqs[1].method.as_str(), reqs[1].path.as_str()),
        ("GET", "/latest/user-data")
    );
    assert_eq!(reqs[1].header("X-aws-ec2-metadata-token"), Some(TOKEN));
}

#[test]
fn ec2_token_put_forbidden_never_falls_back_to_v1() {
    let server = Server::http(|req, _| {
        if req.method == "PUT" {
            status(403)
        } else {
            ok(b"v1 userdata")
        }
    });
    let err = ec2::Ec2::with_retry(&server.base(), quick_retry())
        .fetch()
        .unwrap_err();
    let msg = err.to_string();
    assert!(!err.retryable, "{msg}");
    assert!(
        msg.contains("HTTP 403") && msg.contains("IMDSv1 is never used"),
        "{msg}"
    );
    assert!(
        server.requests().iter().all(|r| r.method == "PUT"),
        "no GET without a token"
    );
}

#[test]
fn ec2_token_put_unanswered_or_refused_hints_at_the_hop_limit() {
    let server = Server::http(|req, _| {
        if req.method == "PUT" {
            Reply::Hang(Duration::from_secs(30))
        } else {
            ok(b"v1")
        }
    });
    let err = ec2::Ec2::with_retry(&server.base(), impatient_retry())
        .fetch()
        .unwrap_err();
    let msg = err.to_string();
    println!("{msg}");
    assert!(
        err.retryable && msg.contains("hop limit") && msg.contains("PUT"),
        "{msg}"
    );
    assert!(
        server.requests().iter().all(|r| r.method == "PUT"),
        "no GET without a token"
    );

    let base = format!("http://127.0.0.1:{}", closed_port());
    let err = ec2::Ec2::with_retry(&base, impatient_retry())
        .fetch()
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        err.retryable && msg.contains("hop limit") && msg.contains("connection"),
        "{msg}"
    );
}

#[test]
fn azure_rejects_userdata_that_is_not_base64() {
    let server = Server::http(|_, _| ok(b"not base64 !!"));
    let err = azure::Azure::with_retry(&server.base(), quick_retry())
        .fetch()
        .unwrap_err();
    assert!(
        !err.retryable && err.to_string().contains("base64"),
        "{err}"
    );
}

/// A fake IMDS with real token rules: `PUT /latest/api/token` issues
/// `token-N` (N counts PUTs from 1) for the lifetime the client asks for,
/// unless `refuse_put(N)` gives a status; a `GET /latest/user-data` with
/// an unknown or expired token gets 401, otherwise `get(N, uses)`
/// answers, `uses` being how many GETs that token made before.
fn imds(
    refuse_put: impl Fn(usize) -> Option<u16> + Send + Sync + 'static,
    get: impl Fn(usize, usize) -> Reply + Send + Sync + 'static,
) -> Server {
    use std::sync::Mutex;
    use std::time::Instant;
    // (lifetime end, uses so far) per issued token.
    let tokens: Mutex<Vec<(Instant, usize)>> = Mutex::new(Vec::new());
    Server::http(move |req, _| {
        let mut tokens = tokens.lock().unwrap();
        match (req.method.as_str(), req.path.as_str()) {
            ("PUT", "/latest/api/token") => {
                let Some(ttl) = req
                    .header("X-aws-ec2-metadata-token-ttl-seconds")
                    .and_then(|t| t.parse::<u64>().ok())
                    .filter(|t| (1..=21600).contains(t))
                else {
                    return status(400);
                };
                tokens.push((Instant::now() + Duration::from_secs(ttl), 0));
                let n = tokens.len();
                match refuse_put(n) {
                    Some(code) => status(code),
                    None => ok(format!("token-{n}").as_bytes()),
                }
            }
            ("GET", "/latest/user-data") => {
                let n = req
                    .header("X-aws-ec2-metadata-token")
                    .and_then(|t| t.strip_prefix("token-"))
                    .and_then(|n| n.parse::<usize>().ok())
                    .filter(|n| (1..=tokens.len()).contains(n));
                let Some(n) = n else { return status(401) };
                let (expires, uses) = &mut tokens[n - 1];
                if Instant::now() >= *expires {
                    return status(401);
                }
                *uses += 1;
                let before = *uses - 1;
                drop(tokens);
                get(n, before)
            }
            _ => status(404),
        }
    })
}

/// The requests the fake saw, as `PUT ttl=300` / `GET token-1` lines.
fn imds_sequence(server: &Server) -> Vec<String> {
    server
        .requests()
        .iter()
        .map(|r| match (r.method.as_str(), r.path.as_str()) {
            ("PUT", "/latest/api/token") => format!(
                "PUT ttl={}",
                r.header("X-aws-ec2-metadata-token-ttl-seconds")
                    .unwrap_or("none")
            ),
            ("GET", "/latest/user-data") => format!(
                "GET {}",
                r.header("X-aws-ec2-metadata-token")
                    .unwrap_or("without a token")
            ),
            (m, p) => format!("{m} {p}"),
        })
        .collect()
}

#[test]
fn ec2_renews_the_token_after_a_401_and_uses_the_new_one() {
    // token-1 works once (503), then IMDS invalidates it (401).
    let server = imds(
        |_| None,
        |n, uses| match (n, uses) {
            (1, 0) => status(503),
            (2, 0) => ok(b"#cloud-config\n"),
            _ => status(401),
        },
    );
    match ec2::Ec2::with_retry(&server.base(), quick_retry()).fetch() {
        Ok(Fetch::Found(got)) => assert_eq!(got, b"#cloud-config\n"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        imds_sequence(&server),
        [
            "PUT ttl=300",
            "GET token-1",
            "GET token-1",
            "PUT ttl=300",
            "GET token-2"
        ]
    );
}

#[test]
fn ec2_renews_a_token_near_the_end_of_its_lifetime_before_using_it_again() {
    // A 2 s token; the first GET takes 2.2 s and fails, so by the retry the
    // token is past 1.6 s (renew_after) and also expired at the fake, which
    // would answer 401: the sequence shows the renewal came first.
    let server = imds(
        |_| None,
        |n, _| match n {
            1 => {
                std::thread::sleep(Duration::from_millis(2200));
                status(503)
            }
            _ => ok(b"#cloud-config\n"),
        },
    );
    let src =
        ec2::Ec2::with_retry(&server.base(), quick_retry()).with_token_ttl(Duration::from_secs(2));
    match src.fetch() {
        Ok(Fetch::Found(got)) => assert_eq!(got, b"#cloud-config\n"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        imds_sequence(&server),
        ["PUT ttl=2", "GET token-1", "PUT ttl=2", "GET token-2"]
    );
}

#[test]
fn ec2_refused_renewal_names_the_token_url_and_never_falls_back_to_v1() {
    let server = imds(|n| (n == 2).then_some(403), |_, _| status(401));
    let err = ec2::Ec2::with_retry(&server.base(), quick_retry())
        .fetch()
        .unwrap_err();
    let msg = err.to_string();
    println!("{msg}");
    assert!(!err.retryable, "{msg}");
    assert!(
        msg.starts_with(&format!(
            "ec2 imdsv2 token PUT {}/latest/api/token (renewing the token after {}/latest/user-data answered HTTP 401 Unauthorized): failed (1 attempt in ",
            server.base(),
            server.base()
        )),
        "{msg}"
    );
    assert!(
        msg.contains("last: HTTP 403 Forbidden") && msg.contains("IMDSv1 is never used"),
        "{msg}"
    );
    assert!(
        !msg.contains("token-1"),
        "the token never reaches messages: {msg}"
    );
    assert_eq!(
        imds_sequence(&server),
        ["PUT ttl=300", "GET token-1", "PUT ttl=300"]
    );
}

#[test]
fn ec2_a_401_for_a_just_renewed_token_is_final() {
    let server = imds(|_| None, |_, _| status(401));
    let err = ec2::Ec2::with_retry(&server.base(), quick_retry())
        .fetch()
        .unwrap_err();
    let msg = err.to_string();
    println!("{msg}");
    assert!(!err.retryable, "{msg}");
    assert!(
        msg.starts_with(&format!(
            "ec2 imdsv2 {}/latest/user-data: refused the IMDSv2 token it had just issued to replace one it refused (2 attempts in ",
            server.base()
        )) && msg.contains("last: HTTP 401 Unauthorized") && msg.contains("IMDSv1 is never used"),
        "{msg}"
    );
    assert_eq!(
        imds_sequence(&server),
        ["PUT ttl=300", "GET token-1", "PUT ttl=300", "GET token-2"]
    );
}
