fn main() -> std::process::ExitCode {
    ward_agent::cli::main()
}
