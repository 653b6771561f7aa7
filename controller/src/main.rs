fn main() -> std::process::ExitCode {
    ward_controller::cli::main()
}
