//! The command line (`src/cli`): exit codes by fault, usage errors that name the flag, the
//! warehouse from its flag or the environment, the budget commands, every flag honoured or
//! refused (`flags`, `honoured`), numbers refused with their range (`numbers`), and the
//! completions and manual pages generated from the parser (`generated`).

mod commands;
mod exit_codes;
mod flags;
mod generated;
mod honoured;
mod numbers;
