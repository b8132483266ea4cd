//! Who is at fault, and what that means to a caller: the exit code of `outreach` and the
//! HTTP status of the API, from one classification (`Fault`). Errors that are the command
//! line's (usage) and the code's own (internal) have their own variants.

use axum::http::StatusCode;
use outreach_warehouse::api::ApiError;
use outreach_warehouse::{Error, Fault};

#[test]
fn each_fault_has_its_documented_exit_code_and_usage_shares_claps_2() {
    // README, "Exit codes": clap exits 2 on its own usage errors, so ours do too.
    assert_eq!(Fault::Usage.exit_code(), 2);
    assert_eq!(Fault::BadInput.exit_code(), 2);
    assert_eq!(Fault::Busy.exit_code(), 3);
    assert_eq!(Fault::BudgetExhausted.exit_code(), 4);
    assert_eq!(Fault::Internal.exit_code(), 1);
}

#[test]
fn a_usage_error_is_the_command_lines_fault_and_an_internal_one_is_a_500() {
    let usage = Error::Usage("--cell x: write COLUMN=DOMAIN".into());
    assert_eq!(usage.fault(), Fault::Usage);
    assert_eq!(usage.fault().exit_code(), 2);
    assert_eq!(usage.to_string(), "--cell x: write COLUMN=DOMAIN");
    assert_eq!(ApiError::from(usage).status(), StatusCode::BAD_REQUEST);

    let internal = Error::Internal("the report template failed: no such template".into());
    assert_eq!(internal.fault(), Fault::Internal);
    assert_eq!(internal.fault().exit_code(), 1);
    assert!(internal.to_string().starts_with("internal: "));
    let api = ApiError::from(internal);
    assert_eq!(api.status(), StatusCode::INTERNAL_SERVER_ERROR);
    // The client sees no internals.
    assert_eq!(api.to_string(), "internal error");
}
