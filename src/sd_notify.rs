//! systemd's notify protocol without libsystemd: one datagram per message to the socket named
//! in `$NOTIFY_SOCKET` (a path, or an abstract name written with a leading '@').
//! `Type=notify` units wait for `READY=1`; with `WatchdogSec=` systemd expects `WATCHDOG=1`
//! at least every `$WATCHDOG_USEC` and restarts the service otherwise.
//! Outside systemd (no `$NOTIFY_SOCKET`) every call is a no-op.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where messages go, read once from the environment.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`; None outside systemd or when the variable cannot be used
    /// (logged: a unit with `Type=notify` would otherwise time out without a hint).
    pub fn from_env() -> Option<Notifier> {
        let name = std::env::var_os("NOTIFY_SOCKET")?;
        let name = name.to_str().map(str::to_owned);
        match name.as_deref().map(Notifier::connect) {
            Some(Ok(n)) => Some(n),
            Some(Err(e)) => {
                log::warn!("event=sd_notify_unavailable error={e:?}");
                None
            }
            None => {
                log::warn!("event=sd_notify_unavailable error=\"NOTIFY_SOCKET is not UTF-8\"");
                None
            }
        }
    }

    pub fn connect(name: &str) -> Result<Notifier, String> {
        let addr = if let Some(abstract_name) = name.strip_prefix('@') {
            abstract_addr(abstract_name.as_bytes())?
        } else if name.starts_with('/') {
            SocketAddr::from_pathname(name).map_err(|e| format!("NOTIFY_SOCKET {name:?}: {e}"))?
        } else {
            return Err(format!("NOTIFY_SOCKET {name:?}: expected an absolute path or an @abstract name"));
        };
        let socket = UnixDatagram::unbound().map_err(|e| format!("NOTIFY_SOCKET: cannot create a socket: {e}"))?;
        // A full receive queue must never stall the executor.
        socket.set_nonblocking(true).map_err(|e| format!("NOTIFY_SOCKET: {e}"))?;
        Ok(Notifier { socket, addr })
    }

    /// Send one message (`READY=1`, `WATCHDOG=1`, `STOPPING=1`, `STATUS=…`, newline-separated).
    pub fn send(&self, message: &str) -> Result<(), String> {
        self.socket.send_to_addr(message.as_bytes(), &self.addr).map(|_| ()).map_err(|e| format!("sd_notify {message:?}: {e}"))
    }

    /// Send and log failures at debug level (systemd may have gone away; not worth more).
    pub fn notify(&self, message: &str) {
        if let Err(e) = self.send(message) {
            log::debug!("event=sd_notify_failed error={e:?}");
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_addr(name: &[u8]) -> Result<SocketAddr, String> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name).map_err(|e| format!("NOTIFY_SOCKET @{}: {e}", String::from_utf8_lossy(name)))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_addr(name: &[u8]) -> Result<SocketAddr, String> {
    Err(format!("NOTIFY_SOCKET @{}: abstract sockets exist only on Linux", String::from_utf8_lossy(name)))
}

/// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC` (systemd's advice), when the
/// watchdog is on and meant for this process (`$WATCHDOG_PID`, when set, is our pid).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim().parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2).max(Duration::from_millis(10)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("meshd-sdnotify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let receiver = UnixDatagram::bind(&path).unwrap();
        receiver.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let n = Notifier::connect(path.to_str().unwrap()).unwrap();
        n.send("READY=1\nSTATUS=serving").unwrap();
        let mut buf = [0u8; 64];
        let len = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=serving");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn messages_reach_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("meshd-test-{}", std::process::id());
        let receiver = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
        receiver.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        Notifier::connect(&format!("@{name}")).unwrap().send("WATCHDOG=1").unwrap();
        let mut buf = [0u8; 16];
        let len = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
    }

    #[test]
    fn relative_names_are_refused() {
        assert!(Notifier::connect("notify.sock").unwrap_err().contains("absolute path"));
    }
}
