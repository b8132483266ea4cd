//! The command line (`src/cli`): exit codes by fault, usage errors that name the flag, the
//! warehouse from its flag or the environment, and the budget commands.

mod commands;
mod exit_codes;
