//! The key exchange of one TLS handshake, as kubeboot's client does it with
//! ring (issue 9, docs/building.md "firstboot, branch boot"): an ephemeral
//! key, its public key, and the agreement with a peer's public key, for
//! X25519 and for P-256, interleaved round by round, median per round.
//! Callgrind cannot judge this choice: under valgrind ring takes its
//! portable paths for both curves (no ADX/BMI2), natively P-256 runs
//! ring's nistz256 assembly.
//!
//! `cargo bench --bench kx` (release profile: ring's C and assembly built
//! optimised); `KUBEBOOT_BENCH_RUNS` rounds (default 7) of 2000 exchanges.

use ring::agreement::{self, Algorithm, EphemeralPrivateKey, UnparsedPublicKey};
use ring::rand::SystemRandom;
use std::time::Instant;

/// Microseconds per exchange over `n` exchanges.
fn per_exchange(alg: &'static Algorithm, n: usize) -> f64 {
    let rng = SystemRandom::new();
    let peer = EphemeralPrivateKey::generate(alg, &rng).unwrap();
    let peer_public = peer.compute_public_key().unwrap();
    let start = Instant::now();
    for _ in 0..n {
        let key = EphemeralPrivateKey::generate(alg, &rng).unwrap();
        let public = key.compute_public_key().unwrap();
        std::hint::black_box(public.as_ref());
        let peer_key = UnparsedPublicKey::new(alg, peer_public.as_ref());
        agreement::agree_ephemeral(key, &peer_key, |secret| std::hint::black_box(secret[0]))
            .unwrap();
    }
    start.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::var("KUBEBOOT_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(7);
    let (mut x25519, mut p256) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // alternate which curve goes first
        if round % 2 == 0 {
            x25519.push(per_exchange(&agreement::X25519, 2000));
            p256.push(per_exchange(&agreement::ECDH_P256, 2000));
        } else {
            p256.push(per_exchange(&agreement::ECDH_P256, 2000));
            x25519.push(per_exchange(&agreement::X25519, 2000));
        }
    }
    let (x, p) = (median(x25519), median(p256));
    println!(
        "key exchange (keygen + public key + agreement), median of {rounds} rounds of 2000: X25519 {x:.1} us, P-256 {p:.1} us: P-256/X25519 {:.2}x",
        p / x
    );
}
