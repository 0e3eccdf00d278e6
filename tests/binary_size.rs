//! The shipped binary: the static release build (docs/building.md) must stay
//! under 4 MiB, be statically linked (no program interpreter, no dynamic
//! section) and stripped. It checks the file .ci/run builds
//! (`KUBEBOOT_RELEASE_BIN`), or `target/x86_64-unknown-linux-musl/release/kubeboot`
//! when that exists; otherwise it prints a SKIP line (building a release
//! binary inside `cargo test` would take minutes). kubeboot has no cargo
//! features, so any build carries every feature.

use std::path::PathBuf;

// The goal is 4 MiB (issue 9): the merged binary measured 5,001,856 B
// before the cuts of docs/building.md ("Size") and 3,863,168 B after them
// (2026-11-28, with issue 11's patches merged).
const LIMIT: u64 = 4 * 1024 * 1024;

fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KUBEBOOT_RELEASE_BIN") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "KUBEBOOT_RELEASE_BIN={} does not exist",
            p.display()
        );
        return Some(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/x86_64-unknown-linux-musl/release/kubeboot");
    p.is_file().then_some(p)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const SHT_SYMTAB: u32 = 2;

/// Program header types and section header types of a 64-bit little-endian ELF.
fn elf_types(b: &[u8]) -> (Vec<u32>, Vec<u32>) {
    assert_eq!(&b[..4], b"\x7fELF", "not an ELF file");
    assert_eq!((b[4], b[5]), (2, 1), "not 64-bit little-endian");
    let (phoff, phentsize, phnum) = (u64_at(b, 0x20) as usize, u16_at(b, 0x36), u16_at(b, 0x38));
    let (shoff, shentsize, shnum) = (u64_at(b, 0x28) as usize, u16_at(b, 0x3a), u16_at(b, 0x3c));
    let ph = (0..phnum as usize)
        .map(|i| u32_at(b, phoff + i * phentsize as usize))
        .collect();
    let sh = (0..shnum as usize)
        .map(|i| u32_at(b, shoff + i * shentsize as usize + 4))
        .collect();
    (ph, sh)
}

#[test]
fn release_binary_is_static_stripped_and_under_4_mib() {
    let Some(bin) = binary() else {
        eprintln!(
            "SKIP binary_size: no release binary; build it with \
             `cargo build --release --target x86_64-unknown-linux-musl --bin kubeboot` \
             or set KUBEBOOT_RELEASE_BIN (.ci/run does)"
        );
        return;
    };
    let bytes = std::fs::read(&bin).unwrap();
    let size = bytes.len() as u64;
    eprintln!(
        "{}: {size} bytes ({:.2} MiB; limit {LIMIT})",
        bin.display(),
        size as f64 / 1024.0 / 1024.0
    );
    assert!(
        size < LIMIT,
        "{} is {size} bytes, over the {LIMIT}-byte limit: see docs/building.md for where the bytes go",
        bin.display()
    );
    let (ph, sh) = elf_types(&bytes);
    assert!(
        !ph.contains(&PT_INTERP),
        "dynamically linked: has a program interpreter"
    );
    assert!(
        !ph.contains(&PT_DYNAMIC),
        "has a dynamic section (static-pie or dynamic)"
    );
    assert!(
        !sh.contains(&SHT_SYMTAB),
        "not stripped: has a symbol table"
    );
    // and it runs, with every subcommand present
    let o = std::process::Command::new(&bin)
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{help}");
    for cmd in ["firstboot", "init", "join", "render", "config", "certs"] {
        assert!(help.contains(cmd), "{cmd} missing from --help:\n{help}");
    }
}
