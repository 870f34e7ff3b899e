//! The HTML report, looked at in a real browser (headless Chromium, network off): it renders
//! (a PNG screenshot that is not blank), has its sections, charts and class names, shows every
//! name from the program as text (a class named like a script does not run); plus its errors
//! and its size and speed on 1,000 classes × 500 snapshots.
//!
//! Chromium is required: the browser tests fail, saying how to install it, where it is
//! missing (set `CHROMIUM` to its path if it is not on `PATH` as `chromium`). Set
//! `CLASSTRACK_KEEP_HTML=1` to keep the pages written, to look at them.
#![cfg(feature = "html")]

use std::alloc::System;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use classtrack::report::format_bytes;
use classtrack::{ClassTracker, Error, Retention, Stats, TrackOptions, TrackingAlloc};

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

/// A class name that would run as a script if it were not escaped.
const SCRIPT_CLASS: &str = "<script>document.title='pwned'</script>";

/// A tracked class whose representation holds markup.
#[derive(Debug)]
#[allow(dead_code)]
struct Widget {
    label: String,
    parts: Vec<Vec<u8>>,
}

/// Removes a page written by a test, unless `CLASSTRACK_KEEP_HTML` is set.
fn done_with(page: &Path) {
    if std::env::var_os("CLASSTRACK_KEEP_HTML").is_some() {
        println!("kept {}", page.display());
    } else {
        let _ = std::fs::remove_file(page);
    }
}

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("classtrack-html-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("the temporary directory is writable");
    d
}

/// Stats of a small program: classes named like generic types, `<untracked>`, a script-named
/// class, a class that grows at every snapshot, a tracked class with a breakdown and traces.
/// The class that grows at every snapshot of [`sample_stats`]`(test)`: named after the test,
/// as tests run at once and classes are the process's.
fn leaky(test: &str) -> String {
    format!("html::{test}::leaky_cache")
}

fn sample_stats(test: &str) -> Stats {
    let tracker = ClassTracker::new();
    tracker.track_class::<Widget>(
        TrackOptions::new()
            .name("Widget")
            .trace(true)
            .resolution_level(1),
    );
    let mut kept = Vec::new();
    let mut widgets = Vec::new();
    let mut leak: Vec<Vec<u8>> = Vec::new();
    for round in 0..6u32 {
        kept.push(classtrack::scope_named("Vec<String>", || {
            (0..2000)
                .map(|i| format!("row {i}"))
                .collect::<Vec<String>>()
        }));
        kept.push(classtrack::scope_named(SCRIPT_CLASS, || {
            vec![String::from("x"); 100]
        }));
        // Megabytes, so that the sampler sees this class's sites.
        let block = classtrack::scope_named(&leaky(test), || vec![round as u8; 3 << 20]);
        leak.push(block);
        widgets.push(tracker.construct_debug(|| {
            Widget {
                label: format!("<b>widget {round}</b>"),
                parts: (0..4)
                    .map(|_| classtrack::scope_named("widget parts", || vec![0u8; 4096]))
                    .collect(),
            }
        }));
        tracker.create_snapshot(&format!("round {round}"));
    }
    widgets.truncate(3);
    tracker.create_snapshot("after dropping widgets");
    let stats = tracker.stats();
    drop((kept, widgets, leak));
    stats
}

/// The Chromium binary: `$CHROMIUM`, else `chromium` or `chromium-browser` on `PATH`.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(p);
    }
    for name in ["chromium", "chromium-browser"] {
        if let Some(found) = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        }) {
            return found;
        }
    }
    panic!(
        "Chromium was not found: the HTML report is tested in a real browser. Install it \
         (Debian: `apt-get install chromium`) or set CHROMIUM to its path."
    );
}

/// Runs headless Chromium on `page` with the network off (every connection goes to a
/// closed port, no name resolves) and `args`; returns its standard output.
fn run_chromium(page: &Path, args: &[String]) -> String {
    let profile = page.with_extension("profile");
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--proxy-server=127.0.0.1:9",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "Chromium could not be started ({e}): the HTML report is tested in a real \
                 browser. Install it (Debian: `apt-get install chromium`) or set CHROMIUM to \
                 its path."
            )
        });
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut out).map(|_| out)
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for Chromium") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("Chromium did not finish within 120 s on {}", page.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = reader
        .join()
        .expect("reader thread")
        .expect("Chromium's output is UTF-8");
    assert!(
        status.success(),
        "Chromium failed ({status}) on {}",
        page.display()
    );
    let _ = std::fs::remove_dir_all(&profile);
    out
}

/// The DOM without the flamegraphs' `srcdoc` attributes (documents of their own, whose text
/// an attribute's serialization leaves unescaped).
fn without_srcdoc(dom: &str) -> String {
    let mut out = String::with_capacity(dom.len());
    let mut rest = dom;
    while let Some(at) = rest.find(" srcdoc=\"") {
        out.push_str(&rest[..at]);
        let value = &rest[at + " srcdoc=\"".len()..];
        let end = value.find('"').expect("an attribute's value ends");
        rest = &value[end + 1..];
    }
    out.push_str(rest);
    out
}

#[test]
#[ignore = "needs Chromium (apt-get install chromium): cargo test --test html_report -- --ignored"]
fn report_renders_in_a_real_browser() {
    let stats = sample_stats("browser");
    let leaky = leaky("browser");
    let page = dir().join("browser.html");
    stats.write_html(&page).expect("the report is written");
    let html = std::fs::read_to_string(&page).expect("the report is readable");
    assert!(html.starts_with("<!DOCTYPE html>"));

    // The page as the browser builds it.
    let dom = run_chromium(&page, &["--dump-dom".to_owned()]);
    let main = without_srcdoc(&dom);
    assert!(
        main.contains("<title>classtrack report</title>"),
        "the title is classtrack's (a script changed it?)"
    );
    assert!(!main.contains("pwned</title>"));
    assert!(
        !main.contains("<script"),
        "the page itself has no script element"
    );
    assert!(
        main.contains("&lt;script&gt;document.title='pwned'&lt;/script&gt;"),
        "the script-named class shows as text"
    );
    for text in [
        "Memory over time",
        "Leak suspects",
        "Largest growth from",
        "Instances alive over time",
        "Allocation sites at",
        "Snapshots",
        "Vec&lt;String&gt;",
        "&lt;untracked&gt;",
        "&lt;classtrack overhead&gt;",
        "Widget",
        "Widget { label: \"&lt;b&gt;widget 0&lt;/b&gt;\"",
        "widget parts",
        "Constructed at:",
        "html_report::sample_stats",
        "resident memory (process)",
        "classtrack overhead",
        "MiB",
        "seconds since the tracker was created",
        "“after dropping widgets”",
    ] {
        assert!(main.contains(text), "the rendered page shows {text:?}");
    }
    // Figures: the leaking class's live bytes at the last snapshot (6 blocks of 3 MiB), and
    // the program's heap then.
    let last = stats.snapshots.last().expect("snapshots");
    let leaked = last
        .class_named(&leaky)
        .expect("the leak is kept")
        .live_bytes;
    assert_eq!(leaked, 6 * (3 << 20));
    assert!(main.contains(&leaky), "the page shows {leaky}");
    assert!(
        main.contains("<b>18.0 MiB</b> live in 6 blocks"),
        "its figures"
    );
    assert!(
        main.contains(&format!(
            "— {} in the program's heap",
            format_bytes(last.user_live_bytes())
        )),
        "the last snapshot's heap"
    );
    // The leaking class is a suspect.
    let growth = &main[main.find("id=\"growth\"").expect("growth section")..];
    let growth = &growth[..growth.find("id=\"classes\"").expect("classes section")];
    assert!(growth.contains(&leaky), "the leak is a suspect");
    // Charts: the memory chart and at least a chart per class shown.
    let charts = main.matches("<svg").count();
    assert!(charts >= 5, "{charts} SVG charts");
    assert!(main.contains("<iframe class=\"flame\""), "a flamegraph");
    assert!(dom.contains("sandbox=\"allow-scripts\""));

    // A flamegraph's document, on its own: inferno's script runs (it makes the graph fluid,
    // dropping the root's fixed width) and the class's frames are there.
    let frame = format!("title=\"flamegraph of {leaky}\" srcdoc=\"");
    let at = html.find(&frame).expect("the class's flamegraph frame") + frame.len();
    let value = &html[at..at + html[at..].find('"').expect("the attribute ends")];
    let doc = value
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    let flame_page = page.with_file_name("flame.html");
    std::fs::write(&flame_page, &doc).expect("written");
    let flame = run_chromium(&flame_page, &["--dump-dom".to_owned()]);
    let root = &flame[flame.find("<svg").expect("an SVG")..];
    let root = &root[..root.find('>').expect("the tag ends")];
    assert!(root.contains("onload=\"init(evt)\""), "{root}");
    assert!(
        !root.contains("width=\"1200\""),
        "inferno's script did not run in the frame's document: {root}"
    );
    assert!(flame.contains("id=\"frames\""));
    assert!(flame.contains(&leaky));
    done_with(&flame_page);

    // What it looks like: a PNG of the size asked, not blank.
    let shot = page.with_extension("png");
    run_chromium(
        &page,
        &[
            "--window-size=1280,2000".to_owned(),
            format!("--screenshot={}", shot.display()),
        ],
    );
    let file = std::fs::File::open(&shot).expect("Chromium wrote a screenshot");
    let decoder = png::Decoder::new(std::io::BufReader::new(file));
    let mut reader = decoder.read_info().expect("the screenshot is a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("a sane size")];
    let info = reader.next_frame(&mut buf).expect("the PNG decodes");
    assert_eq!((info.width, info.height), (1280, 2000));
    let channels = info.color_type.samples();
    assert!(channels >= 3, "{:?}", info.color_type);
    let pixels = &buf[..info.buffer_size()];
    let mut colours = std::collections::HashSet::new();
    let mut not_white = 0usize;
    for p in pixels.chunks(channels) {
        colours.insert((p[0], p[1], p[2]));
        if p[0] < 240 || p[1] < 240 || p[2] < 240 {
            not_white += 1;
        }
    }
    let total = (info.width * info.height) as usize;
    assert!(colours.len() > 100, "{} colours: blank?", colours.len());
    assert!(
        not_white * 100 > total * 3,
        "{not_white} of {total} pixels are not white: blank?"
    );
    done_with(&shot);
    done_with(&page);
}

#[test]
fn the_file_is_self_contained_and_escaped() {
    let stats = sample_stats("offline");
    let page = dir().join("offline.html");
    stats.write_html(&page).expect("the report is written");
    let html = std::fs::read_to_string(&page).expect("the report is readable");
    // Nothing loaded from elsewhere: no script, stylesheet, image or font by address.
    for banned in [
        "<script",
        "<link",
        "<img",
        "@import",
        "src=\"http",
        "href=\"http",
        "src=\"//",
        "href=\"//",
    ] {
        assert!(!html.contains(banned), "the file contains {banned:?}");
    }
    // Snapshots are numbered from 0, as `classtrack pprof DUMP --snapshot 0` counts them.
    assert!(
        html.contains("<summary>#0 <b>"),
        "snapshots numbered from 0"
    );
    assert!(
        !html.contains("<summary>#1 <b>“start"),
        "snapshots numbered from 0"
    );
    // inferno's SVG fills with gradients of its own (`url(#background)`), nothing else.
    for (at, _) in html.match_indices("url(") {
        assert!(
            html[at + 4..].starts_with('#'),
            "the file refers to {}",
            &html[at..(at + 40).min(html.len())]
        );
    }
    assert!(!html.contains(SCRIPT_CLASS));
    assert!(html.contains("&lt;script&gt;document.title="));
    // Names inside the SVG charts and the flamegraph documents are escaped too: nothing
    // unescaped from the program's names anywhere.
    assert!(!html.contains("<b>widget"));
    assert!(!html.contains("Vec<String>"));
    // Dumped and loaded, the stats make the same page.
    let dump = dir().join("offline.json");
    stats.dump(&dump).expect("dumped");
    let loaded = Stats::load(&dump).expect("loaded");
    let again = dir().join("offline-again.html");
    loaded.write_html(&again).expect("the report is written");
    assert_eq!(
        std::fs::read_to_string(&again).expect("readable"),
        html,
        "a loaded dump renders the same page"
    );
    done_with(&page);
    let _ = std::fs::remove_file(&dump);
    let _ = std::fs::remove_file(&again);
}

#[test]
fn unwritable_paths_are_errors_and_leave_nothing_behind() {
    let stats = ClassTracker::new().stats();
    let missing = dir().join("no such directory").join("report.html");
    match stats.write_html(&missing) {
        Err(Error::Io { path, .. }) => assert_eq!(path, missing),
        other => panic!("expected an I/O error, got {other:?}"),
    }
    let d = dir().join("a directory");
    std::fs::create_dir_all(&d).expect("created");
    assert!(matches!(stats.write_html(&d), Err(Error::Io { .. })));
    assert!(matches!(stats.write_html("/"), Err(Error::Io { .. })));
    let left: Vec<_> = std::fs::read_dir(dir())
        .expect("listed")
        .filter_map(|e| e.ok())
        // Only this test's: the other tests write their own pages in the same directory at
        // the same time.
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.contains(".tmp-") && (name.contains("report.html") || name.contains("a directory"))
        })
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[test]
fn a_report_without_snapshots_says_what_to_do() {
    let tracker = ClassTracker::new();
    let page = dir().join("empty.html");
    tracker.write_html(&page).expect("the report is written");
    let html = std::fs::read_to_string(&page).expect("readable");
    assert!(html.contains("No snapshot was taken"));
    assert!(html.contains("create_snapshot"));
    done_with(&page);
}

/// Older snapshots kept as summaries: the page says they keep the largest classes only, sums
/// the rest in a row of their own, and charts what they left out as "other".
#[test]
fn summaries_keep_the_largest_classes_and_sum_the_rest() {
    let tracker = ClassTracker::new();
    tracker
        .set_retention(Retention::new().recent_snapshots(2).summary_classes(3))
        .expect("valid retention");
    let mut kept = Vec::new();
    for round in 0..6usize {
        for i in 0..12usize {
            let name = format!("html::summary::Class{i:02}");
            kept.push(classtrack::scope_named(&name, || {
                vec![0u8; 1024 * (1 + i) * (1 + round)]
            }));
        }
        tracker.create_snapshot(&format!("step {round}"));
    }
    let stats = tracker.stats();
    let summaries: Vec<_> = stats.snapshots.iter().filter(|s| !s.full).collect();
    assert!(!summaries.is_empty(), "older snapshots were summarized");
    assert!(summaries.iter().any(|s| s.omitted.classes > 0));
    let page = dir().join("summaries.html");
    stats.write_html(&page).expect("the report is written");
    let html = std::fs::read_to_string(&page).expect("readable");
    assert!(html.contains("This snapshot keeps the largest classes (a summary"));
    assert!(
        html.contains("more classes"),
        "the left-out classes are summed in a row"
    );
    assert!(
        html.contains("other classes"),
        "the chart has an other band"
    );
    assert!(html.contains("(summary)"));
    done_with(&page);
    drop(kept);
}

/// 1,000 classes over 500 snapshots, all kept in full: the page stays under 20 MB and is
/// written in under 2 s (checked in release builds).
#[test]
fn a_thousand_classes_over_five_hundred_snapshots() {
    const CLASSES: usize = 1000;
    const SNAPSHOTS: usize = 500;
    let tracker = ClassTracker::new();
    tracker
        .set_retention(
            Retention::new()
                .recent_snapshots(SNAPSHOTS)
                .snapshot_history(SNAPSHOTS)
                .snapshot_classes(usize::MAX),
        )
        .expect("valid retention");
    let names: Vec<String> = (0..CLASSES)
        .map(|i| format!("html::big::Class{i:04}<T>"))
        .collect();
    let mut live: Vec<Vec<Vec<u8>>> = vec![Vec::new(); CLASSES];
    for round in 0..SNAPSHOTS {
        for (i, name) in names.iter().enumerate() {
            if (i + round) % 10 == 0 {
                let size = 16 * (1 + i % 64);
                live[i].push(classtrack::scope_named(name, || vec![0u8; size]));
            }
            // Some classes shrink now and then.
            if i % 7 == 0 && round % 50 == 49 {
                live[i].clear();
            }
        }
        tracker.create_snapshot(&format!("tick {round}"));
    }
    let stats = tracker.stats();
    assert_eq!(stats.snapshots.len(), SNAPSHOTS);
    assert!(stats.snapshots.iter().all(|s| s.full));
    assert!(stats.snapshots[SNAPSHOTS - 1].classes.len() >= CLASSES);

    let page = dir().join("big.html");
    let started = Instant::now();
    stats.write_html(&page).expect("the report is written");
    let took = started.elapsed();
    let size = std::fs::metadata(&page).expect("written").len();
    println!(
        "{CLASSES} classes x {SNAPSHOTS} snapshots: {:.3} s, {:.2} MB of HTML",
        took.as_secs_f64(),
        size as f64 / 1e6
    );
    assert!(size < 20_000_000, "{size} bytes of HTML");
    if cfg!(debug_assertions) {
        println!("render time is checked in release builds only: cargo test --release --test html_report");
    } else {
        assert!(took < Duration::from_secs(2), "rendering took {took:?}");
    }
    let html = std::fs::read_to_string(&page).expect("readable");
    assert!(html.contains("more classes"), "tables are bounded");
    assert!(html.contains("html::big::Class"));
    assert!(!html.contains("Class0999<T>"), "names are escaped");
    done_with(&page);
    drop(live);
}
