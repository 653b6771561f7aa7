fn main() -> std::process::ExitCode {
    wardctl::cli::main()
}
