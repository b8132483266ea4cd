//! The command line (`src/cli`): exit codes by fault, usage errors that name the flag, the
//! warehouse from its flag or the environment, and the budget commands; quiet ends on a
//! closed pipe, the same facts in every format of a listing, public listings that are the
//! API's, and the README's command table checked against the parser.

mod commands;
mod exit_codes;
mod formats;
mod output;
mod public_listings;
mod readme;
