//! `ward-loadgen`: see the library ([`ward_loadgen`]) for what it does.

fn main() -> std::process::ExitCode {
    ward_loadgen::cli::main()
}
