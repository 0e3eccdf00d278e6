//! The `kubeboot` binary: parse arguments, set up logging, run, print the
//! error once, exit with its code (0 success, 1 failure, 2 invalid input).

/// The shipped static musl binary allocates through mimalloc instead of musl's
/// mallocng (`host/alloc.rs`; docs/building.md, "The allocator"); other builds
/// keep the C library's allocator.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: kubeboot::host::alloc::Mimalloc = kubeboot::host::alloc::Mimalloc;

fn main() {
    #[cfg(target_env = "musl")]
    kubeboot::host::alloc::configure();
    let cli = match kubeboot::cli::parse() {
        Ok(c) => c,
        Err(e) => {
            // clap exits 2 for usage errors and 0 for --help/--version
            e.exit();
        }
    };
    kubeboot::secret::remember_secrets();
    kubeboot::logging::init(cli.log_level, true);
    if let Err(e) = kubeboot::cli::run(cli) {
        let msg = e.to_string();
        for (i, line) in msg.lines().enumerate() {
            if i == 0 {
                log::error!("{line}");
            } else {
                log::error!("  {line}");
            }
        }
        #[cfg(target_env = "musl")]
        kubeboot::host::alloc::before_exit();
        std::process::exit(e.exit_code());
    }
    #[cfg(target_env = "musl")]
    kubeboot::host::alloc::before_exit();
}
