//! A private PostgreSQL server for fault tests: its own data directory and
//! port, stopped and started by the test (a restart under load, an outage),
//! which the shared cluster of `DATABASE_URL` must never be.
//!
//! Uses the newest PostgreSQL server binaries under `/usr/lib/postgresql`
//! (the same ones `scripts/lib.sh` starts the suite's cluster with); as root
//! it runs them as the `postgres` user, since the server refuses root.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A PostgreSQL server owned by one test; stopped and removed on drop.
#[derive(Debug)]
pub struct PrivateServer {
    bindir: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
}

fn pg_bindir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries under /usr/lib/postgresql")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|d| d.join("postgres").exists())
        .collect();
    dirs.sort_by_key(|d| {
        d.parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop().expect("a PostgreSQL server installation")
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl PrivateServer {
    /// initdb a fresh cluster (trust auth, role `ordertrail`, database
    /// `ordertrail`) and start it on a free port.
    pub fn start() -> Self {
        let dir =
            std::env::temp_dir().join(format!("ordertrail-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("create the data directory");
        let server = Self {
            bindir: pg_bindir(),
            dir,
            port: free_port(),
            as_postgres: is_root(),
        };
        if server.as_postgres {
            run(Command::new("chown").arg("postgres:").arg(&server.dir));
        }
        run(server.command("initdb").arg("-D").arg(&server.dir).args([
            "-U",
            "ordertrail",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]));
        server.start_again();
        run(Command::new(server.bindir.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &server.port.to_string()])
            .args(["-U", "ordertrail", "-d", "postgres", "-qc"])
            .arg("CREATE DATABASE ordertrail"));
        server
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bindir.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    /// The URL of its `ordertrail` database.
    pub fn url(&self) -> String {
        format!("postgres://ordertrail@127.0.0.1:{}/ordertrail", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// Start the (stopped) server again on the same port and data.
    pub fn start_again(&self) {
        let log = self.dir.join("server.log");
        run(self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.dir)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-o"])
            .arg(format!(
                "-p {} -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
                self.port
            ))
            .arg("start"));
    }

    /// Stop the server: `fast` ends every session with `57P01` (an
    /// administrator shutdown), as a restart under load does.
    pub fn stop(&self) {
        run(self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.dir)
            .args(["-m", "fast", "-w", "stop"]));
    }

    /// Stop, then start again.
    pub fn restart(&self) {
        self.stop();
        self.start_again();
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.dir)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(command: &mut Command) {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
