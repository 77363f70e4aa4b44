//! A local Redis for `meshd demo --shannon` (docs/simulators.md "Shannon demo"): use the one
//! that answers at a URL (by default `redis://127.0.0.1:6379`), else start Debian's
//! `redis-server` on a free loopback port for the demo's lifetime, else say how to get one. The
//! Shannon hand-off writes the mined relays into Redis streams (shannon-relay.md §5); a Redis is
//! real infrastructure, so the demo never fakes one.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::supplier::resp::{Connection, RedisTarget, Reply};

/// Where a demo looks first when no `--redis` is given.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

/// How long a started `redis-server` may take to answer PING.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A Redis the demo uses: found at a URL, or a `redis-server` child stopped on drop.
pub struct LocalRedis {
    pub url: String,
    /// How it was obtained, for the demo's output.
    pub origin: String,
    child: Option<Child>,
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// True when a Redis at `url` answers PING with PONG within `timeout` (AUTH/SELECT as the URL says).
pub fn answers(url: &str, timeout: Duration) -> bool {
    let Ok(target) = RedisTarget::parse(url) else { return false };
    let Ok(mut conn) = Connection::connect(&target, timeout) else { return false };
    matches!(conn.command(&[b"PING"]), Ok(Reply::Status(s)) if s == "PONG")
}

/// An explicit `--redis URL` must answer; otherwise the default URL if it answers, else a
/// `redis-server` child on a free loopback port (persistence off, files in `dir`).
pub fn obtain(explicit: Option<&str>, dir: &Path) -> Result<LocalRedis, String> {
    if let Some(url) = explicit {
        RedisTarget::parse(url).map_err(|e| format!("--redis {url:?}: {e}"))?;
        if !answers(url, Duration::from_secs(2)) {
            return Err(format!("--redis {url}: no Redis answered PING there"));
        }
        return Ok(LocalRedis { url: url.to_string(), origin: "given with --redis".into(), child: None });
    }
    if answers(DEFAULT_URL, Duration::from_millis(500)) {
        return Ok(LocalRedis { url: DEFAULT_URL.into(), origin: "already running".into(), child: None });
    }
    start_server(dir)
}

/// Start `redis-server` on a free loopback port; a clear error when the binary is missing.
pub fn start_server(dir: &Path) -> Result<LocalRedis, String> {
    let port = crate::demo::free_port()?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let spawned = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let child = match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "no Redis: nothing answers at {DEFAULT_URL} and `redis-server` is not installed.\n\
                 The Shannon demo hands mined relays to Redis streams, as pocket-relay-miner expects.\n\
                 Install one (Debian/Ubuntu: `sudo apt-get install redis-server`), or start one and pass\n\
                 `--redis redis://127.0.0.1:PORT`."
            ))
        }
        Err(e) => return Err(format!("cannot start redis-server: {e}")),
    };
    let mut redis = LocalRedis { url: format!("redis://127.0.0.1:{port}"), origin: "started redis-server for this demo".into(), child: Some(child) };
    let deadline = Instant::now() + START_TIMEOUT;
    while !answers(&redis.url, Duration::from_millis(500)) {
        if let Some(status) = redis.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            return Err(format!("redis-server exited at start ({status}) on 127.0.0.1:{port}"));
        }
        if Instant::now() > deadline {
            return Err(format!("redis-server did not answer on 127.0.0.1:{port} within {} s", START_TIMEOUT.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(redis)
}
