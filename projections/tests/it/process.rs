//! The projector and reconcile binaries on the process skeleton: their
//! `--help` reads the same way as every other binary's.

use ordertrail_platform::process::{heading, help_problems, long_help_of};

#[test]
fn every_binary_help_shows_the_shared_groups_and_env_names() {
    let service = &[
        heading::DATABASE,
        heading::KAFKA,
        heading::METRICS,
        heading::LOGGING,
    ][..];
    for (binary, groups) in [
        (env!("CARGO_BIN_EXE_ordertrail-order-history"), service),
        (env!("CARGO_BIN_EXE_ordertrail-rider-etas"), service),
        (env!("CARGO_BIN_EXE_ordertrail-settlements"), service),
        (
            env!("CARGO_BIN_EXE_ordertrail-reconcile"),
            &[heading::DATABASE, heading::LOGGING][..],
        ),
    ] {
        let help = long_help_of(binary).expect("--help");
        assert_eq!(
            help_problems(&help, groups),
            Vec::<String>::new(),
            "{binary}:\n{help}"
        );
    }
}
