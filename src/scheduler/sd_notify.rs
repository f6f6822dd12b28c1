//! The systemd notify protocol, so that `tally schedule` runs as a `Type=notify`
//! service: `READY=1` once it is scheduling, `WATCHDOG=1` at half the watchdog
//! period, `STOPPING=1` on shutdown, and `STATUS=...` lines for `systemctl status`.
//!
//! The protocol is one datagram of `KEY=VALUE` lines sent to the unix socket named by
//! `NOTIFY_SOCKET`: a path, or an abstract-namespace name when it starts with `@`.
//! Without `NOTIFY_SOCKET` (not under systemd) every call is a no-op. Written by hand
//! on std's `UnixDatagram`: it is a few lines and needs no crate.
//!
//! This module reads the environment only in [`Notifier::from_env`] and
//! [`watchdog_interval`]; everything else takes its inputs as arguments.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// One notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State<'a> {
    /// Start-up is finished.
    Ready,
    /// The service is shutting down.
    Stopping,
    /// Still alive: resets the watchdog timer.
    Watchdog,
    /// Free text shown by `systemctl status`; a newline would start another
    /// assignment, so newlines are sent as spaces.
    Status(&'a str),
}

impl State<'_> {
    fn line(&self) -> String {
        match self {
            State::Ready => "READY=1".to_owned(),
            State::Stopping => "STOPPING=1".to_owned(),
            State::Watchdog => "WATCHDOG=1".to_owned(),
            State::Status(text) => format!("STATUS={}", text.replace(['\n', '\r'], " ")),
        }
    }
}

/// Where notifications go.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Path(PathBuf),
    /// The name without its leading `@`.
    Abstract(Vec<u8>),
}

/// Sends notifications to systemd, or nowhere when not run by systemd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notifier {
    target: Option<Target>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET`.
    pub fn from_env() -> Self {
        Self::from_socket(std::env::var_os("NOTIFY_SOCKET").as_deref())
    }

    /// From the value `NOTIFY_SOCKET` would have; `None` or empty disables it.
    pub fn from_socket(value: Option<&OsStr>) -> Self {
        use std::os::unix::ffi::OsStrExt;
        let target = match value {
            None => None,
            Some(value) if value.is_empty() => None,
            Some(value) => match value.as_bytes().strip_prefix(b"@") {
                Some(name) => Some(Target::Abstract(name.to_vec())),
                None => Some(Target::Path(PathBuf::from(OsString::from(value)))),
            },
        };
        Self { target }
    }

    /// A notifier that sends nothing.
    pub fn disabled() -> Self {
        Self { target: None }
    }

    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends the states as one datagram. A no-op when disabled.
    pub fn notify(&self, states: &[State<'_>]) -> io::Result<()> {
        let Some(target) = &self.target else {
            return Ok(());
        };
        let mut message = String::new();
        for state in states {
            message.push_str(&state.line());
            message.push('\n');
        }
        let socket = UnixDatagram::unbound()?;
        match target {
            Target::Path(path) => socket.send_to(message.as_bytes(), path)?,
            Target::Abstract(name) => send_to_abstract(&socket, name, message.as_bytes())?,
        };
        Ok(())
    }

    /// Like [`Notifier::notify`], but a failure is only logged: losing a status line
    /// must never stop the service.
    pub fn notify_or_log(&self, states: &[State<'_>]) {
        if let Err(error) = self.notify(states) {
            tracing::warn!(%error, "cannot notify systemd");
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn send_to_abstract(socket: &UnixDatagram, name: &[u8], message: &[u8]) -> io::Result<usize> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    socket.send_to_addr(message, &address)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn send_to_abstract(_socket: &UnixDatagram, _name: &[u8], _message: &[u8]) -> io::Result<usize> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract unix sockets exist only on Linux",
    ))
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, as systemd advises, or
/// `None` when the watchdog is off or meant for another process (`WATCHDOG_PID`).
pub fn watchdog_interval() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    watchdog_interval_from(usec.as_deref(), pid.as_deref(), std::process::id())
}

/// [`watchdog_interval`] on given values.
pub fn watchdog_interval_from(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(own_pid) {
            return None;
        }
    }
    let usec: u64 = usec?.trim().parse().ok()?;
    if usec == 0 {
        return None;
    }
    Some(Duration::from_micros(usec / 2))
}

/// Tells systemd the service is ready, keeps the watchdog fed until `shutdown` is
/// cancelled, then says it is stopping. Run it beside the scheduling loop, on the same
/// runtime, so that a runtime stuck on blocking work also stops the pings and systemd
/// restarts the service.
pub async fn supervise(notifier: &Notifier, watchdog: Option<Duration>, status: &str, shutdown: CancellationToken) {
    notifier.notify_or_log(&[State::Ready, State::Status(status)]);
    match watchdog {
        None => shutdown.cancelled().await,
        Some(period) => {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = ticks.tick() => notifier.notify_or_log(&[State::Watchdog]),
                }
            }
        }
    }
    notifier.notify_or_log(&[State::Stopping, State::Status("stopping")]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(socket: &UnixDatagram) -> Vec<String> {
        socket.set_nonblocking(true).expect("non-blocking");
        let mut out = Vec::new();
        let mut buffer = [0u8; 4096];
        while let Ok(length) = socket.recv(&mut buffer) {
            out.push(String::from_utf8_lossy(&buffer[..length]).into_owned());
        }
        out
    }

    #[test]
    fn states_reach_a_path_socket_as_one_datagram_of_lines() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notify.sock");
        let systemd = UnixDatagram::bind(&path).expect("bind");
        let notifier = Notifier::from_socket(Some(path.as_os_str()));

        notifier
            .notify(&[State::Ready, State::Status("2 jobs\nscheduled")])
            .expect("sent");

        assert_eq!(received(&systemd), vec!["READY=1\nSTATUS=2 jobs scheduled\n"]);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_at_sign_names_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("tally-test-{}-{}", std::process::id(), line!());
        let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("name");
        let systemd = UnixDatagram::bind_addr(&address).expect("bind abstract");
        let value = OsString::from(format!("@{name}"));
        let notifier = Notifier::from_socket(Some(&value));

        notifier.notify(&[State::Watchdog]).expect("sent");

        assert_eq!(received(&systemd), vec!["WATCHDOG=1\n"]);
    }

    #[test]
    fn without_notify_socket_nothing_is_sent_and_nothing_fails() {
        for notifier in [
            Notifier::from_socket(None),
            Notifier::from_socket(Some(OsStr::new(""))),
            Notifier::disabled(),
        ] {
            assert!(!notifier.is_enabled());
            assert!(notifier.notify(&[State::Ready]).is_ok());
        }
    }

    #[test]
    fn a_vanished_socket_is_an_error_for_notify_and_a_log_line_for_notify_or_log() {
        let dir = tempfile::tempdir().expect("temp dir");
        let notifier = Notifier::from_socket(Some(dir.path().join("gone.sock").as_os_str()));
        assert!(notifier.notify(&[State::Ready]).is_err());
        notifier.notify_or_log(&[State::Ready]);
    }

    #[test]
    fn the_watchdog_interval_is_half_the_period_and_only_for_this_process() {
        let table: &[(Option<&str>, Option<&str>, Option<Duration>)] = &[
            (None, None, None),
            (Some("30000000"), None, Some(Duration::from_secs(15))),
            (Some("30000000"), Some("42"), Some(Duration::from_secs(15))),
            (Some("30000000"), Some("43"), None),
            (Some("0"), None, None),
            (Some("soon"), None, None),
        ];
        for (usec, pid, expected) in table {
            assert_eq!(watchdog_interval_from(*usec, *pid, 42), *expected, "{usec:?} {pid:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn supervise_says_ready_feeds_the_watchdog_and_says_stopping() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notify.sock");
        let systemd = UnixDatagram::bind(&path).expect("bind");
        let notifier = Notifier::from_socket(Some(path.as_os_str()));
        let shutdown = CancellationToken::new();
        let stopper = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(3_500)).await;
            stopper.cancel();
        });

        supervise(&notifier, Some(Duration::from_secs(1)), "scheduling", shutdown).await;

        assert_eq!(
            received(&systemd),
            vec![
                "READY=1\nSTATUS=scheduling\n",
                "WATCHDOG=1\n",
                "WATCHDOG=1\n",
                "WATCHDOG=1\n",
                "STOPPING=1\nSTATUS=stopping\n",
            ]
        );
    }
}
