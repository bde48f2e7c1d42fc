//! The API binaries on the process skeleton: `--help` reads the same way as
//! every other binary's (mint-token has no shared group but the same shape).

use ordertrail_platform::process::{binaries_help_problems, heading};

#[test]
fn every_binary_help_shows_the_shared_groups_and_env_names() {
    let problems = binaries_help_problems(&[
        (
            env!("CARGO_BIN_EXE_ordertrail-api"),
            &[heading::DATABASE, heading::METRICS, heading::LOGGING],
        ),
        (env!("CARGO_BIN_EXE_mint-token"), &[]),
    ]);
    assert_eq!(problems, Vec::<String>::new());
}
