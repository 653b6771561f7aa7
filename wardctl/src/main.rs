/// mimalloc instead of glibc's allocator: under 10,000 check-ins a second glibc's malloc and
/// free, with their arena locks, took a fifth of the controller's CPU; with mimalloc the
/// controller spends 10-15 % less CPU per check-in (BENCHMARKS.md, "Check-ins written in
/// batches, and the allocator"). Built without transparent huge pages (`no_thp`): with them,
/// memory per connected agent rose from 47 to 70 KiB, past the 64 KiB target; without, 50 KiB.
/// `no_thp` only stops mimalloc asking for them; where the kernel's setting is "always" the
/// shipped systemd unit and container image set `MIMALLOC_ALLOW_THP=0`, which turns them off.
/// Not mimalloc's secure mode (guard pages, encoded free lists): measured 7-12 % fewer
/// check-ins a second than this, about glibc's rate, so it would have bought no speed.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    wardctl::cli::main()
}
