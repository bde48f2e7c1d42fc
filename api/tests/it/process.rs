//! The API binaries on the process skeleton: `--help` reads the same way as
//! every other binary's (mint-token has no shared group but the same shape).

use ordertrail_platform::process::{heading, help_problems, long_help_of};

#[test]
fn every_binary_help_shows_the_shared_groups_and_env_names() {
    for (binary, groups) in [
        (
            env!("CARGO_BIN_EXE_ordertrail-api"),
            &[heading::DATABASE, heading::METRICS, heading::LOGGING][..],
        ),
        (env!("CARGO_BIN_EXE_mint-token"), &[][..]),
    ] {
        let help = long_help_of(binary).expect("--help");
        assert_eq!(
            help_problems(&help, groups),
            Vec::<String>::new(),
            "{binary}:\n{help}"
        );
    }
}
