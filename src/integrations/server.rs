//! A live HTTP endpoint (feature `server`): hyper's HTTP/1 server on a one-thread tokio
//! runtime, on a background thread of its own.
//!
//! | route | what |
//! |---|---|
//! | `/` | a live page: the process's heap now, its largest classes, their growth since the tracker's latest snapshot, leak suspects, hints with this server's address, links to the rest |
//! | `/report.html` | the HTML report of everything the tracker has gathered ([`Stats::html`](crate::Stats::html)), the last snapshot included |
//! | `/stats.json` | the tracker's stats as [`Stats::dump`](crate::Stats::dump) writes them: [`Stats::from_json`](crate::Stats::from_json) reads them, and the `classtrack` command takes the server's URL for a dump (`classtrack summary http://127.0.0.1:6060`) |
//! | `/metrics` | a fresh snapshot in the Prometheus text format: the series of [`crate::metrics`] |
//! | `/debug/pprof/heap` | a fresh snapshot's allocation sites as a gzipped pprof profile, live bytes (`inuse_space`) shown by default (what `go tool pprof`, Parca and Pyroscope agents fetch) |
//! | `/debug/pprof/allocs` | the same profile with bytes allocated (`alloc_space`) shown by default, as Go services serve it |
//! | `/snapshot.json` | a fresh snapshot as JSON; its `tracked` instances are those of the tracker's latest snapshot, taken at `tracked_time` |
//!
//! Every figure but `/snapshot.json`'s `tracked` and `/stats.json`'s history is read when the
//! request comes: fresh, not an interval old. Snapshots taken for the routes are not kept by
//! the tracker, nor sent to its subscribers.
//!
//! The profiles carry the process's mappings (on Linux), so `go tool pprof BINARY
//! http://HOST/debug/pprof/heap` symbolizes with the binary too, and a profiler symbolizing by
//! GNU build id finds it (see [`crate::report::pprof`]).
//!
//! **Safe to leave on.** The server binds a loopback address unless told otherwise
//! ([`ServerBuilder::allow_remote`]); with a [bearer token](ServerBuilder::bearer_token)
//! every route answers 401 to a request without it. A request must send its headers within
//! [`header_timeout`](ServerBuilder::header_timeout) (5 s) and be answered within
//! [`request_timeout`](ServerBuilder::request_timeout) (30 s), or its connection is closed;
//! a request head larger than 16 KiB is refused; at most
//! [`max_connections`](ServerBuilder::max_connections) (64) are open at once, further ones
//! are closed at once. Connections are not kept alive: one request each. A panic while
//! answering (a bug) ends that connection only. All of the server thread's memory is booked
//! as classtrack's overhead, never in a user's class.

use std::convert::Infallible;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use classtrack_shim::{ClassId, OverheadGuard};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::sync::{watch, Semaphore};

use crate::diff::{LeakSuspect, Moment, SiteSummary};
use crate::error::{Error, Result};
use crate::metrics::MetricsOptions;
use crate::report::format_bytes;
use crate::report::pprof::DefaultType;
use crate::snapshot::Snapshot;
use crate::stats::Stats;
use crate::tracker::{ClassTracker, Inner};

/// The largest request head (request line and headers) read, in bytes.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// Starts a server for `tracker` on `addr` with the default settings: see
/// [`ServerBuilder`]. The server stops when the returned handle is dropped.
///
/// ```no_run
/// let tracker = classtrack::ClassTracker::new();
/// let server = classtrack::serve(&tracker, "127.0.0.1:6060")?;
/// println!("curl http://{}/metrics", server.local_addr());
/// # Ok::<(), classtrack::Error>(())
/// ```
pub fn serve(tracker: &ClassTracker, addr: impl ToSocketAddrs) -> Result<ServerHandle> {
    let addr = resolve(addr)?;
    ServerBuilder::new(tracker).addr(addr).start()
}

fn resolve(addr: impl ToSocketAddrs) -> Result<SocketAddr> {
    let _g = OverheadGuard::new();
    let mut addrs = addr.to_socket_addrs().map_err(|source| Error::Bind {
        addr: "the address given".to_owned(),
        source,
    })?;
    addrs.next().ok_or_else(|| Error::Bind {
        addr: "the address given".to_owned(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "it resolved to no address",
        ),
    })
}

/// Settings of a server; [`start`](Self::start) starts it.
///
/// ```
/// use std::time::Duration;
///
/// let tracker = classtrack::ClassTracker::new();
/// let server = classtrack::ServerBuilder::new(&tracker)
///     .addr("127.0.0.1:0".parse().unwrap()) // port 0: the system picks a free one
///     .bearer_token("s3cret")
///     .header_timeout(Duration::from_secs(2))
///     .start()?;
/// let addr = server.local_addr();
/// drop(server); // stops it
/// # let _ = addr;
/// # Ok::<(), classtrack::Error>(())
/// ```
#[must_use = "a builder does nothing until `start` is called"]
pub struct ServerBuilder {
    inner: Arc<Inner>,
    addr: SocketAddr,
    allow_remote: bool,
    token: Option<String>,
    metrics: MetricsOptions,
    header_timeout: Duration,
    request_timeout: Duration,
    max_connections: usize,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("addr", &self.addr)
            .field("allow_remote", &self.allow_remote)
            .field("bearer_token", &self.token.as_ref().map(|_| "<set>"))
            .field("metrics", &self.metrics)
            .field("header_timeout", &self.header_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

impl ServerBuilder {
    /// A server for `tracker`'s snapshots, on `127.0.0.1:0` (a free port the system picks:
    /// see [`ServerHandle::local_addr`]).
    pub fn new(tracker: &ClassTracker) -> ServerBuilder {
        ServerBuilder {
            inner: tracker.inner().clone(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            allow_remote: false,
            token: None,
            metrics: MetricsOptions::new(),
            header_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_connections: 64,
        }
    }

    /// The address to listen on. An address that is not loopback needs
    /// [`allow_remote`](Self::allow_remote).
    pub fn addr(mut self, addr: SocketAddr) -> ServerBuilder {
        self.addr = addr;
        self
    }

    /// Allows listening on an address that is not loopback (such as `0.0.0.0`): anyone who
    /// can reach it can read the program's memory figures and allocation sites. Set a
    /// [`bearer_token`](Self::bearer_token) too.
    pub fn allow_remote(mut self, allow: bool) -> ServerBuilder {
        self.allow_remote = allow;
        self
    }

    /// Requires `Authorization: Bearer <token>` on every request; others get 401. The token
    /// must be 1 to 1024 visible ASCII characters.
    pub fn bearer_token(mut self, token: impl Into<String>) -> ServerBuilder {
        self.token = Some(token.into());
        self
    }

    /// What `/metrics` shows: see [`MetricsOptions`].
    pub fn metrics_options(mut self, options: MetricsOptions) -> ServerBuilder {
        self.metrics = options;
        self
    }

    /// How long a client may take to send a request's headers (5 s by default).
    pub fn header_timeout(mut self, timeout: Duration) -> ServerBuilder {
        self.header_timeout = timeout;
        self
    }

    /// How long a connection may stay open, its request read and its answer written (30 s by
    /// default).
    pub fn request_timeout(mut self, timeout: Duration) -> ServerBuilder {
        self.request_timeout = timeout;
        self
    }

    /// How many connections may be open at once (64 by default); further ones are closed as
    /// soon as they are accepted.
    pub fn max_connections(mut self, n: usize) -> ServerBuilder {
        self.max_connections = n;
        self
    }

    fn check(&self) -> Result<()> {
        let invalid = |setting, reason: &str| {
            Err(Error::InvalidServerSetting {
                setting,
                reason: reason.to_owned(),
            })
        };
        if !self.addr.ip().is_loopback() && !self.allow_remote {
            return Err(Error::NotLoopback { addr: self.addr });
        }
        if let Some(token) = &self.token {
            if token.is_empty()
                || token.len() > 1024
                || !token.bytes().all(|b| b.is_ascii_graphic())
            {
                return invalid(
                    "bearer_token",
                    "give 1 to 1024 visible ASCII characters (no spaces)",
                );
            }
        }
        if self.header_timeout.is_zero() {
            return invalid(
                "header_timeout",
                "zero would refuse every request: give at least 1 ms",
            );
        }
        if self.request_timeout.is_zero() {
            return invalid(
                "request_timeout",
                "zero would refuse every request: give at least 1 ms",
            );
        }
        if self.max_connections == 0 || self.max_connections > Semaphore::MAX_PERMITS {
            return invalid("max_connections", "give at least 1 (64 is the default)");
        }
        Ok(())
    }

    /// Binds the address and starts the server thread (`classtrack-server`). Errors:
    /// [`Error::NotLoopback`], [`Error::InvalidServerSetting`], [`Error::Bind`] (address in
    /// use, …), [`Error::Spawn`].
    pub fn start(self) -> Result<ServerHandle> {
        let _g = OverheadGuard::new();
        self.check()?;
        let bind_error = |source| Error::Bind {
            addr: self.addr.to_string(),
            source,
        };
        let listener = std::net::TcpListener::bind(self.addr).map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|source| Error::Spawn {
                thread: "classtrack-server",
                source,
            })?;
        let listener = {
            let _enter = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(bind_error)?
        };
        let (stop, stopped) = watch::channel(());
        let config = Arc::new(Config {
            inner: self.inner,
            local_addr,
            token: self.token,
            metrics: self.metrics,
            header_timeout: self.header_timeout,
            request_timeout: self.request_timeout,
        });
        let connections = Arc::new(Semaphore::new(self.max_connections));
        let thread = std::thread::Builder::new()
            .name("classtrack-server".to_owned())
            .spawn(move || {
                // Everything this thread allocates is classtrack's overhead.
                let _g = OverheadGuard::new();
                runtime.block_on(accept(listener, stopped, config, connections));
                // Dropping the runtime cancels the connections still open.
                drop(runtime);
            })
            .map_err(|source| Error::Spawn {
                thread: "classtrack-server",
                source,
            })?;
        Ok(ServerHandle {
            local_addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

/// A running server; dropping it stops the server (at once: connections still open are
/// closed) and waits for its thread.
#[derive(Debug)]
#[must_use = "the server stops when its handle is dropped"]
pub struct ServerHandle {
    local_addr: SocketAddr,
    stop: Option<watch::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// The address the server listens on (with the port the system picked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops the server; the same as dropping the handle.
    pub fn stop(self) {}
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        // Dropping the sender wakes the accept loop, which returns.
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // A panic on that thread was a bug already reported on stderr; nothing to add.
            let _ = thread.join();
        }
    }
}

struct Config {
    inner: Arc<Inner>,
    local_addr: SocketAddr,
    token: Option<String>,
    metrics: MetricsOptions,
    header_timeout: Duration,
    request_timeout: Duration,
}

async fn accept(
    listener: tokio::net::TcpListener,
    mut stopped: watch::Receiver<()>,
    config: Arc<Config>,
    connections: Arc<Semaphore>,
) {
    loop {
        let stream = tokio::select! {
            // Err: the handle was dropped.
            _ = stopped.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Out of file descriptors, or a connection reset before it was
                    // accepted: wait a little rather than spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let config = config.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = {
                let config = config.clone();
                service_fn(move |req| {
                    let config = config.clone();
                    async move { Ok::<_, Infallible>(respond(&config, &req)) }
                })
            };
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(config.header_timeout)
                .max_buf_size(MAX_REQUEST_HEAD)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            // An error is the client's (malformed request, reset, timeout): the connection
            // is closed, which is all there is to do.
            let _ = tokio::time::timeout(config.request_timeout, connection).await;
        });
    }
}

type Body = Full<Bytes>;

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn ok(content_type: &'static str, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Whether `req` carries `Authorization: Bearer <token>`, compared in constant time.
fn authorized(req: &Request<Incoming>, token: &str) -> bool {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return false;
    };
    let Some(given) = value.as_bytes().strip_prefix(b"Bearer ") else {
        return false;
    };
    given.len() == token.len()
        && given
            .iter()
            .zip(token.as_bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn respond(config: &Config, req: &Request<Incoming>) -> Response<Body> {
    let _g = OverheadGuard::new();
    if let Some(token) = &config.token {
        if !authorized(req, token) {
            let mut r = plain(
                StatusCode::UNAUTHORIZED,
                "401 unauthorized: send the header `Authorization: Bearer <token>` with the \
                 token the server was started with\n",
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "405 method not allowed: use GET\n",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let inner = &*config.inner;
    match req.uri().path() {
        "/" => {
            let host = host(req).unwrap_or_else(|| config.local_addr.to_string());
            let snap = Snapshot::take(inner.history.now(), "GET /");
            let page = live_page(inner, &snap, &host, config.token.is_some());
            ok("text/html; charset=utf-8", page.into_bytes())
        }
        "/report.html" => match stats_now(inner).html() {
            Ok(page) => ok("text/html; charset=utf-8", page.into_bytes()),
            Err(_) => plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "500: the report could not be written\n",
            ),
        },
        "/stats.json" => {
            let stats = stats_now(inner);
            // As `Stats::dump` writes them: what it would refuse (a NaN), this refuses too.
            let body = crate::dump::check_writable(&stats)
                .and_then(|()| serde_json::to_vec(&stats).map_err(|e| e.to_string()));
            match body {
                Ok(mut body) => {
                    body.push(b'\n');
                    ok("application/json", body)
                }
                Err(_) => plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "500: the stats could not be written as JSON\n",
                ),
            }
        }
        "/metrics" => {
            let snap = Snapshot::take(inner.history.now(), "GET /metrics");
            ok(
                "text/plain; version=0.0.4; charset=utf-8",
                render_metrics(&snap, &config.metrics).into_bytes(),
            )
        }
        path @ ("/debug/pprof/heap" | "/debug/pprof/allocs") => {
            let (default_type, disposition) = if path == "/debug/pprof/heap" {
                (DefaultType::InUse, "attachment; filename=\"heap.pb.gz\"")
            } else {
                (
                    DefaultType::Allocated,
                    "attachment; filename=\"allocs.pb.gz\"",
                )
            };
            let snap = Snapshot::take(inner.history.now(), path);
            let mut body = Vec::new();
            match snap.write_pprof_showing(default_type, &mut body) {
                Ok(()) => {
                    let mut r = ok("application/octet-stream", body);
                    r.headers_mut().insert(
                        header::CONTENT_DISPOSITION,
                        HeaderValue::from_static(disposition),
                    );
                    r
                }
                Err(_) => plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "500: the profile could not be written\n",
                ),
            }
        }
        "/snapshot.json" => {
            let mut snap = Snapshot::take(inner.history.now(), "GET /snapshot.json");
            // Instances are measured by the tracker's own snapshots only (measuring runs the
            // objects' code): those of the latest.
            let latest = inner.history.lock().recent.back().cloned();
            let tracked_time = latest.as_ref().map(|l| {
                snap.tracked.clone_from(&l.tracked);
                l.time
            });
            let mut view = SnapshotView::of(&snap);
            view.tracked_time = tracked_time;
            match serde_json::to_vec_pretty(&view) {
                Ok(body) => ok("application/json", body),
                Err(_) => plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "500: the snapshot could not be written as JSON\n",
                ),
            }
        }
        _ => plain(
            StatusCode::NOT_FOUND,
            "404 not found: see / for the routes (/stats.json, /report.html, /metrics, \
             /debug/pprof/heap, /debug/pprof/allocs, /snapshot.json)\n",
        ),
    }
}

/// `snapshot`'s series (those of [`crate::metrics::publish`]) in the Prometheus text format.
fn render_metrics(snapshot: &Snapshot, options: &MetricsOptions) -> String {
    // A recorder of its own for each page: only this snapshot's series, none left over from
    // classes that have left the top N since the last page.
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    ::metrics::with_local_recorder(&recorder, || crate::metrics::publish(snapshot, options));
    recorder.handle().render()
}

/// What `/stats.json` and `/report.html` show: the tracker's stats as
/// [`ClassTracker::stats`] gathers them.
fn stats_now(inner: &Inner) -> Stats {
    let (mut stats, unresolved) = Stats::gather(&inner.history.lock());
    stats.resolve(unresolved);
    stats
}

/// The request's `Host` header, if it is a plain host name or address with an optional port
/// (anything else could inject text into the page's hints).
fn host(req: &Request<Incoming>) -> Option<String> {
    let host = req.headers().get(header::HOST)?.to_str().ok()?;
    let plain = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b));
    plain.then(|| host.to_owned())
}

/// `text` with HTML's special characters escaped.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A signed byte count: `+1.5 KiB`, `-12 B`.
fn signed_bytes(change: i64) -> String {
    let sign = if change < 0 { "-" } else { "+" };
    format!("{sign}{}", format_bytes(change.unsigned_abs()))
}

/// Classes shown in the page's tables.
const PAGE_ROWS: usize = 15;

/// Intervals between the tracker's recent snapshots that the page's leak search looks at.
const PAGE_INTERVALS: usize = 8;

/// The live page of `/`: `snap` (taken now) against the tracker's recent snapshots. Every
/// interpolated value is escaped (`esc`), numbers included where they come with units.
fn live_page(inner: &Inner, snap: &Snapshot, host: &str, token: bool) -> String {
    use std::fmt::Write as _;
    let recent: Vec<Arc<Snapshot>> = inner.history.lock().recent.iter().cloned().collect();
    let mut p = String::new();
    let h = esc(host);
    // Writing to a String cannot fail.
    let _ = write!(
        p,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>classtrack</title>\
         <style>body{{font-family:sans-serif;max-width:70em;margin:1em auto}}\
         table{{border-collapse:collapse}}td,th{{padding:.15em .7em;text-align:right}}\
         td:first-child,th:first-child{{text-align:left}}code{{background:#f3f3f3}}\
         .hint{{background:#fff3cd;padding:.5em}}</style></head>\n<body>\n<h1>classtrack</h1>\n"
    );
    let _ = writeln!(
        p,
        "<p>Now ({:.1} s after the tracker started): user heap <b>{}</b> in {} blocks; \
         classtrack's own {}{}.</p>",
        snap.time,
        esc(&format_bytes(snap.user_live_bytes())),
        snap.allocator.live_blocks,
        esc(&format_bytes(snap.overhead.total_bytes())),
        snap.process.as_ref().map_or(String::new(), |m| format!(
            "; process resident {}",
            esc(&format_bytes(m.resident_bytes))
        )),
    );
    if !snap.allocator_installed {
        let _ = writeln!(
            p,
            "<p class=\"hint\">{}</p>",
            esc(crate::snapshot::NOT_INSTALLED)
        );
    }
    if let Some(hint) = snap.hint {
        let _ = writeln!(p, "<p class=\"hint\">{}</p>", esc(hint));
    }

    // The largest classes, with their change since the tracker's latest snapshot.
    let previous = recent.last();
    // classtrack's own bytes are in the line above, not among the program's classes.
    let mut classes: Vec<_> = snap
        .classes
        .iter()
        .filter(|c| c.live_bytes > 0 && c.id != ClassId::OVERHEAD)
        .collect();
    classes.sort_by(|a, b| b.live_bytes.cmp(&a.live_bytes).then(a.id.cmp(&b.id)));
    let _ = writeln!(p, "<h2>Largest classes</h2>");
    match previous {
        Some(prev) => {
            let _ = writeln!(
                p,
                "<p>Change since the tracker's latest snapshot, {}, {:.1} s ago.</p>",
                esc(&format!("{:?}", prev.description)),
                snap.time - prev.time
            );
        }
        None => {
            let _ = writeln!(
                p,
                "<p>The tracker has taken no snapshot yet: growth and leak suspects need \
                 some (<code>tracker.start_periodic_snapshots(interval)</code>).</p>"
            );
        }
    }
    let _ = writeln!(
        p,
        "<table><tr><th>class</th><th>live bytes</th><th>live blocks</th><th>change</th>\
         <th>allocated</th></tr>"
    );
    for c in classes.iter().take(PAGE_ROWS) {
        let change = match previous.map(|prev| prev.class_named(&c.name)) {
            None => String::new(),
            Some(None) => "new".to_owned(),
            Some(Some(before)) => signed_bytes(c.live_bytes as i64 - before.live_bytes as i64),
        };
        let _ = writeln!(
            p,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&c.name),
            esc(&format_bytes(c.live_bytes)),
            c.live_blocks,
            esc(&change),
            esc(&format_bytes(c.allocated_bytes)),
        );
    }
    let _ = writeln!(p, "</table>");
    if classes.len() > PAGE_ROWS {
        let _ = writeln!(
            p,
            "<p>{} more: see <a href=\"/metrics\">/metrics</a> or the \
             <a href=\"/report.html\">report</a>.</p>",
            classes.len() - PAGE_ROWS
        );
    }

    // Growth since the latest snapshot.
    if let Some(prev) = previous {
        let diff = snap.diff(prev);
        let grew: Vec<_> = diff
            .classes
            .iter()
            .filter(|c| c.live_bytes_change > 0 && c.id != ClassId::OVERHEAD)
            .take(PAGE_ROWS)
            .collect();
        let _ = writeln!(p, "<h2>Growth since the latest snapshot</h2>");
        if grew.is_empty() {
            let _ = writeln!(p, "<p>No class grew.</p>");
        } else {
            let _ = writeln!(
                p,
                "<table><tr><th>class</th><th>change</th><th>live bytes</th></tr>"
            );
            for c in grew {
                let _ = writeln!(
                    p,
                    "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&c.name),
                    esc(&signed_bytes(c.live_bytes_change)),
                    esc(&format_bytes(c.live_bytes)),
                );
            }
            let _ = writeln!(p, "</table>");
        }
    }

    // Leak suspects over the tracker's recent snapshots and this one.
    let from = recent.len().saturating_sub(PAGE_INTERVALS);
    let mut moments: Vec<Moment<'_>> = recent[from..].iter().map(|s| (&**s).into()).collect();
    moments.push(snap.into());
    let suspects = LeakSuspect::find(&moments, |name| {
        snap.top_sites(name, 1)
            .into_iter()
            .map(SiteSummary::of_site)
            .collect()
    });
    let _ = writeln!(p, "<h2>Leak suspects</h2>");
    if moments.len() < 3 {
        let _ = writeln!(
            p,
            "<p>Too few snapshots to tell (the tracker has {}).</p>",
            recent.len()
        );
    } else if suspects.is_empty() {
        let _ = writeln!(
            p,
            "<p>None: no class grew in most of the last {} intervals.</p>",
            moments.len() - 1
        );
    } else {
        let _ = writeln!(
            p,
            "<table><tr><th>class</th><th>grew in</th><th>growth</th><th>per second</th>\
             <th>live bytes</th><th>top site</th></tr>"
        );
        for s in suspects.iter().take(PAGE_ROWS) {
            // The first frame outside the standard library: the program's own.
            let site = s.top_sites.first().and_then(|t| {
                t.frames
                    .iter()
                    .find(|f| !crate::sampling::is_std(f))
                    .or(t.frames.first())
            });
            let site = site.map_or(String::new(), |f| match (&f.file, f.line) {
                (Some(file), Some(line)) => format!("{} ({file}:{line})", f.function),
                _ => f.function.clone(),
            });
            let _ = writeln!(
                p,
                "<tr><td>{}</td><td>{}/{}</td><td>{}</td><td>{}/s</td><td>{}</td>\
                 <td style=\"text-align:left\">{}</td></tr>",
                esc(&s.name),
                s.grew_in,
                s.intervals,
                esc(&signed_bytes(s.growth_bytes)),
                esc(&format_bytes(s.bytes_per_second.max(0.0) as u64)),
                esc(&format_bytes(s.live_bytes)),
                esc(&site),
            );
        }
        let _ = writeln!(p, "</table>");
    }

    // The rest, with commands that reach this server.
    let auth = if token {
        " -H \"Authorization: Bearer $TOKEN\""
    } else {
        ""
    };
    let cli_token = if token {
        "CLASSTRACK_TOKEN=$TOKEN "
    } else {
        ""
    };
    let _ = writeln!(
        p,
        "<h2>More</h2>\n<ul>\n\
         <li><a href=\"/report.html\">/report.html</a>: the full HTML report (charts, sites, \
         instances) of what the tracker has gathered</li>\n\
         <li><a href=\"/stats.json\">/stats.json</a>: the stats as a dump: \
         <code>{cli_token}classtrack summary http://{h}</code> (or <code>stats</code>, \
         <code>leaks</code>, <code>html</code>, <code>pprof</code>, <code>flamegraph</code>, \
         <code>diff</code>)</li>\n\
         <li><a href=\"/metrics\">/metrics</a>: live bytes, blocks and allocations per class, \
         in the Prometheus text format: <code>curl{auth} http://{h}/metrics</code></li>\n\
         <li><a href=\"/debug/pprof/heap\">/debug/pprof/heap</a> and \
         <a href=\"/debug/pprof/allocs\">/debug/pprof/allocs</a>: allocation sites per class \
         as pprof profiles: <code>go tool pprof -http=: BINARY http://{h}/debug/pprof/heap</code>\
         </li>\n\
         <li><a href=\"/snapshot.json\">/snapshot.json</a>: a snapshot taken now, as JSON</li>\n\
         </ul>\n</body></html>",
        auth = esc(auth),
        cli_token = esc(cli_token),
    );
    p
}

/// What `/snapshot.json` shows of a snapshot.
#[derive(Serialize)]
struct SnapshotView<'a> {
    description: &'a str,
    /// Seconds since the tracker was created.
    time: f64,
    /// Seconds since the Unix epoch.
    timestamp: f64,
    allocator: TotalsView<'a>,
    process: Option<ProcessView>,
    overhead: OverheadView,
    sampling: SamplingView,
    /// Largest live bytes first.
    classes: Vec<TotalsView<'a>>,
    tracked: Vec<TrackedView<'a>>,
    /// When the tracker's snapshot that `tracked` comes from was taken (seconds since the
    /// tracker was created); absent when it has taken none.
    #[serde(skip_serializing_if = "Option::is_none")]
    tracked_time: Option<f64>,
}

#[derive(Serialize)]
struct TotalsView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    live_bytes: u64,
    live_blocks: u64,
    allocated_bytes: u64,
    allocations: u64,
    freed_bytes: u64,
    frees: u64,
}

#[derive(Serialize)]
struct ProcessView {
    resident_bytes: u64,
    virtual_bytes: u64,
}

#[derive(Serialize)]
struct OverheadView {
    total_bytes: u64,
    tracker_bytes: u64,
    metadata_bytes: u64,
    shard_bytes: u64,
}

#[derive(Serialize)]
struct SamplingView {
    mean_bytes: u64,
    sent: u64,
    dropped: u64,
}

#[derive(Serialize)]
struct TrackedView<'a> {
    name: &'a str,
    active: u64,
    total_bytes: u64,
    min_bytes: u64,
    max_bytes: u64,
}

impl<'a> SnapshotView<'a> {
    fn of(s: &'a Snapshot) -> SnapshotView<'a> {
        let a = &s.allocator;
        let mut classes: Vec<TotalsView<'a>> = s
            .classes
            .iter()
            .map(|c| TotalsView {
                name: Some(&c.name),
                live_bytes: c.live_bytes,
                live_blocks: c.live_blocks,
                allocated_bytes: c.allocated_bytes,
                allocations: c.allocations,
                freed_bytes: c.freed_bytes,
                frees: c.frees,
            })
            .collect();
        classes.sort_by(|x, y| y.live_bytes.cmp(&x.live_bytes).then(x.name.cmp(&y.name)));
        SnapshotView {
            description: &s.description,
            time: s.time,
            timestamp: s
                .timestamp
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            allocator: TotalsView {
                name: None,
                live_bytes: a.live_bytes,
                live_blocks: a.live_blocks,
                allocated_bytes: a.allocated_bytes,
                allocations: a.allocations,
                freed_bytes: a.freed_bytes,
                frees: a.frees,
            },
            process: s.process.as_ref().map(|p| ProcessView {
                resident_bytes: p.resident_bytes,
                virtual_bytes: p.virtual_bytes,
            }),
            overhead: OverheadView {
                total_bytes: s.overhead.total_bytes(),
                tracker_bytes: s.overhead.tracker_bytes,
                metadata_bytes: s.overhead.metadata_bytes,
                shard_bytes: s.overhead.shard_bytes,
            },
            sampling: SamplingView {
                mean_bytes: s.sampling.mean_bytes,
                sent: s.sampling.sent,
                dropped: s.sampling.dropped,
            },
            classes,
            tracked: s
                .tracked
                .iter()
                .map(|t| TrackedView {
                    name: &t.name,
                    active: t.active,
                    total_bytes: t.total_bytes,
                    min_bytes: t.min_bytes,
                    max_bytes: t.max_bytes,
                })
                .collect(),
            tracked_time: None,
        }
    }
}
