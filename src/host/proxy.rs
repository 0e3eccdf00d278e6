//! Would a connection go through an HTTP proxy? The rules of Go's
//! `http.ProxyFromEnvironment` (`golang.org/x/net/http/httpproxy`), which is
//! what kubeadm's `HTTPProxy` / `HTTPProxyCIDR` preflight checks ask and what
//! the control-plane components (given the host's `*_proxy` variables in
//! their static Pods) will do: `HTTPS_PROXY`/`https_proxy` for https,
//! `HTTP_PROXY`/`http_proxy` for http (upper case first), never for
//! `localhost` or a loopback address, and not for a host that `NO_PROXY`
//! exempts (`*`; an IP; a CIDR; a domain, matching itself and its
//! subdomains, or only subdomains with a leading `.`; optionally `:port`).
//!
//! kubeboot's own HTTP clients never use a proxy; this only predicts what
//! the cluster's components will do, so preflight can warn like kubeadm.

use std::net::IpAddr;

use ipnet::IpNet;

/// The proxy (credentials redacted) that a request to `scheme://host:port`
/// would use under `env`, or `None` for a direct connection.
pub fn proxy_for(env: &[(String, String)], scheme: &str, host: &str, port: u16) -> Option<String> {
    let get = |names: [&str; 2]| {
        names.iter().find_map(|n| {
            env.iter()
                .find(|(k, v)| k == n && !v.is_empty())
                .map(|(_, v)| v.clone())
        })
    };
    let proxy = match scheme {
        "https" => get(["HTTPS_PROXY", "https_proxy"])?,
        _ => get(["HTTP_PROXY", "http_proxy"])?,
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let ip = host.parse::<IpAddr>().ok();
    if host == "localhost" || ip.is_some_and(|ip| ip.is_loopback()) {
        return None;
    }
    let no_proxy = get(["NO_PROXY", "no_proxy"]).unwrap_or_default();
    if no_proxy
        .split(',')
        .any(|entry| exempts(&entry.trim().to_ascii_lowercase(), &host, ip, port))
    {
        return None;
    }
    Some(redact(&proxy))
}

/// One `NO_PROXY` entry against a (lower-case) host.
fn exempts(entry: &str, host: &str, ip: Option<IpAddr>, port: u16) -> bool {
    if entry.is_empty() {
        return false;
    }
    if entry == "*" {
        return true;
    }
    if let Ok(net) = entry.parse::<IpNet>() {
        return ip.is_some_and(|ip| net.contains(&ip));
    }
    if let Ok(e) = entry.parse::<IpAddr>() {
        return ip == Some(e);
    }
    // [v6]:port, name:port, or a bare name
    let with_port = entry
        .rsplit_once(':')
        .filter(|(h, _)| !h.is_empty())
        .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)));
    let (name, want_port): (&str, Option<u16>) = match with_port {
        Some((h, p)) => (h.trim_start_matches('[').trim_end_matches(']'), Some(p)),
        None => (entry, None),
    };
    if let Ok(e) = name.parse::<IpAddr>() {
        return ip == Some(e) && want_port.is_none_or(|p| p == port);
    }
    let name = name.strip_prefix('*').unwrap_or(name);
    let (suffix, match_self) = match name.strip_prefix('.') {
        Some(_) => (name.to_string(), false),
        None => (format!(".{name}"), true),
    };
    let hit = host.ends_with(&suffix) || (match_self && host == &suffix[1..]);
    hit && want_port.is_none_or(|p| p == port)
}

/// The proxy URL without its user information (it may hold a password).
fn redact(proxy: &str) -> String {
    let (scheme, rest) = match proxy.split_once("://") {
        Some((s, r)) => (s, r),
        None => ("http", proxy),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((_, hostport)) => {
            format!("{scheme}://<redacted>@{hostport}{}", &rest[authority_end..])
        }
        None => format!("{scheme}://{rest}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_proxy_variables_mean_direct() {
        assert_eq!(proxy_for(&[], "https", "10.0.0.1", 6443), None);
        let e = env(&[("HTTP_PROXY", "http://p:3128")]);
        assert_eq!(
            proxy_for(&e, "https", "10.0.0.1", 6443),
            None,
            "http proxy is not used for https"
        );
        assert_eq!(
            proxy_for(&e, "http", "10.0.0.1", 80).as_deref(),
            Some("http://p:3128")
        );
    }

    #[test]
    fn upper_case_wins_and_scheme_defaults_to_http() {
        let e = env(&[("https_proxy", "lower:1"), ("HTTPS_PROXY", "upper:2")]);
        assert_eq!(
            proxy_for(&e, "https", "10.0.0.1", 443).as_deref(),
            Some("http://upper:2")
        );
        let e = env(&[("HTTPS_PROXY", ""), ("https_proxy", "lower:1")]);
        assert_eq!(
            proxy_for(&e, "https", "10.0.0.1", 443).as_deref(),
            Some("http://lower:1")
        );
    }

    #[test]
    fn loopback_and_localhost_are_never_proxied() {
        let e = env(&[("HTTPS_PROXY", "http://p:3128")]);
        for h in ["localhost", "127.0.0.1", "127.1.2.3", "::1", "[::1]"] {
            assert_eq!(proxy_for(&e, "https", h, 443), None, "{h}");
        }
    }

    #[test]
    fn no_proxy_entries() {
        let with = |np: &str| env(&[("HTTPS_PROXY", "http://p:3128"), ("NO_PROXY", np)]);
        let direct =
            |np: &str, host: &str, port: u16| proxy_for(&with(np), "https", host, port).is_none();
        assert!(direct("*", "10.96.0.1", 443));
        assert!(direct("10.96.0.0/12", "10.96.0.1", 443));
        assert!(!direct("10.96.0.0/16", "10.100.0.1", 443));
        assert!(direct("a, 192.168.1.10 ,b", "192.168.1.10", 6443));
        assert!(direct("fd00::/8", "fd00::1", 1234));
        assert!(direct("example.com", "example.com", 443));
        assert!(direct("example.com", "api.example.com", 443));
        assert!(!direct(".example.com", "example.com", 443));
        assert!(direct(".example.com", "api.example.com", 443));
        assert!(direct("*.example.com", "api.example.com", 443));
        assert!(!direct("example.com", "badexample.com", 443));
        assert!(direct("EXAMPLE.com:6443", "Api.Example.COM", 6443));
        assert!(!direct("example.com:6443", "api.example.com", 443));
        assert!(direct("[fd00::1]:1234", "fd00::1", 1234));
        assert!(!direct("", "10.0.0.1", 443));
        assert!(!direct("not a cidr/99", "10.0.0.1", 443));
    }

    #[test]
    fn credentials_never_appear() {
        let e = env(&[("HTTPS_PROXY", "http://alice:s3cret@proxy.corp:3128/x")]);
        let p = proxy_for(&e, "https", "10.0.0.1", 443).unwrap();
        assert_eq!(p, "http://<redacted>@proxy.corp:3128/x");
        let e = env(&[("HTTPS_PROXY", "alice:s3cret@proxy.corp:3128")]);
        assert!(
            !proxy_for(&e, "https", "10.0.0.1", 443)
                .unwrap()
                .contains("s3cret")
        );
    }
}
