fn main() -> std::process::ExitCode {
    imgfleet_worker::cli::main()
}
