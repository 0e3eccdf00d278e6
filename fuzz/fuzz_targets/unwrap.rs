//! Fuzzes `envelope::unwrap`: any bytes must give Ok or an error, never a
//! panic, a hang or unbounded memory.

#![no_main]

use kubeboot::envelope::unwrap;
use kubeboot::host::HostFacts;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let facts = HostFacts { hostname: Some("node-1".into()), default_address: "10.0.0.21".parse().ok(), default_ipv6: "2001:db8::21".parse().ok() };
    let _ = unwrap(data, &facts);
});
