//! The shared groups give a binary's `--help` its uniform shape, and
//! `help_problems` (which every crate's binary test uses) notices a binary
//! that leaves a group out or shows it in another order.

use clap::{CommandFactory, Parser};
use ordertrail_platform::process::{DatabaseArgs, LogArgs, ServiceArgs, heading, help_problems};

/// Publishes something for the test.
///
/// A longer description of what the process does and how to run it.
#[derive(Debug, Parser)]
#[command(name = "sample", version)]
struct Sample {
    #[command(flatten)]
    service: ServiceArgs,
    /// The binary's own option.
    #[arg(
        long,
        env = "SAMPLE_SIZE",
        default_value_t = 3,
        help_heading = "Sample"
    )]
    sample_size: u32,
}

/// A database-only tool.
///
/// Without Kafka.
#[derive(Debug, Parser)]
#[command(name = "tool")]
struct Tool {
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    database: DatabaseArgs,
}

fn long_help<C: CommandFactory>() -> String {
    C::command().render_long_help().to_string()
}

#[test]
fn the_shared_groups_read_the_same_way_in_every_binary() {
    let help = long_help::<Sample>();
    assert_eq!(
        help_problems(&help, heading::SERVICE),
        Vec::<String>::new(),
        "{help}"
    );
    // The binary's own options come after the shared groups.
    let own = help.find("\nSample:\n").expect("own heading");
    let logging = help.find("\nLogging:\n").expect("logging heading");
    assert!(own > logging, "{help}");
    assert!(
        help.contains("[env: DATABASE_URL]"),
        "URL value hidden: {help}"
    );
}

#[test]
fn a_group_left_out_or_out_of_order_is_reported() {
    let help = long_help::<Sample>();
    let problems = help_problems(&help, &[heading::DATABASE, heading::LOGGING]);
    assert!(
        problems.contains(&"unexpected group Kafka".to_owned()),
        "{problems:?}"
    );

    let tool = long_help::<Tool>();
    let problems = help_problems(
        &tool,
        &[heading::DATABASE, heading::LOGGING, heading::METRICS],
    );
    assert!(
        problems.contains(&"group Logging out of order".to_owned()),
        "{problems:?}"
    );
    assert!(
        problems.contains(&"no Metrics group".to_owned()),
        "{problems:?}"
    );
}

#[test]
fn shared_settings_parse_from_flags_after_the_defaults() {
    let parsed = Sample::try_parse_from([
        "sample",
        "--database-url",
        "postgres://x@h/db",
        "--database-pool-size",
        "7",
        "--kafka-brokers",
        "k:9092",
        "--log-format",
        "JSON",
    ])
    .expect("parse");
    assert_eq!(
        parsed.service.database.url().expect("url"),
        "postgres://x@h/db"
    );
    assert_eq!(parsed.service.database.pool_size(16), 7);
    assert_eq!(parsed.service.kafka.brokers().expect("brokers"), "k:9092");
    assert_eq!(
        parsed.service.log.log_format,
        ordertrail_platform::process::LogFormat::Json
    );
    assert_eq!(parsed.sample_size, 3);
}
