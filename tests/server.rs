//! Feature `server`: the endpoint against real clients (`go tool pprof`, a Prometheus server,
//! an HTTP client) and against malformed, huge and silent ones. Loopback only, ports chosen
//! by the system, every wait bounded.
#![cfg(feature = "server")]

use std::alloc::System;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use classtrack::{ClassTracker, Error, ServerBuilder, TrackingAlloc};

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

/// GETs `path`; returns the status and the body.
fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, Vec<u8>) {
    let mut req = ureq::get(&format!("http://{addr}{path}")).timeout(Duration::from_secs(20));
    if let Some(token) = token {
        req = req.set("Authorization", &format!("Bearer {token}"));
    }
    let resp = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("GET {path}: {e}"),
    };
    let status = resp.status();
    let mut body = Vec::new();
    resp.into_reader()
        .take(256 << 20)
        .read_to_end(&mut body)
        .unwrap();
    (status, body)
}

/// Fails with what to install if `tool` cannot be run.
fn require(tool: &str, version_arg: &str, install: &str) {
    let ok = Command::new(tool)
        .arg(version_arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "`{tool}` is needed by this test and could not be run: install it ({install})"
    );
}

/// Waits for `child` at most `limit`; kills it if it is still running then.
fn wait_bounded(mut child: Child, limit: Duration) -> std::process::Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after {limit:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// A directory under the system's temp directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("classtrack-{what}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
#[ignore = "needs Go (apt-get install golang-go): cargo test --features server --test server -- --ignored"]
fn go_tool_pprof_reads_the_heap_profile() {
    require("go", "version", "Debian: apt-get install golang-go");
    let tracker = ClassTracker::new();
    classtrack::trace_every_allocation_named("serve-pprof-class", true);
    let kept: Vec<Vec<u8>> = classtrack::scope_named("serve-pprof-class", || {
        (0..64).map(|i| vec![i as u8; 4096]).collect()
    });
    classtrack::trace_every_allocation_named("serve-pprof-class", false);
    let server = classtrack::serve(&tracker, "127.0.0.1:0").unwrap();
    let tmp = TempDir::new("pprof");
    let child = Command::new("go")
        .args(["tool", "pprof", "-raw", "-timeout", "20"])
        .arg(format!("http://{}/debug/pprof/heap", server.local_addr()))
        .env("PPROF_TMPDIR", tmp.path())
        .env("HOME", tmp.path())
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod")
        .current_dir(tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_bounded(child, Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "go tool pprof failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    for sample_type in [
        "alloc_objects/count",
        "alloc_space/bytes",
        "inuse_objects/count",
        "inuse_space/bytes",
    ] {
        assert!(stdout.contains(sample_type), "{sample_type} in:\n{stdout}");
    }
    assert!(
        stdout.contains("serve-pprof-class"),
        "the class label in:\n{stdout}"
    );
    drop(kept);
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Prometheus server, killed on drop.
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "needs Prometheus (apt-get install prometheus): cargo test --features server --test server -- --ignored"]
fn prometheus_scrapes_metrics_with_a_bearer_token() {
    require(
        "prometheus",
        "--version",
        "Debian: apt-get install prometheus",
    );
    const TOKEN: &str = "scrape-me-9f2c";
    let tracker = ClassTracker::new();
    let kept = classtrack::scope_named("serve-prom-class", || vec![1u8; 3 << 20]);
    let server = ServerBuilder::new(&tracker)
        .bearer_token(TOKEN)
        .start()
        .unwrap();
    let tmp = TempDir::new("prometheus");
    let config = tmp.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: classtrack\n    \
             authorization:\n      credentials: {TOKEN}\n    \
             static_configs:\n      - targets: ['{}']\n",
            server.local_addr()
        ),
    )
    .unwrap();
    let web = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let _prometheus = Prometheus(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                tmp.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    let query = "/api/v1/query?query=classtrack_live_bytes%7Bclass%3D%22serve-prom-class%22%7D";
    let deadline = Instant::now() + Duration::from_secs(60);
    let value = loop {
        assert!(
            Instant::now() < deadline,
            "Prometheus did not return classtrack_live_bytes within 60 s"
        );
        std::thread::sleep(Duration::from_millis(500));
        let Ok(resp) = ureq::get(&format!("http://{web}{query}"))
            .timeout(Duration::from_secs(5))
            .call()
        else {
            continue; // not up yet
        };
        let body: serde_json::Value = serde_json::from_reader(resp.into_reader()).unwrap();
        assert_eq!(body["status"], "success", "{body}");
        if let Some(series) = body["data"]["result"].as_array().and_then(|r| r.first()) {
            assert_eq!(series["metric"]["__name__"], "classtrack_live_bytes");
            assert_eq!(series["metric"]["class"], "serve-prom-class");
            break series["value"][1].as_str().unwrap().parse::<f64>().unwrap();
        }
    };
    assert_eq!(value, (3 << 20) as f64);
    drop(kept);
}

#[test]
fn routes_answer_and_metrics_are_the_metrics_series() {
    let tracker = ClassTracker::new();
    let kept = classtrack::scope_named("serve-routes-class", || vec![1u8; 77_777]);
    tracker.create_snapshot("for the json");
    let server = classtrack::serve(&tracker, "127.0.0.1:0").unwrap();
    let addr = server.local_addr();

    let (status, body) = get(addr, "/", None);
    assert_eq!(status, 200);
    let index = String::from_utf8(body).unwrap();
    for route in [
        "/metrics",
        "/debug/pprof/heap",
        "/debug/pprof/allocs",
        "/snapshot.json",
        "/stats.json",
        "/report.html",
    ] {
        assert!(index.contains(&format!("href=\"{route}\"")), "{index}");
    }

    let (status, body) = get(addr, "/metrics", None);
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains("classtrack_live_bytes{class=\"serve-routes-class\"} 77777\n"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE classtrack_live_bytes gauge"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE classtrack_allocations_total counter"),
        "{text}"
    );
    for name in [
        "classtrack_live_blocks{class=",
        "classtrack_allocated_bytes_total{class=",
        "classtrack_resident_bytes ",
        "classtrack_overhead_bytes ",
        "classtrack_samples_dropped_total ",
        "classtrack_live_bytes{class=\"<other>\"}",
    ] {
        assert!(text.contains(name), "{name} in:\n{text}");
    }

    let (status, body) = get(addr, "/debug/pprof/heap", None);
    assert_eq!(status, 200);
    assert_eq!(&body[..2], &[0x1f, 0x8b], "gzip magic");

    let (status, body) = get(addr, "/snapshot.json", None);
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    // Taken now, not the tracker's latest ("for the json").
    assert_eq!(json["description"], "GET /snapshot.json");
    assert!(json["tracked_time"].as_f64().is_some(), "{json}");
    let class = json["classes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "serve-routes-class")
        .expect("the class in /snapshot.json");
    assert_eq!(class["live_bytes"], 77_777);
    assert_eq!(class["live_blocks"], 1);
    assert!(json["allocator"]["live_bytes"].as_u64().unwrap() >= 77_777);

    let (status, _) = get(addr, "/nowhere", None);
    assert_eq!(status, 404);
    let resp = ureq::post(&format!("http://{addr}/metrics"))
        .timeout(Duration::from_secs(10))
        .send_string("x");
    assert!(matches!(resp, Err(ureq::Error::Status(405, _))), "{resp:?}");
    drop(kept);
}

#[test]
fn a_bearer_token_is_checked_on_every_route() {
    let tracker = ClassTracker::new();
    let server = ServerBuilder::new(&tracker)
        .bearer_token("tok-123")
        .start()
        .unwrap();
    let addr = server.local_addr();
    for route in [
        "/",
        "/metrics",
        "/debug/pprof/heap",
        "/debug/pprof/allocs",
        "/snapshot.json",
        "/stats.json",
        "/report.html",
        "/nowhere",
    ] {
        assert_eq!(get(addr, route, None).0, 401, "{route} without a token");
        assert_eq!(
            get(addr, route, Some("tok-124")).0,
            401,
            "{route} with a wrong token"
        );
        assert_eq!(
            get(addr, route, Some("tok-12")).0,
            401,
            "{route} with a prefix"
        );
        let want = if route == "/nowhere" { 404 } else { 200 };
        assert_eq!(get(addr, route, Some("tok-123")).0, want, "{route}");
    }
}

#[test]
fn misuse_is_an_error_that_says_what_to_do() {
    let tracker = ClassTracker::new();
    let err = ServerBuilder::new(&tracker)
        .addr("0.0.0.0:0".parse().unwrap())
        .start()
        .unwrap_err();
    assert!(matches!(err, Error::NotLoopback { .. }), "{err:?}");
    assert!(err.to_string().contains("allow_remote(true)"), "{err}");
    for builder in [
        ServerBuilder::new(&tracker).bearer_token(""),
        ServerBuilder::new(&tracker).bearer_token("has space"),
        ServerBuilder::new(&tracker).header_timeout(Duration::ZERO),
        ServerBuilder::new(&tracker).request_timeout(Duration::ZERO),
        ServerBuilder::new(&tracker).max_connections(0),
    ] {
        let err = builder.start().unwrap_err();
        assert!(matches!(err, Error::InvalidServerSetting { .. }), "{err:?}");
        assert!(err.to_string().contains("give"), "{err}");
    }
    let first = classtrack::serve(&tracker, "127.0.0.1:0").unwrap();
    let err = classtrack::serve(&tracker, first.local_addr()).unwrap_err();
    assert!(matches!(err, Error::Bind { .. }), "{err:?}");
    assert!(err.to_string().contains("free port"), "{err}");
}

/// Sends `request` (ignoring a write the server refused by closing), then reads until the
/// server closes; returns what it answered. Fails if the server neither answers nor closes
/// within `limit`.
fn exchange(addr: SocketAddr, request: &[u8], limit: Duration) -> (String, Duration) {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    s.set_write_timeout(Some(limit)).unwrap();
    let _ = s.write_all(request);
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("no answer and no close within {limit:?}: {e}"),
        }
    }
    let elapsed = start.elapsed();
    assert!(elapsed < limit, "took {elapsed:?}");
    (String::from_utf8_lossy(&answer).into_owned(), elapsed)
}

#[test]
fn malformed_huge_and_silent_clients_get_an_error_or_a_timeout() {
    let tracker = ClassTracker::new();
    let server = ServerBuilder::new(&tracker)
        .header_timeout(Duration::from_millis(500))
        .request_timeout(Duration::from_secs(3))
        .start()
        .unwrap();
    let addr = server.local_addr();
    let limit = Duration::from_secs(10);

    // Not HTTP.
    let (answer, _) = exchange(addr, b"HELLO THERE\r\n\r\n", limit);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
    // A header line of 1 MiB.
    let mut huge = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    huge.resize(huge.len() + (1 << 20), b'a');
    huge.extend_from_slice(b"\r\n\r\n");
    let (answer, _) = exchange(addr, &huge, limit);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
    // A URI of 1 MiB.
    let mut long = b"GET /".to_vec();
    long.resize(long.len() + (1 << 20), b'a');
    long.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
    let (answer, _) = exchange(addr, &long, limit);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
        "{answer}"
    );
    // A client that never sends: closed after the header timeout, while others are served.
    let silent = std::thread::spawn(move || exchange(addr, b"", Duration::from_secs(10)));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(get(addr, "/metrics", None).0, 200);
    let (answer, elapsed) = silent.join().unwrap();
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
    // A client that sends its headers a byte at a time, never finishing: closed by the
    // header timeout, not kept open by each byte.
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut closed = false;
    for i in 0..100 {
        let line = if i == 0 { "GET / HTTP/1.1\r\n" } else { "X" };
        if s.write_all(line.as_bytes()).is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        match s.read(&mut buf) {
            Ok(_) => {
                closed = true; // an answer (408) or a close
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(
        closed,
        "a slow client kept its connection for {:?}",
        start.elapsed()
    );
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    // And the server still serves.
    assert_eq!(get(addr, "/", None).0, 200);
}

#[test]
fn dropping_the_handle_stops_the_server_promptly() {
    let tracker = ClassTracker::new();
    let server = classtrack::serve(&tracker, "127.0.0.1:0").unwrap();
    let addr = server.local_addr();
    assert_eq!(get(addr, "/", None).0, 200);
    // A connection open and idle, which must not hold the server up.
    let idle = TcpStream::connect(addr).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let start = Instant::now();
    drop(server);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
    // The idle connection was closed.
    let mut idle = idle;
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    assert!(matches!(idle.read(&mut buf), Ok(0) | Err(_)));
}

#[test]
fn the_server_thread_books_its_memory_as_overhead() {
    let tracker = ClassTracker::new();
    let server = classtrack::serve(&tracker, "127.0.0.1:0").unwrap();
    let addr = server.local_addr();
    // Requests made inside a user scope: the server's allocations must not land there.
    let before = tracker.create_snapshot("before");
    let _guard = classtrack::enter_named("serve-client-side");
    for _ in 0..5 {
        assert_eq!(get(addr, "/metrics", None).0, 200);
    }
    drop(_guard);
    let after = tracker.create_snapshot("after");
    // The client (ureq, on this thread) allocated in the scope; the server (its own thread)
    // did not, so the class only has the client's allocations, which it freed.
    let class = after.class_named("serve-client-side").unwrap();
    assert_eq!(class.live_bytes, 0, "{class:?}");
    let overhead = |s: &classtrack::Snapshot| s.tracker_class().allocations;
    assert!(overhead(&after) > overhead(&before));
}

#[test]
fn serves_from_inside_an_async_runtime() {
    // A service calls `serve` from its own tokio runtime: the server's runtime is separate,
    // and starting, using and dropping it there neither panics nor blocks that runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tracker = ClassTracker::new();
        let server = classtrack::serve(&tracker, "127.0.0.1:0").unwrap();
        let addr = server.local_addr();
        let (status, _) = std::thread::spawn(move || get(addr, "/metrics", None))
            .join()
            .unwrap();
        assert_eq!(status, 200);
        tokio::task::yield_now().await;
        drop(server);
        tokio::task::yield_now().await;
    });
}

/// GETs `path` with `host` as the `Host` header, over a plain socket (a client sets its own).
fn get_with_host(addr: SocketAddr, path: &str, host: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    exchange(addr, request.as_bytes(), Duration::from_secs(20)).0
}

#[test]
fn the_live_page_shows_classes_growth_and_suspects_with_this_servers_address() {
    let tracker = ClassTracker::new();
    let mut log: Vec<Vec<u8>> = Vec::new();
    for _ in 0..5 {
        log.push(classtrack::scope_named("page <growing> & co", || {
            vec![3u8; 50_000]
        }));
        tracker.create_snapshot("tick");
    }
    log.push(classtrack::scope_named("page <growing> & co", || {
        vec![3u8; 50_000]
    }));
    let server = classtrack::serve(&tracker, "127.0.0.1:0").unwrap();
    let addr = server.local_addr();

    let (status, body) = get(addr, "/", None);
    assert_eq!(status, 200);
    let page = String::from_utf8(body).unwrap();
    // The class's name escaped, its live bytes now (6 blocks) and its change since the
    // latest snapshot (one block).
    let row = page
        .lines()
        .find(|l| l.contains("<td>page &lt;growing&gt; &amp; co</td>"))
        .unwrap_or_else(|| panic!("the class's row in:\n{page}"));
    assert!(row.contains("<td>293.0 KiB</td>"), "{row}");
    assert!(row.contains("<td>+48.8 KiB</td>"), "{row}");
    assert!(
        page.contains("<h2>Growth since the latest snapshot</h2>"),
        "{page}"
    );
    let suspects = &page[page
        .find("<h2>Leak suspects</h2>")
        .expect("a suspects section")..];
    assert!(
        suspects.contains("<td>page &lt;growing&gt; &amp; co</td><td>5/5</td>"),
        "{suspects}"
    );
    // classtrack's own bytes are not a class of the program's.
    assert!(
        !page.contains("<td>&lt;classtrack overhead&gt;</td>"),
        "{page}"
    );
    // Hints with the address the client used, without a token.
    assert!(
        page.contains(&format!("classtrack summary http://{addr}</code>")),
        "{page}"
    );
    assert!(
        page.contains(&format!("http://{addr}/debug/pprof/heap")),
        "{page}"
    );
    assert!(!page.contains("HOST"), "{page}");

    let page = get_with_host(addr, "/", "metrics.example:6060");
    assert!(
        page.contains("classtrack summary http://metrics.example:6060</code>"),
        "{page}"
    );
    // A Host header that is not a plain address is not echoed.
    let page = get_with_host(addr, "/", "x<script>");
    assert!(!page.contains("<script>"), "{page}");
    assert!(
        page.contains(&format!("classtrack summary http://{addr}</code>")),
        "{page}"
    );
    drop(log);
}

#[test]
fn the_live_page_of_a_tracker_without_snapshots_says_what_it_needs() {
    let tracker = ClassTracker::new();
    let server = ServerBuilder::new(&tracker)
        .bearer_token("t0k")
        .start()
        .unwrap();
    let (status, body) = get(server.local_addr(), "/", Some("t0k"));
    assert_eq!(status, 200);
    let page = String::from_utf8(body).unwrap();
    assert!(page.contains("has taken no snapshot yet"), "{page}");
    assert!(page.contains("Too few snapshots"), "{page}");
    // With a token, the hints carry it.
    assert!(
        page.contains("CLASSTRACK_TOKEN=$TOKEN classtrack summary"),
        "{page}"
    );
    assert!(page.contains("Authorization: Bearer $TOKEN"), "{page}");
}

#[test]
fn stats_json_is_a_dump_that_stats_load_reads() {
    let tracker = ClassTracker::new();
    let kept = classtrack::scope_named("serve-stats-class", || vec![5u8; 12_345]);
    tracker.create_snapshot("one");
    tracker.create_snapshot("two");
    let server = classtrack::serve(&tracker, "127.0.0.1:0").unwrap();
    let (status, body) = get(server.local_addr(), "/stats.json", None);
    assert_eq!(status, 200);
    let from_bytes = classtrack::Stats::from_json(&body, "the response").unwrap();
    let descriptions: Vec<&str> = from_bytes
        .snapshots
        .iter()
        .map(|s| s.description.as_str())
        .collect();
    assert_eq!(descriptions, ["one", "two"]);
    let class = from_bytes.snapshots[1]
        .classes
        .iter()
        .find(|c| &*c.name == "serve-stats-class")
        .expect("the class in the dump");
    assert_eq!(class.live_bytes, 12_345);
    // The same bytes in a file: `Stats::load` reads them, equal.
    let tmp = TempDir::new("stats-json");
    let path = tmp.path().join("stats.json");
    std::fs::write(&path, &body).unwrap();
    assert_eq!(classtrack::Stats::load(&path).unwrap(), from_bytes);
    drop(kept);
}

#[test]
fn the_report_route_is_the_html_report() {
    let tracker = ClassTracker::new();
    let kept = classtrack::scope_named("serve-report-class", || vec![5u8; 4_000]);
    tracker.create_snapshot("for the report");
    let server = classtrack::serve(&tracker, "127.0.0.1:0").unwrap();
    let (status, body) = get(server.local_addr(), "/report.html", None);
    assert_eq!(status, 200);
    let page = String::from_utf8(body).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"), "{}", &page[..100]);
    assert!(page.contains("serve-report-class"));
    drop(kept);
}

#[test]
fn allocs_and_heap_are_one_profile_shown_by_allocated_or_live_bytes() {
    use classtrack::report::pprof::proto;
    use prost::Message;
    let tracker = ClassTracker::new();
    let server = classtrack::serve(&tracker, "127.0.0.1:0").unwrap();
    let decode = |route: &str| {
        let (status, gz) = get(server.local_addr(), route, None);
        assert_eq!(status, 200, "{route}");
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut raw)
            .unwrap();
        proto::Profile::decode(&raw[..]).unwrap()
    };
    for (route, shown) in [
        ("/debug/pprof/heap", "inuse_space"),
        ("/debug/pprof/allocs", "alloc_space"),
    ] {
        let p = decode(route);
        let s = |i: i64| p.string_table[i as usize].as_str();
        assert_eq!(s(p.default_sample_type), shown, "{route}");
        let types: Vec<&str> = p.sample_type.iter().map(|t| s(t.r#type)).collect();
        assert_eq!(
            types,
            [
                "alloc_objects",
                "alloc_space",
                "inuse_objects",
                "inuse_space"
            ]
        );
        #[cfg(target_os = "linux")]
        {
            let exe = std::fs::canonicalize(std::env::current_exe().unwrap()).unwrap();
            assert_eq!(Path::new(s(p.mapping[0].filename)), exe, "{route}");
        }
    }
}

#[test]
#[ignore = "needs go: apt-get install golang-go && cargo test --features server --test server -- --include-ignored"]
fn go_tool_pprof_reads_the_profiles_with_the_binary() {
    let tracker = ClassTracker::new();
    classtrack::trace_every_allocation_named("serve-binary-class", true);
    let kept: Vec<Vec<u8>> = classtrack::scope_named("serve-binary-class", || {
        (0..16).map(|i| vec![i as u8; 4096]).collect()
    });
    classtrack::trace_every_allocation_named("serve-binary-class", false);
    let server = classtrack::serve(&tracker, "127.0.0.1:0").unwrap();
    let exe = std::env::current_exe().unwrap();
    for (route, shown) in [("heap", "inuse_space"), ("allocs", "alloc_space")] {
        let tmp = TempDir::new("pprof-binary");
        let child = Command::new("go")
            .args(["tool", "pprof", "-top", "-timeout", "20"])
            .arg(&exe)
            .arg(format!(
                "http://{}/debug/pprof/{route}",
                server.local_addr()
            ))
            .env("PPROF_TMPDIR", tmp.path())
            .env("HOME", tmp.path())
            .env("GOTOOLCHAIN", "local")
            .current_dir(tmp.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = wait_bounded(child, Duration::from_secs(120));
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{stderr}");
        let file = exe.file_name().unwrap().to_str().unwrap();
        assert!(stdout.contains(&format!("File: {file}")), "{stdout}");
        assert!(stdout.contains(&format!("Type: {shown}")), "{stdout}");
        assert!(stdout.contains("Build ID: "), "{stdout}");
        assert!(
            !stderr.contains("Main binary filename not available"),
            "{stderr}"
        );
    }
    drop(kept);
}
