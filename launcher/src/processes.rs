//! The platform as child processes (`ordertrail-local`): every service binary
//! started from one directory with its configuration in its environment,
//! restarted when it dies, and stopped with SIGTERM.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};

use crate::Mock;

/// One service process of the platform.
#[derive(Debug, Clone)]
pub struct Service {
    /// Name in the logs.
    pub name: &'static str,
    /// File name of its binary.
    pub binary: &'static str,
    /// Its environment (on top of the launcher's).
    pub env: Vec<(String, String)>,
}

/// The directory of the running executable: where `cargo build` puts every
/// binary of the workspace.
pub fn own_directory() -> Result<PathBuf> {
    std::env::current_exe()
        .context("locate own executable")?
        .parent()
        .map(Path::to_path_buf)
        .context("executable has no directory")
}

/// Running service processes: see [`Processes::spawn`].
#[derive(Debug)]
pub struct Processes {
    bin_dir: PathBuf,
    services: Vec<Service>,
    children: Vec<Child>,
}

impl Processes {
    /// Start `services` from `bin_dir` (every binary must be there).
    pub fn spawn(bin_dir: &Path, services: Vec<Service>) -> Result<Self> {
        for s in &services {
            let path = bin_dir.join(s.binary);
            if !path.exists() {
                bail!(
                    "{} is missing: build the workspace binaries first (scripts/run.sh does)",
                    path.display()
                );
            }
        }
        let children = services
            .iter()
            .map(|s| spawn(bin_dir, s))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            bin_dir: bin_dir.to_path_buf(),
            services,
            children,
        })
    }

    /// Until `shutdown` completes: restart a process that exits, and (fault
    /// drills) while `broker_down_file` exists keep the brokers of `mock` down.
    /// Then stop every process: SIGTERM, SIGKILL after 10 s.
    pub async fn supervise(
        mut self,
        shutdown: impl Future<Output = ()>,
        mock: Option<&Mock>,
        broker_down_file: Option<&Path>,
    ) -> Result<()> {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut broker_down = false;
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = tick.tick() => {
                    if let (Some(mock), Some(file)) = (mock, broker_down_file) {
                        let down = file.exists();
                        if down != broker_down {
                            broker_down = down;
                            tracing::warn!(down, "fault drill: embedded broker {}", if down { "down" } else { "up" });
                            let _ = crate::mock::set_down(mock, crate::mock::MOCK_BROKERS, down);
                        }
                    }
                    for (s, child) in self.services.iter().zip(self.children.iter_mut()) {
                        if let Some(status) = child.try_wait().context("poll child")? {
                            tracing::error!(service = s.name, %status, "service exited; restarting in 1 s");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            *child = spawn(&self.bin_dir, s)?;
                        }
                    }
                }
            }
        }
        self.stop().await;
        Ok(())
    }

    /// SIGTERM every process (in order) and wait 10 s for each; kill the rest.
    pub async fn stop(mut self) {
        for (s, child) in self.services.iter().zip(self.children.iter_mut()) {
            if let Some(pid) = child.id() {
                // SIGTERM for a graceful stop; kill_on_drop is the backstop.
                let _ = std::process::Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .status();
            }
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                tracing::warn!(service = s.name, "did not stop in 10 s; killing");
                let _ = child.kill().await;
            }
        }
    }
}

fn spawn(bin_dir: &Path, s: &Service) -> Result<Child> {
    tracing::info!(service = s.name, "starting");
    Command::new(bin_dir.join(s.binary))
        .envs(s.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start {}", s.binary))
}
