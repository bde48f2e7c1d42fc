//! Integration tests of the process skeleton against a real PostgreSQL
//! (testkit): the schema-version check and the migration policy, and the
//! shape of `--help` the shared argument groups give a binary.

mod help;
mod schema;
