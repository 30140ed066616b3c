//! The `imgfleet` command line, built inside this package so the end-to-end tests can run it as a
//! real process (cargo exposes its path to this package's tests only).
fn main() -> std::process::ExitCode {
    imgfleet_worker::commands::cli::main()
}
