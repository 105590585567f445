//! The `stormbell` command: a thin layer over the library (see `src/cli/`).

mod cli;

/// mimalloc: faster than the system allocator for the many small strings alerts are made of,
/// and it holds fragmentation down over a flood season of uptime. (The CAP benchmark driver,
/// `bench/cap_throughput.rs`, uses it too, so the figures are the binary's.)
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
