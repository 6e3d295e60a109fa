//! The `cordon` binary: see `cordon --help`.

fn main() -> std::process::ExitCode {
    cordon::cli::main()
}
