//! Facts about the host that defaults are derived from: the hostname, the
//! address of the interface that holds the default route, and the IPv6
//! address of the interface that holds the IPv6 default route.
//!
//! Detection only reads local kernel state (`uname`, `/proc/net/route`,
//! `getifaddrs`); it never sends a packet.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// What the host tells us; every fact may be unknown.
///
/// Detected facts are read from the kernel when first asked for, each
/// once: a configuration that names its node and its advertise address
/// (the built-in examples, most generated userdata) never reads the route
/// tables or the interface list (two netlink dumps each time).
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    /// The procfs mount the routes are read from; `None` for facts given
    /// whole ([`HostFacts::given`]): nothing is detected.
    proc: Option<PathBuf>,
    hostname: OnceLock<Option<String>>,
    default_address: OnceLock<Option<IpAddr>>,
    default_ipv6: OnceLock<Option<Ipv6Addr>>,
}

impl HostFacts {
    /// Facts of the running kernel, read when first asked for. `proc` is
    /// the procfs mount (`/proc` on a real node).
    pub fn detect(proc: &Path) -> HostFacts {
        HostFacts {
            proc: Some(proc.to_path_buf()),
            ..HostFacts::default()
        }
    }

    /// Facts known beforehand (tests, fixtures): nothing is detected.
    pub fn given(
        hostname: Option<String>,
        default_address: Option<IpAddr>,
        default_ipv6: Option<Ipv6Addr>,
    ) -> HostFacts {
        HostFacts {
            proc: None,
            hostname: OnceLock::from(hostname),
            default_address: OnceLock::from(default_address),
            default_ipv6: OnceLock::from(default_ipv6),
        }
    }

    /// The kernel hostname.
    pub fn hostname(&self) -> Option<&str> {
        self.hostname
            .get_or_init(|| {
                self.proc.as_ref()?;
                usable_hostname(rustix::system::uname().nodename().to_str().ok()?)
            })
            .as_deref()
    }

    /// The primary address of the default-route interface.
    pub fn default_address(&self) -> Option<IpAddr> {
        *self.default_address.get_or_init(|| {
            default_route_interface(self.proc.as_deref()?).and_then(|i| interface_address(&i))
        })
    }

    /// The first global IPv6 address of the interface holding the IPv6
    /// default route (without one: of the IPv4 default-route interface),
    /// as cloud-init's `local-ipv6` is found. Set on dual-stack hosts too,
    /// where [`HostFacts::default_address`] is the IPv4 one.
    pub fn default_ipv6(&self) -> Option<Ipv6Addr> {
        *self.default_ipv6.get_or_init(|| {
            let proc = self.proc.as_deref()?;
            ipv6_default_route_interface(proc)
                .or_else(|| ipv4_default_route_interface(proc))
                .and_then(|iface| interface_addresses(&iface).1)
        })
    }
}

/// The kernel's node name as a hostname: none when it is empty or the
/// kernel's "(none)" (no hostname set yet).
fn usable_hostname(nodename: &str) -> Option<String> {
    (!nodename.is_empty() && nodename != "(none)").then(|| nodename.to_owned())
}

/// The interface of the IPv4 default route with the lowest metric, or of the
/// IPv6 default route when there is no IPv4 one.
pub fn default_route_interface(proc: &Path) -> Option<String> {
    ipv4_default_route_interface(proc).or_else(|| ipv6_default_route_interface(proc))
}

fn ipv4_default_route_interface(proc: &Path) -> Option<String> {
    parse_ipv4_default(&std::fs::read_to_string(proc.join("net/route")).ok()?)
}

fn ipv6_default_route_interface(proc: &Path) -> Option<String> {
    parse_ipv6_default(&std::fs::read_to_string(proc.join("net/ipv6_route")).ok()?)
}

fn parse_ipv4_default(text: &str) -> Option<String> {
    // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
    let mut best: Option<(u32, String)> = None;
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 || f[1] != "00000000" || f[7] != "00000000" {
            continue;
        }
        let flags = u32::from_str_radix(f[3], 16).unwrap_or(0);
        if flags & 0x1 == 0 {
            continue; // RTF_UP not set
        }
        let metric: u32 = f[6].parse().unwrap_or(u32::MAX);
        if best.as_ref().is_none_or(|(m, _)| metric < *m) {
            best = Some((metric, f[0].to_string()));
        }
    }
    best.map(|(_, i)| i)
}

fn parse_ipv6_default(text: &str) -> Option<String> {
    // dest destlen src srclen nexthop metric refcnt use flags iface
    let mut best: Option<(u32, String)> = None;
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 || f[0] != "00000000000000000000000000000000" || f[1] != "00" {
            continue;
        }
        if f[9] == "lo" {
            continue;
        }
        let metric = u32::from_str_radix(f[5], 16).unwrap_or(u32::MAX);
        if best.as_ref().is_none_or(|(m, _)| metric < *m) {
            best = Some((metric, f[9].to_string()));
        }
    }
    best.map(|(_, i)| i)
}

/// The first usable global address of `iface` (IPv4 preferred).
fn interface_address(iface: &str) -> Option<IpAddr> {
    match interface_addresses(iface) {
        (Some(v4), _) => Some(IpAddr::V4(v4)),
        (None, v6) => v6.map(IpAddr::V6),
    }
}

/// The first usable IPv4 and the first usable IPv6 address of `iface`
/// (not loopback, not link-local).
fn interface_addresses(iface: &str) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return (None, None);
    };
    let (mut v4, mut v6): (Option<Ipv4Addr>, Option<Ipv6Addr>) = (None, None);
    for a in addrs {
        if a.interface_name != iface {
            continue;
        }
        let Some(addr) = a.address else { continue };
        if let Some(sin) = addr.as_sockaddr_in() {
            let ip: Ipv4Addr = sin.ip();
            if !ip.is_loopback() && !ip.is_link_local() && v4.is_none() {
                v4 = Some(ip);
            }
        } else if let Some(sin6) = addr.as_sockaddr_in6() {
            let ip = sin6.ip();
            let link_local = (ip.segments()[0] & 0xffc0) == 0xfe80;
            if !ip.is_loopback() && !link_local && v6.is_none() {
                v6 = Some(ip);
            }
        }
    }
    (v4, v6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unset_hostname_is_unknown() {
        assert_eq!(usable_hostname("cp-1").as_deref(), Some("cp-1"));
        assert_eq!(usable_hostname(""), None);
        assert_eq!(usable_hostname("(none)"), None);
    }

    #[test]
    fn picks_lowest_metric_default_route() {
        let t = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                 eth1\t00000000\t0102A8C0\t0003\t0\t0\t200\t00000000\t0\t0\t0\n\
                 eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
                 eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(parse_ipv4_default(t).as_deref(), Some("eth0"));
        assert_eq!(parse_ipv4_default("Iface\n"), None);
    }

    #[test]
    fn each_family_finds_its_own_default_route_interface() {
        let proc = std::env::temp_dir().join(format!("kubeboot-facts-{}", std::process::id()));
        std::fs::create_dir_all(proc.join("net")).unwrap();
        std::fs::write(
            proc.join("net/route"),
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n\
             eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\n",
        )
        .unwrap();
        std::fs::write(
            proc.join("net/ipv6_route"),
            "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth1\n",
        )
        .unwrap();
        assert_eq!(default_route_interface(&proc).as_deref(), Some("eth0"));
        assert_eq!(ipv4_default_route_interface(&proc).as_deref(), Some("eth0"));
        assert_eq!(ipv6_default_route_interface(&proc).as_deref(), Some("eth1"));
        std::fs::remove_file(proc.join("net/ipv6_route")).unwrap();
        assert_eq!(ipv6_default_route_interface(&proc), None);
        let _ = std::fs::remove_dir_all(&proc);
    }

    #[test]
    fn ipv6_default() {
        let t = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 ens3\n";
        assert_eq!(parse_ipv6_default(t).as_deref(), Some("ens3"));
    }
}
