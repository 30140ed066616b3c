fn main() -> std::process::ExitCode {
    imgfleet_worker::commands::cli::main()
}
