//! The command line (`src/cli`): exit codes by fault, usage errors that name the flag, the
//! warehouse from its flag or the environment, and the budget commands; quiet ends on a
//! closed pipe, the same facts in every format of a listing, public listings that are the
//! API's, and the README's command table checked against the parser; every flag honoured or
//! refused (`flags`, `honoured`), numbers refused with their range (`numbers`), and the
//! completions and manual pages generated from the parser (`generated`).

mod commands;
mod exit_codes;
mod flags;
mod formats;
mod generated;
mod honoured;
mod numbers;
mod output;
mod public_listings;
mod readme;
