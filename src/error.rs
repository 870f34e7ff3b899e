//! classtrack's error type.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// What went wrong, and what to do about it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// `detach_class` of a class this tracker does not track.
    NotTracked {
        /// The class name.
        class: String,
    },
    /// `track_object` of an object this tracker already tracks.
    AlreadyTracked {
        /// The instance's name.
        name: String,
        /// The id it is tracked under.
        id: u64,
    },
    /// A periodic snapshot interval of zero.
    InvalidInterval {
        /// The interval given.
        interval: Duration,
    },
    /// Reading or writing a stats file failed.
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A stats file that is not a complete classtrack stats dump.
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Writing a report (flamegraph, profile) failed.
    Report(String),
    /// A [`Retention`](crate::Retention) limit too small to keep a series.
    InvalidRetention {
        /// The setting.
        setting: &'static str,
        /// The value given.
        value: usize,
        /// The smallest value allowed.
        minimum: usize,
    },
    /// A subscription capacity of zero or above the maximum.
    InvalidCapacity {
        /// The capacity given.
        capacity: usize,
        /// The largest capacity allowed.
        maximum: usize,
    },
    /// Periodic snapshots failed: a snapshot panicked (the thread went on) or the thread
    /// stopped.
    PeriodicSnapshots {
        /// How many snapshots failed.
        failures: u64,
        /// What the last failure said.
        last: String,
    },
    /// A background thread could not be started.
    Spawn {
        /// The thread's name.
        thread: &'static str,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A stats file written by a newer classtrack.
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Its format version.
        found: u32,
        /// The newest version this classtrack reads.
        supported: u32,
    },
    /// A stats file whose format version no classtrack writes: 0, or beyond `u32::MAX`.
    InvalidVersion {
        /// The file.
        path: PathBuf,
        /// Its format version.
        found: u64,
    },
    /// A stats path that names something other than a regular file: a directory, a FIFO, a
    /// device or a socket (which `Stats::load` refuses rather than wait on or read without end).
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it names instead, e.g. `"a FIFO"`.
        kind: &'static str,
    },
    /// Stats that cannot be written as a stats file that reads back equal (a time that is NaN
    /// or infinite, or breakdowns nested too deep); nothing was written.
    Unwritable {
        /// The file that was not written.
        path: PathBuf,
        /// Which value is at fault, and what to do.
        reason: String,
    },
    /// The HTTP server (feature `server`) could not listen on its address.
    Bind {
        /// The address.
        addr: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The HTTP server (feature `server`) was given an address that is not loopback without
    /// `ServerBuilder::allow_remote`.
    NotLoopback {
        /// The address.
        addr: std::net::SocketAddr,
    },
    /// A server setting (feature `server`) out of range.
    InvalidServerSetting {
        /// The setting.
        setting: &'static str,
        /// What is wrong, and what to give instead.
        reason: String,
    },
    /// `track_change` of a value that is not a live instance of this tracker: built while
    /// its class was not tracked, tracked by another tracker, or forgotten by `clear` or
    /// `detach_all`.
    InstanceNotTracked {
        /// The instance id, when the value was tracked at all.
        id: Option<u64>,
    },
    /// A [`DumpTrigger`](crate::DumpTrigger) or [`DumpOptions`](crate::DumpOptions) that
    /// cannot be watched (a limit of zero, a fraction outside (0, 1], no cgroup v2 limit).
    InvalidDumpTrigger {
        /// What is wrong, and what to do instead.
        reason: String,
    },
    /// A budget that cannot be set ([`set_budget`](crate::set_budget),
    /// [`set_budget_interval`](crate::set_budget_interval)).
    InvalidBudget {
        /// What is wrong, and what to do instead.
        reason: String,
    },
    /// Dumps of [`ClassTracker::dump_on`](crate::ClassTracker::dump_on) could not be written.
    Dumps {
        /// How many failed.
        failures: u64,
        /// What the last failure said.
        last: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotTracked { class } => write!(
                f,
                "class {class} is not tracked by this tracker: call track_class for it first, \
                 or check that it was not detached already"
            ),
            Error::AlreadyTracked { name, id } => write!(
                f,
                "{name} is already tracked by this tracker (instance {id}); track it once, or \
                 call track_object again after it is dropped"
            ),
            Error::InvalidInterval { interval } => write!(
                f,
                "periodic snapshot interval {interval:?} is zero: give an interval of at least \
                 one millisecond"
            ),
            Error::InvalidRetention {
                setting,
                value,
                minimum,
            } => write!(
                f,
                "retention {setting} = {value} is too small: give at least {minimum} (a \
                 downsampled series keeps its first, its newest and its largest point)"
            ),
            Error::InvalidCapacity { capacity, maximum } => write!(
                f,
                "subscription capacity {capacity} is out of range: give between 1 and \
                 {maximum} snapshots (a subscriber that falls behind loses snapshots, counted)"
            ),
            Error::InvalidDumpTrigger { reason } => {
                write!(f, "cannot watch for dumps: {reason}")
            }
            Error::Dumps { failures, last } => write!(
                f,
                "{failures} dump(s) could not be written, the last with: {last}; check that the \
                 directory is writable and has room"
            ),
            Error::PeriodicSnapshots { failures, last } => write!(
                f,
                "{failures} periodic snapshot(s) failed, the last with: {last}; a tracked \
                 object's Debug implementation may have panicked (fix it, or track the object \
                 without Debug), then start periodic snapshots again"
            ),
            Error::InvalidBudget { reason } => write!(f, "invalid budget: {reason}"),
            Error::Spawn { thread, source } => write!(
                f,
                "could not start the {thread} thread: {source}; the process may have reached \
                 its thread or memory limit"
            ),
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Corrupt { path, reason } => write!(
                f,
                "{} is not a complete classtrack stats file ({reason}); it may be truncated or \
                 not written by Stats::dump",
                path.display()
            ),
            Error::Report(reason) => write!(
                f,
                "could not write the report: {reason}; check that the output is writable"
            ),
            Error::UnsupportedVersion {
                path,
                found,
                supported,
            } => write!(
                f,
                "{} has stats format version {found}, newer than the version {supported} this \
                 classtrack reads: load it with a newer classtrack",
                path.display()
            ),
            Error::InvalidVersion { path, found } => write!(
                f,
                "{} has stats format version {found}, which no classtrack writes (versions \
                 run from 1 to {}): it was not written by Stats::dump, or was edited since; \
                 dump the stats again",
                path.display(),
                u32::MAX
            ),
            Error::NotAFile { path, kind } => write!(
                f,
                "{} is {kind}, not a regular file: pass the path of a file written by \
                 Stats::dump",
                path.display()
            ),
            Error::Unwritable { path, reason } => {
                write!(f, "{} was not written: {reason}", path.display())
            }
            Error::Bind { addr, source } => write!(
                f,
                "could not listen on {addr}: {source}; pick a free port (port 0 lets the \
                 system choose) or an address this machine has"
            ),
            Error::NotLoopback { addr } => write!(
                f,
                "{addr} is not a loopback address: the server shows the program's memory, so \
                 binding elsewhere must be explicit: call ServerBuilder::allow_remote(true), \
                 and set a bearer token"
            ),
            Error::InvalidServerSetting { setting, reason } => {
                write!(f, "server setting {setting}: {reason}")
            }
            Error::InstanceNotTracked { id: Some(id) } => write!(
                f,
                "instance {id} is not tracked by this tracker (another tracker built it, or \
                 clear or detach_all forgot it): call track_change on the tracker that built \
                 it, before detaching"
            ),
            Error::InstanceNotTracked { id: None } => write!(
                f,
                "this value is not a tracked instance: its class was not tracked when it was \
                 built; call track_class before construct"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } | Error::Spawn { source, .. } | Error::Bind { source, .. } => {
                Some(source)
            }
            _ => None,
        }
    }
}

/// classtrack's result type.
pub type Result<T> = std::result::Result<T, Error>;
