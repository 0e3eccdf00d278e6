//! Link step of the shipped binary (docs/building.md, "Unwind tables"):
//! the static musl release build (`panic = "abort"` in Cargo.toml's
//! release profile) drops the unwind tables, which only a panic's
//! RUST_BACKTRACE listing would read. Any other build (debug builds and
//! tests unwind on panic) is left alone. Cargo tells build scripts the
//! profile's name, not its `panic` setting (CARGO_CFG_PANIC is the
//! target's default), hence the PROFILE check.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build/discard-eh-frame.ld");
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    if env("CARGO_CFG_TARGET_ENV") == "musl"
        && env("CARGO_CFG_TARGET_OS") == "linux"
        && env("PROFILE") == "release"
    {
        let script = std::path::Path::new(&env("CARGO_MANIFEST_DIR"))
            .join("build")
            .join("discard-eh-frame.ld");
        println!(
            "cargo:rustc-link-arg-bin=kubeboot=-Wl,-T,{}",
            script.display()
        );
    }
}
