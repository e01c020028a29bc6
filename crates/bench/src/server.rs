//! The server under test: a `ration serve` child process, and what `/proc` says about it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The Management API admin the server is bootstrapped with (never a real secret: the data dir is
/// a fresh temporary directory).
pub const ADMIN_ID: &str = "ration-bench-admin";
pub const ADMIN_SECRET: &str = "ration-bench-admin-secret-0123456789abcdef";

/// A server started on the loopback interface.
pub struct Server {
    child: Child,
    pid: u32,
    pub port: u16,
    /// From spawn to the `listening on` line.
    pub startup: Duration,
    log: PathBuf,
}

impl Server {
    /// Starts `bin serve` on `data_dir`, on `port` (0: any free port), and waits until it listens.
    pub async fn start(bin: &Path, data_dir: &Path, port: u16) -> Result<Server> {
        let mut command = Command::new(bin);
        command
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data_dir)
            .env("RATION_BOOTSTRAP_CLIENT_ID", ADMIN_ID)
            .env("RATION_BOOTSTRAP_CLIENT_SECRET", ADMIN_SECRET)
            // Warnings and errors only: request logging would measure the logger.
            .env("RATION_LOG", std::env::var("RATION_LOG").unwrap_or_else(|_| "warn".into()));
        Server::spawn(command, &data_dir.with_extension("log")).await.with_context(|| {
            format!("cannot start {} (build it with `cargo build --release -p ration`)", bin.display())
        })
    }

    /// Starts this benchmark's own bare token handler (see `floor.rs`) with `clients` clients,
    /// logging to `log`.
    pub async fn start_floor(log: &Path, clients: usize) -> Result<Server> {
        let mut command = Command::new(std::env::current_exe()?);
        command.arg("--serve-floor").arg("--floor-clients").arg(clients.to_string());
        Server::spawn(command, log).await.context("cannot start the floor server")
    }

    /// Spawns `command` and waits for its `listening on http://127.0.0.1:<port>` line.
    async fn spawn(mut command: Command, log: &Path) -> Result<Server> {
        let log = log.to_owned();
        let log_file = std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let started = Instant::now();
        let mut child =
            command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log_file).kill_on_drop(true).spawn()?;
        let pid = child.id().ok_or_else(|| anyhow!("the server exited at once"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout pipe"))?;
        let mut lines = BufReader::new(stdout).lines();
        let wait_for_port = async {
            while let Some(line) = lines.next_line().await? {
                if let Some(rest) = line.strip_prefix("listening on http://127.0.0.1:") {
                    return rest.trim().parse::<u16>().map(Some).context("unreadable port in the listening line");
                }
            }
            Ok::<_, anyhow::Error>(None)
        };
        let found = tokio::time::timeout(Duration::from_secs(60), wait_for_port).await;
        let startup = started.elapsed();
        let port = match found {
            Ok(Ok(Some(port))) => port,
            Ok(Ok(None)) => bail!("the server exited before listening; its log:\n{}", tail(&log)),
            Ok(Err(e)) => return Err(e.context(format!("reading the server's stdout; its log:\n{}", tail(&log)))),
            Err(_) => bail!("the server did not print `listening on` within 60 s; its log:\n{}", tail(&log)),
        };
        // Keep draining stdout so the server can never block on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Server { child, pid, port, startup, log })
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Resident set size now, in bytes (`VmRSS`).
    pub fn rss(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .context("cannot read the server's /proc status (is this Linux, is it still running?)")?;
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .ok_or_else(|| anyhow!("no VmRSS in /proc/{}/status", self.pid))?;
        Ok(kib * 1024)
    }

    /// CPU time used so far by every thread, user + system.
    pub fn cpu(&self) -> Result<Duration> {
        cpu_of(&format!("/proc/{}/stat", self.pid))
    }

    /// CPU time used so far by the threads that run SQLite (sqlx's `sqlx-sqlite-worker-N`, one per
    /// connection): under load, the event log's background indexing. Threads that ended are not
    /// counted; the pool keeps its connections.
    pub fn sqlite_cpu(&self) -> Result<Duration> {
        let tasks = format!("/proc/{}/task", self.pid);
        let mut total = Duration::ZERO;
        for task in std::fs::read_dir(&tasks).with_context(|| format!("cannot read {tasks}"))? {
            let path = task?.path();
            // A thread may end between the listing and the reads: it is skipped.
            let Ok(name) = std::fs::read_to_string(path.join("comm")) else { continue };
            if name.starts_with("sqlx-sqlite") {
                total += cpu_of(&path.join("stat").to_string_lossy()).unwrap_or_default();
            }
        }
        Ok(total)
    }

    /// The server's log (stderr), last lines, for error messages.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }

    /// SIGTERM (graceful: the SQLite store is closed cleanly, so a restart on the same data dir
    /// measures a normal start), then SIGKILL after 10 s.
    pub async fn stop(mut self) -> Result<()> {
        let pid = libc::pid_t::try_from(self.pid).context("pid out of range")?;
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
        unsafe { libc::kill(pid, libc::SIGTERM) };
        match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
            Ok(status) => {
                status.context("waiting for the server")?;
            }
            Err(_) => {
                eprintln!("warning: the server did not stop within 10 s of SIGTERM; killing it");
                self.child.kill().await.context("killing the server")?;
            }
        }
        Ok(())
    }
}

/// utime + stime of a `/proc/<pid>/stat` file.
pub fn cpu_of(stat_path: &str) -> Result<Duration> {
    let stat = std::fs::read_to_string(stat_path).with_context(|| format!("cannot read {stat_path}"))?;
    // The command name (field 2) may contain spaces; fields after it are plain numbers.
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).ok_or_else(|| anyhow!("unreadable {stat_path}"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime and stime are fields 14 and 15.
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).ok_or_else(|| anyhow!("{stat_path}"));
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_secs_f64(total as f64 / clock_ticks() as f64))
}

/// CPU time the whole machine spent not idle, all cores together (`/proc/stat`): the server, the
/// load generator, and whatever else runs (other builds), which makes a run noisy.
pub fn machine_busy() -> Result<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").context("cannot read /proc/stat")?;
    let cpu =
        stat.lines().next().and_then(|l| l.strip_prefix("cpu ")).ok_or_else(|| anyhow!("unreadable /proc/stat"))?;
    let ticks: Vec<u64> = cpu.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is already inside user).
    let busy: u64 = ticks.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    Ok(Duration::from_secs_f64(busy as f64 / clock_ticks() as f64))
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as u64 } else { 100 }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(20);
    if lines.is_empty() { "(empty)".into() } else { lines[start..].join("\n") }
}

#[cfg(test)]
mod tests {
    #[test]
    fn own_cpu_time_is_readable() {
        let t0 = super::cpu_of("/proc/self/stat").unwrap();
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        assert!(super::cpu_of("/proc/self/stat").unwrap() >= t0);
        assert!(super::machine_busy().unwrap() > std::time::Duration::ZERO);
    }
}
