//! `outreach`: the command line. Parsing and every command live in the library
//! (`outreach_warehouse::cli`); the binary only hands over to it.

fn main() -> std::process::ExitCode {
    outreach_warehouse::cli::main()
}
