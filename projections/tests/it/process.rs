//! The projector and reconcile binaries on the process skeleton: their
//! `--help` reads the same way as every other binary's.

use ordertrail_platform::process::{binaries_help_problems, heading};

#[test]
fn every_binary_help_shows_the_shared_groups_and_env_names() {
    let problems = binaries_help_problems(&[
        (
            env!("CARGO_BIN_EXE_ordertrail-order-history"),
            heading::SERVICE,
        ),
        (
            env!("CARGO_BIN_EXE_ordertrail-rider-etas"),
            heading::SERVICE,
        ),
        (
            env!("CARGO_BIN_EXE_ordertrail-settlements"),
            heading::SERVICE,
        ),
        (env!("CARGO_BIN_EXE_ordertrail-reconcile"), heading::TOOL),
    ]);
    assert_eq!(problems, Vec::<String>::new());
}
