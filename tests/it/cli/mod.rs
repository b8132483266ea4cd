//! The command line (`src/cli`): exit codes by fault, and usage errors that name the flag.

mod exit_codes;
