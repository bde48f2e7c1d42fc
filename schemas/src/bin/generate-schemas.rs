//! Writes the JSON Schema documents of the wire contract to `schemas/json/`
//! (or to the folder given as the first argument).

use std::path::PathBuf;
use std::process::ExitCode;

use ordertrail_schemas::json_schema;

fn main() -> ExitCode {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(json_schema::schema_dir);
    for (path, doc) in json_schema::documents() {
        let target = dir.join(&path);
        let written = target
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&target, json_schema::render(&doc)));
        if let Err(e) = written {
            eprintln!("cannot write {}: {e}", target.display());
            return ExitCode::FAILURE;
        }
        println!("{}", target.display());
    }
    ExitCode::SUCCESS
}
