//! `classtrack`: reads a stats file written by `classtrack::Stats::dump` (or fetches one from a
//! live service's endpoint, `http://HOST:PORT`) and prints or writes its reports. Every report
//! is the library's; this file reads the arguments, picks the snapshots and sends the output
//! where it was asked to go.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod gate;

use classtrack::report::Measure;
use classtrack::{SnapshotStats, SortKey, Stats};

const EXAMPLES: &str = "\
Examples:
  classtrack summary stats.json
  classtrack stats stats.json --sort size --limit 10
  classtrack diff stats.json --from 0 --to -1
  classtrack diff before.json after.json
  classtrack leaks stats.json --intervals 8
  classtrack html stats.json -o report.html
  classtrack pprof stats.json -o heap.pb.gz && go tool pprof -top heap.pb.gz
  classtrack flamegraph stats.json --class myapp::Cache -o heap.svg
  classtrack check stats.json --max myapp::Cache=64MiB --max-total 1GiB
  classtrack diff before.json after.json --fail-on-growth 10
  classtrack summary http://127.0.0.1:6060
  CLASSTRACK_TOKEN=s3cret classtrack leaks http://10.0.0.7:6060

DUMP is a file written by classtrack::Stats::dump (format version 1 or 2), or the http:// URL
of a running program's classtrack endpoint (classtrack::serve): its /stats.json is fetched,
with the bearer token of --token or of the environment variable CLASSTRACK_TOKEN.
SNAP picks a snapshot: a whole number is an index (0 the oldest, -1 the latest, -2 the one
before), any other text a label (the description given to create_snapshot; the latest
snapshot with that label).

Exit status: 0 on success, 1 when a dump cannot be read, a snapshot is not found, an output
cannot be written or a memory gate (check, diff --fail-on-growth) is breached, 2 for wrong
arguments.";

/// Reports on stats dumped by classtrack: which classes own the heap, how it changed, what
/// keeps growing and where it was allocated.
#[derive(Parser)]
#[command(name = "classtrack", version, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The bearer token of a DUMP given as an http:// URL (the server's `bearer_token`);
    /// by default the environment variable CLASSTRACK_TOKEN, which other users cannot read
    /// from the process list as they can an option.
    #[arg(long, global = true, value_name = "TOKEN")]
    token: Option<String>,
}

const SUMMARY_EXAMPLES: &str = "\
Examples:
  classtrack summary stats.json
  classtrack summary stats.json --classes 3 | less";

const STATS_EXAMPLES: &str = "\
Examples:
  classtrack stats stats.json --sort size --limit 10
  classtrack stats stats.json --sort class,birth --class Session
  classtrack stats stats.json --class tenant-42     # any class's totals, and its instances
  classtrack stats stats.json --sort tsize --reverse";

const DIFF_EXAMPLES: &str = "\
Examples:
  classtrack diff stats.json                      the oldest snapshot to the latest
  classtrack diff stats.json --from -2            the one before the latest to the latest
  classtrack diff stats.json --from warm --to 7   the latest labelled warm to snapshot 7
  classtrack diff before.json after.json          the latest of each
  classtrack diff before.json after.json --fail-on-growth 10 --ignore-below 1MiB";

const LEAKS_EXAMPLES: &str = "\
Examples:
  classtrack leaks stats.json
  classtrack leaks stats.json --intervals 20 --sites 5";

const PEAK_EXAMPLES: &str = "\
Examples:
  classtrack peak stats.json
  classtrack peak stats.json --classes 10 --sites 5";

const HTML_EXAMPLES: &str = "\
Examples:
  classtrack html stats.json -o report.html
  classtrack html stats.json -o - > report.html";

const PPROF_EXAMPLES: &str = "\
Examples:
  classtrack pprof stats.json -o heap.pb.gz
  go tool pprof -top heap.pb.gz
  classtrack pprof stats.json --snapshot -2 -o - | gzip -dc | wc -c";

const CHECK_EXAMPLES: &str = "\
Examples:
  classtrack check stats.json --max myapp::Cache=64MiB --max '<untracked>=10MB'
  classtrack check stats.json --max-total 512MiB --snapshot end

Sizes: a number with an optional unit: B, KB, MB, GB (powers of 1000), KiB, MiB, GiB or K, M,
G (powers of 1024). Exit status 1, with one line per breach on standard error, when a limit is
exceeded; 0 when all hold (each is listed on standard output).";

const FLAMEGRAPH_EXAMPLES: &str = "\
Examples:
  classtrack flamegraph stats.json -o heap.svg
  classtrack flamegraph stats.json --class myapp::Cache --allocated -o cache.svg";

#[derive(Subcommand)]
enum Command {
    /// Each snapshot's heap: live bytes, classtrack's own, resident, the largest classes
    ///
    /// For each snapshot: its index, label and time, the program's live heap (classtrack's
    /// own bytes apart), the resident memory, the largest classes with their share of the
    /// heap and their change since the snapshot before, and the tracked classes' instances.
    #[command(after_help = SUMMARY_EXAMPLES)]
    Summary(SummaryArgs),
    /// The tracked instances, sorted: sizes over time, birth, death, construction trace
    ///
    /// Each instance kept (all live ones, the most recent dead ones): its Debug
    /// representation, birth and death, size at each snapshot, largest size, breakdown by
    /// nested scopes and construction backtrace, where the tracker recorded them.
    #[command(after_help = STATS_EXAMPLES)]
    Stats(StatsArgs),
    /// Per-class changes between two snapshots, of one dump or of two
    ///
    /// For each class that changed: its change of live bytes and blocks, its live bytes at
    /// the later snapshot, and the bytes and blocks allocated and freed in between; largest
    /// growth first. Classes are matched by name, so dumps of two runs compare too.
    #[command(after_help = DIFF_EXAMPLES)]
    Diff(DiffArgs),
    /// Classes that keep growing, fastest first, with where they allocate
    ///
    /// A suspect's live bytes grew in more than half of the last intervals between
    /// snapshots, and overall. Each is shown with its growth, its live bytes and its top
    /// allocation sites at the latest snapshot: a sampled estimate of the live bytes from
    /// there, with its error, and the innermost function outside the standard library and
    /// classtrack.
    #[command(after_help = LEAKS_EXAMPLES)]
    Leaks(LeaksArgs),
    /// The heap at its peak: when, how much, the largest classes and where they allocated
    ///
    /// The reading the tracker took at the highest live heap of the user's classes since it
    /// was created (or since its peak was reset), even between snapshots: its time, the
    /// largest classes with their share of the heap, and each one's top allocation sites
    /// (sampled estimates of live bytes).
    #[command(after_help = PEAK_EXAMPLES)]
    Peak(PeakArgs),
    /// The HTML report: one self-contained page with charts, tables and flamegraphs
    ///
    /// Memory over time (live bytes per class, stacked, with resident memory and
    /// classtrack's overhead), growth and leak suspects, a section per class (live bytes and
    /// instances over time, allocation sites, flamegraph, instances) and each snapshot's class
    /// table. It needs no network: open it in any browser, offline.
    #[command(after_help = HTML_EXAMPLES)]
    Html(HtmlArgs),
    /// A snapshot's allocation sites as a gzipped pprof profile
    ///
    /// Sample types alloc_objects, alloc_space, inuse_objects and inuse_space (shown by
    /// default), each sample labelled with its class. The values are sampled estimates;
    /// stats keep the largest sites of each class, of recent snapshots only.
    #[command(after_help = PPROF_EXAMPLES)]
    Pprof(PprofArgs),
    /// A snapshot's allocation sites as a flamegraph SVG
    ///
    /// One tower per class, outermost frames at the bottom; widths are sampled estimates of
    /// live bytes (with --allocated, of bytes ever allocated). Open it in a browser to zoom
    /// and search.
    #[command(after_help = FLAMEGRAPH_EXAMPLES)]
    Flamegraph(FlamegraphArgs),
    /// Fails (status 1) when a class or the program's heap is over its limit: a CI gate
    ///
    /// Compares live bytes at one snapshot (the latest by default) with the limits given, and
    /// prints one line per breach on standard error. A class name the dump never saw is an
    /// error (status 2), so that a misspelt name cannot pass.
    #[command(after_help = CHECK_EXAMPLES)]
    Check(CheckArgs),
}

#[derive(Args)]
struct CheckArgs {
    /// The stats file.
    #[arg(value_name = "DUMP")]
    dump: PathBuf,
    /// A class's limit of live bytes, CLASS=SIZE (repeat for more classes).
    #[arg(long = "max", value_name = "CLASS=SIZE")]
    max: Vec<gate::Limit>,
    /// The limit of the program's live heap (every class but classtrack's own).
    #[arg(long, value_name = "SIZE", value_parser = gate::parse_size)]
    max_total: Option<u64>,
    /// The snapshot to check: an index or a label [default: -1, the latest].
    #[arg(long, value_name = "SNAP", allow_hyphen_values = true)]
    snapshot: Option<Snap>,
}

#[derive(Args)]
struct SummaryArgs {
    /// The stats file, or a live endpoint's http:// URL.
    #[arg(value_name = "DUMP")]
    dump: PathBuf,
    /// How many of the largest classes to show per snapshot.
    #[arg(long, value_name = "N", default_value_t = 5)]
    classes: usize,
}

#[derive(Args)]
struct StatsArgs {
    /// The stats file, or a live endpoint's http:// URL.
    #[arg(value_name = "DUMP")]
    dump: PathBuf,
    /// Sort by these keys, the first first (repeat the flag or separate keys with commas);
    /// ties keep instance id order.
    #[arg(long, value_name = "KEY", value_delimiter = ',')]
    sort: Vec<Sort>,
    /// Reverse the order.
    #[arg(long)]
    reverse: bool,
    /// Show at most N instances.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Only instances of classes whose tracked name contains NAME; first, the totals of
    /// every class (tracked or not) whose name contains it, at the latest snapshot.
    #[arg(long, value_name = "NAME")]
    class: Option<String>,
}

/// What instances are sorted by.
#[derive(Clone, Copy, ValueEnum)]
enum Sort {
    /// Class name, A to Z.
    Class,
    /// Size at the latest snapshot, largest first.
    Size,
    /// Largest size seen, largest first.
    MaxSize,
    /// Size at the snapshot where the tracked instances were largest in total, largest first
    /// (pympler's tsize).
    #[value(alias = "tsize")]
    SizeAtPeak,
    /// Birth, oldest first.
    Birth,
    /// Death, earliest first; live instances last.
    Death,
    /// Instance name, A to Z.
    Name,
    /// Debug representation, A to Z.
    Repr,
}

impl Sort {
    fn key(self) -> SortKey {
        match self {
            Sort::Class => SortKey::ClassName,
            Sort::Size => SortKey::TotalSize,
            Sort::MaxSize => SortKey::MaxSize,
            Sort::SizeAtPeak => SortKey::TotalSizeAtPeak,
            Sort::Birth => SortKey::Birth,
            Sort::Death => SortKey::Death,
            Sort::Name => SortKey::Name,
            Sort::Repr => SortKey::Repr,
        }
    }
}

#[derive(Args)]
struct DiffArgs {
    /// One stats file (compare two of its snapshots), or two (compare the old file's
    /// snapshot with the new file's); either may be a live endpoint's http:// URL.
    #[arg(value_name = "DUMP", num_args = 1..=2, required = true)]
    dumps: Vec<PathBuf>,
    /// The earlier snapshot: an index (0 the oldest, -1 the latest) or a label; in the old
    /// dump, with two [default: 0 with one dump, -1 with two].
    #[arg(long, value_name = "SNAP", allow_hyphen_values = true)]
    from: Option<Snap>,
    /// The later snapshot: an index or a label; in the new dump, with two [default: -1].
    #[arg(long, value_name = "SNAP", allow_hyphen_values = true)]
    to: Option<Snap>,
    /// Fail (status 1) when a class's live bytes, or the program's heap, grew by more than
    /// PERCENT percent (a class that had nothing live before grew by more than any percent).
    #[arg(long, value_name = "PERCENT", value_parser = percent)]
    fail_on_growth: Option<f64>,
    /// With --fail-on-growth: leave out classes with less than SIZE live at the later
    /// snapshot [default: 0].
    #[arg(long, value_name = "SIZE", value_parser = gate::parse_size, requires = "fail_on_growth")]
    ignore_below: Option<u64>,
}

fn percent(s: &str) -> std::result::Result<f64, String> {
    let p: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{s:?} is not a percentage: give a number such as 10"))?;
    if p.is_finite() && p >= 0.0 {
        Ok(p)
    } else {
        Err(format!("{s:?}: give a percentage of 0 or more"))
    }
}

#[derive(Args)]
struct LeaksArgs {
    /// The stats file, or a live endpoint's http:// URL.
    #[arg(value_name = "DUMP")]
    dump: PathBuf,
    /// How many of the last intervals between snapshots to look at (a class must grow in
    /// more than half of them, and overall).
    #[arg(long, value_name = "N", default_value_t = 8)]
    intervals: usize,
    /// How many allocation sites to show per suspect.
    #[arg(long, value_name = "N", default_value_t = 3)]
    sites: usize,
}

#[derive(Args)]
struct PeakArgs {
    /// The stats file, or a live endpoint's http:// URL.
    #[arg(value_name = "DUMP")]
    dump: PathBuf,
    /// How many of the largest classes to show.
    #[arg(long, value_name = "N", default_value_t = 5)]
    classes: usize,
    /// How many allocation sites to show per class.
    #[arg(long, value_name = "N", default_value_t = 3)]
    sites: usize,
}

#[derive(Args)]
struct PprofArgs {
    /// The stats file, or a live endpoint's http:// URL.
    #[arg(value_name = "DUMP")]
    dump: PathBuf,
    /// The snapshot: an index (0 the oldest, -1 the latest) or a label [default: -1]. Only
    /// recent snapshots keep their sites.
    #[arg(long, value_name = "SNAP", allow_hyphen_values = true)]
    snapshot: Option<Snap>,
    /// Where to write the profile (`-` for standard output, when it is not a terminal).
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
}

#[derive(Args)]
struct HtmlArgs {
    /// The stats file, or a live endpoint's http:// URL.
    #[arg(value_name = "DUMP")]
    dump: PathBuf,
    /// Where to write the page (`-` for standard output).
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
}

#[derive(Args)]
struct FlamegraphArgs {
    /// The stats file, or a live endpoint's http:// URL.
    #[arg(value_name = "DUMP")]
    dump: PathBuf,
    /// The snapshot: an index (0 the oldest, -1 the latest) or a label [default: -1]. Only
    /// recent snapshots keep their sites.
    #[arg(long, value_name = "SNAP", allow_hyphen_values = true)]
    snapshot: Option<Snap>,
    /// Only this class's sites (its full name, as `summary` shows it).
    #[arg(long, value_name = "NAME")]
    class: Option<String>,
    /// Bytes ever allocated at each site, rather than bytes live.
    #[arg(long)]
    allocated: bool,
    /// Where to write the SVG (`-` for standard output).
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
}

/// A snapshot as named on the command line: an index (negative from the end) or a label.
#[derive(Clone, Debug)]
enum Snap {
    Index(i64),
    Label(String),
}

impl std::str::FromStr for Snap {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Snap, String> {
        if s.is_empty() {
            return Err("give a snapshot index (0, -1, ...) or label".to_owned());
        }
        Ok(s.parse()
            .map_or_else(|_| Snap::Label(s.to_owned()), Snap::Index))
    }
}

/// Why the command failed.
enum Failure {
    /// Standard output was closed (`| head`): not an error to report.
    ClosedOutput,
    /// What to tell the user.
    Message(String),
    /// Wrong arguments that only the data could show (status 2, as clap's).
    Usage(String),
    /// A memory gate was breached: the breaches are already on standard error (status 1).
    Breached,
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Failure::ClosedOutput
        } else {
            Failure::Message(format!("cannot write to standard output: {e}"))
        }
    }
}

impl From<classtrack::Error> for Failure {
    fn from(e: classtrack::Error) -> Failure {
        Failure::Message(e.to_string())
    }
}

fn fail(message: impl Into<String>) -> Failure {
    Failure::Message(message.into())
}

type Result<T> = std::result::Result<T, Failure>;

fn main() -> ExitCode {
    // A bug must still end on one line, without a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let _ = writeln!(io::stderr(), "classtrack: internal error: {info}");
    }));
    let cli = Cli::parse();
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let token = cli
        .token
        .or_else(|| std::env::var("CLASSTRACK_TOKEN").ok())
        .filter(|t| !t.is_empty());
    let result = run(cli.command, token.as_deref(), &mut out)
        .and_then(|()| out.flush().map_err(Failure::from));
    match result {
        Ok(()) | Err(Failure::ClosedOutput) => ExitCode::SUCCESS,
        Err(Failure::Breached) => {
            let _ = out.flush();
            ExitCode::FAILURE
        }
        Err(Failure::Usage(m)) => {
            let _ = out.flush();
            let _ = writeln!(io::stderr(), "classtrack: {m}");
            ExitCode::from(2)
        }
        Err(Failure::Message(m)) => {
            // Whatever was printed before the failure goes first; it may fail in turn.
            let _ = out.flush();
            let _ = writeln!(io::stderr(), "classtrack: {m}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command, token: Option<&str>, out: &mut dyn Write) -> Result<()> {
    let load = |dump: &Path| load(dump, token);
    match command {
        Command::Summary(a) => {
            let stats = load(&a.dump)?;
            stats.print_heap_summary(out, a.classes)?;
        }
        Command::Stats(a) => {
            let mut stats = load(&a.dump)?;
            let keys: Vec<SortKey> = a.sort.iter().map(|s| s.key()).collect();
            stats.sort_stats(&keys);
            if a.reverse {
                stats.reverse_order();
            }
            if let Some(class) = &a.class {
                stats.print_classes(out, class, a.limit.or(Some(100)))?;
                writeln!(out)?;
            }
            stats.print_stats(out, a.class.as_deref(), a.limit)?;
            if let Some(class) = &a.class {
                let any_class = stats
                    .snapshots
                    .last()
                    .is_some_and(|s| s.classes.iter().any(|c| c.name.contains(class.as_str())));
                if !any_class
                    && !stats
                        .instances
                        .iter()
                        .any(|i| i.class.contains(class.as_str()))
                {
                    let names: Vec<&str> = stats.classes.iter().map(|c| c.name.as_str()).collect();
                    out.flush()?;
                    note(&format!(
                        "no instance of a class whose name contains {class:?}; \
                         tracked classes: {}",
                        list_or_none(&names)
                    ));
                }
            }
        }
        Command::Diff(a) => diff(a, &load, out)?,
        Command::Leaks(a) => {
            if a.intervals == 0 {
                return Err(fail(
                    "--intervals 0 looks at no interval: give 1 or more (a suspect grew in more \
                     than half of the last N intervals between snapshots)",
                ));
            }
            let stats = load(&a.dump)?;
            stats.print_leak_suspects(out, a.intervals, a.sites)?;
        }
        Command::Peak(a) => {
            let stats = load(&a.dump)?;
            stats.print_peak(out, a.classes, a.sites)?;
        }
        Command::Html(a) => {
            let stats = load(&a.dump)?;
            let page = stats.html()?;
            write_output(&a.output, page.as_bytes(), false, out)?;
        }
        Command::Pprof(a) => {
            let stats = load(&a.dump)?;
            let (index, snap) = pick(&stats, &a.dump, a.snapshot.as_ref())?;
            note_without_sites(index, snap);
            let mut bytes = Vec::new();
            stats.write_pprof(snap, &mut bytes)?;
            write_output(&a.output, &bytes, true, out)?;
        }
        Command::Flamegraph(a) => {
            let stats = load(&a.dump)?;
            let (index, snap) = pick(&stats, &a.dump, a.snapshot.as_ref())?;
            if let Some(class) = &a.class {
                if !snap.sites.iter().any(|s| &s.class == class) {
                    let mut names: Vec<&str> =
                        snap.sites.iter().map(|s| s.class.as_str()).collect();
                    names.sort_unstable();
                    names.dedup();
                    return Err(fail(format!(
                        "snapshot {index} ({:?}) has no allocation site of class {class:?}; \
                         classes with sites there: {}",
                        snap.description,
                        list_or_none(&names)
                    )));
                }
            } else {
                note_without_sites(index, snap);
            }
            let measure = if a.allocated {
                Measure::AllocatedBytes
            } else {
                Measure::LiveBytes
            };
            let mut bytes = Vec::new();
            stats.write_flamegraph(snap, &mut bytes, measure, a.class.as_deref())?;
            write_output(&a.output, &bytes, false, out)?;
        }
        Command::Check(a) => {
            if a.max.is_empty() && a.max_total.is_none() {
                return Err(Failure::Usage(
                    "give limits to check: --max CLASS=SIZE (repeatable) or --max-total SIZE"
                        .to_owned(),
                ));
            }
            let stats = load(&a.dump)?;
            let (index, snap) = pick(&stats, &a.dump, a.snapshot.as_ref())?;
            let verdict =
                gate::check(&stats, index, snap, &a.max, a.max_total).map_err(Failure::Usage)?;
            for line in &verdict.passed {
                writeln!(out, "ok: {line}")?;
            }
            report_verdict(&verdict, out)?;
        }
    }
    Ok(())
}

/// Notes what a gate could not check, and fails with its breaches, one line each.
fn report_verdict(v: &gate::Verdict, out: &mut dyn Write) -> Result<()> {
    out.flush()?;
    for line in &v.unchecked {
        note(line);
    }
    if v.breaches.is_empty() {
        return Ok(());
    }
    for line in &v.breaches {
        note(line);
    }
    Err(Failure::Breached)
}

fn diff(a: DiffArgs, load: &dyn Fn(&Path) -> Result<Stats>, out: &mut dyn Write) -> Result<()> {
    let Some(old_path) = a.dumps.first() else {
        return Err(fail("give one or two dumps"));
    };
    let new_path = a.dumps.get(1).unwrap_or(old_path);
    let two = a.dumps.len() == 2;
    let old = load(old_path)?;
    let new = if two { Some(load(new_path)?) } else { None };
    let new_stats = new.as_ref().unwrap_or(&old);
    let from = a
        .from
        .unwrap_or(if two { Snap::Index(-1) } else { Snap::Index(0) });
    let to = a.to.unwrap_or(Snap::Index(-1));
    let (from_index, earlier) = pick(&old, old_path, Some(&from))?;
    let (to_index, later) = pick(new_stats, new_path, Some(&to))?;
    if two {
        writeln!(
            out,
            "from snapshot {from_index} of {} to snapshot {to_index} of {} (each time is \
             its own tracker's)",
            old_path.display(),
            new_path.display()
        )?;
    }
    let changes = later.diff(earlier);
    changes.write_table(out)?;
    for (index, snap) in [(from_index, earlier), (to_index, later)] {
        if snap.full {
            continue;
        }
        if snap.classes.is_empty() {
            writeln!(
                out,
                "note: snapshot {index} ({:?}) keeps no per-class totals (a version 1 dump, \
                 or an older snapshot's summary): only the allocator's change is meaningful",
                snap.description
            )?;
        } else {
            let kept = snap.user_classes().count();
            let others = snap.omitted.classes;
            writeln!(
                out,
                "note: snapshot {index} ({:?}) keeps {} (and sums {}{}): a class it left out \
                 is not compared",
                snap.description,
                plural(kept as u64, "class", "classes"),
                plural(others, "other class", "other classes"),
                if snap.omitted.idle > 0 {
                    format!(", {} of them idle", snap.omitted.idle)
                } else {
                    String::new()
                },
            )?;
        }
    }
    if let Some(percent) = a.fail_on_growth {
        let verdict = gate::growth(
            earlier,
            later,
            &changes,
            percent,
            a.ignore_below.unwrap_or(0),
        );
        report_verdict(&verdict, out)?;
    }
    Ok(())
}

/// The snapshot `snap` names in `stats` (read from `path`), with its index; the latest when
/// `snap` is `None`.
/// The largest `/stats.json` read, in bytes.
const MAX_FETCH: u64 = 1 << 30;

/// The stats of `dump`: a file, or a live endpoint's `/stats.json` when it is an http:// URL.
fn load(dump: &Path, token: Option<&str>) -> Result<Stats> {
    let Some(url) = dump.to_str().filter(|d| is_url(d)) else {
        return Ok(Stats::load(dump)?);
    };
    if url.starts_with("https://") {
        return Err(fail(format!(
            "{url}: https is not supported; the endpoint speaks http (reach a remote one \
             through an SSH tunnel: ssh -L 6060:127.0.0.1:6060 HOST, then \
             http://127.0.0.1:6060)"
        )));
    }
    let url = stats_url(url);
    let mut request = ureq::get(&url).timeout(std::time::Duration::from_secs(60));
    if let Some(token) = token {
        request = request.set("Authorization", &format!("Bearer {token}"));
    }
    let response = match request.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(401, _)) => {
            return Err(fail(format!(
                "{url} answered 401 unauthorized: {}",
                if token.is_some() {
                    "the token given is not the server's"
                } else {
                    "give the server's bearer token with --token or CLASSTRACK_TOKEN"
                }
            )))
        }
        Err(ureq::Error::Status(404, _)) => {
            return Err(fail(format!(
                "{url} answered 404 not found: is this a classtrack endpoint \
                 (classtrack::serve), of a classtrack that serves /stats.json?"
            )))
        }
        Err(ureq::Error::Status(code, r)) => {
            return Err(fail(format!("{url} answered {code} {}", r.status_text())))
        }
        Err(ureq::Error::Transport(e)) => {
            return Err(fail(format!(
                "{e} (is the program running, serving there?)"
            )))
        }
    };
    let mut bytes = Vec::new();
    io::Read::read_to_end(
        &mut io::Read::take(response.into_reader(), MAX_FETCH + 1),
        &mut bytes,
    )
    .map_err(|e| fail(format!("cannot read {url}: {e}")))?;
    if bytes.len() as u64 > MAX_FETCH {
        return Err(fail(format!("{url}: the answer is larger than 1 GiB")));
    }
    Ok(Stats::from_json(&bytes, &url)?)
}

/// Whether a DUMP argument is a URL rather than a file (a file of that name would be written
/// `./http://…`).
fn is_url(dump: &str) -> bool {
    dump.starts_with("http://") || dump.starts_with("https://")
}

/// The `/stats.json` URL of an endpoint given by its address (`http://HOST:PORT`, with or
/// without a path of its own before the route).
fn stats_url(url: &str) -> String {
    if url.ends_with("/stats.json") {
        url.to_owned()
    } else {
        format!("{}/stats.json", url.trim_end_matches('/'))
    }
}

fn pick<'a>(
    stats: &'a Stats,
    path: &Path,
    snap: Option<&Snap>,
) -> Result<(usize, &'a SnapshotStats)> {
    let n = stats.snapshots.len();
    if n == 0 {
        return Err(fail(format!(
            "{} has no snapshot: take one with ClassTracker::create_snapshot (or start periodic \
             snapshots) before dumping the stats",
            path.display()
        )));
    }
    match snap.unwrap_or(&Snap::Index(-1)) {
        Snap::Index(i) => {
            let index = if *i < 0 {
                usize::try_from(i.unsigned_abs())
                    .ok()
                    .and_then(|back| n.checked_sub(back))
            } else {
                usize::try_from(*i).ok().filter(|&i| i < n)
            };
            index.map(|i| (i, &stats.snapshots[i])).ok_or_else(|| {
                fail(format!(
                    "snapshot index {i} is out of range: {} has {n} snapshot{}, 0 to {} \
                     (or -{n} to -1 from the latest)",
                    path.display(),
                    if n == 1 { "" } else { "s" },
                    n - 1
                ))
            })
        }
        Snap::Label(label) => stats
            .snapshots
            .iter()
            .enumerate()
            .rev()
            .find(|(_, s)| &s.description == label)
            .ok_or_else(|| {
                fail(format!(
                    "no snapshot labelled {label:?} in {}; its labels: {}",
                    path.display(),
                    labels(stats)
                ))
            }),
    }
}

/// The distinct labels of `stats`'s snapshots, oldest first, with their counts.
fn labels(stats: &Stats) -> String {
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for s in &stats.snapshots {
        match seen.iter_mut().find(|(l, _)| *l == s.description) {
            Some((_, n)) => *n += 1,
            None => seen.push((&s.description, 1)),
        }
    }
    const SHOWN: usize = 20;
    let mut list: Vec<String> = seen
        .iter()
        .take(SHOWN)
        .map(|(l, n)| match n {
            1 => format!("{l:?}"),
            n => format!("{l:?} ({n} snapshots)"),
        })
        .collect();
    if seen.len() > SHOWN {
        list.push(format!("and {} more", seen.len() - SHOWN));
    }
    list.join(", ")
}

/// Writes `message` to standard error, as `classtrack: message` (nothing if it is closed).
fn note(message: &str) {
    let _ = writeln!(io::stderr(), "classtrack: {message}");
}

/// `n thing` or `n things`.
fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// Says on standard error when `snap` has no site, and why it may be.
fn note_without_sites(index: usize, snap: &SnapshotStats) {
    if !snap.sites.is_empty() {
        return;
    }
    let why = if !snap.full {
        "only recent snapshots keep their sites; pick one of the latest with --snapshot"
    } else if snap.sampling.mean_bytes == 0 {
        "sampling was off"
    } else {
        "nothing was sampled by then"
    };
    note(&format!(
        "note: snapshot {index} ({:?}) has no allocation site ({why}): the output \
         is empty",
        snap.description
    ));
}

/// Writes `bytes` to `path`, or to `out` when `path` is `-` (refusing a terminal for
/// `binary` output).
fn write_output(path: &Path, bytes: &[u8], binary: bool, out: &mut dyn Write) -> Result<()> {
    if path.as_os_str() == "-" {
        if binary && io::stdout().is_terminal() {
            return Err(fail(
                "standard output is a terminal: redirect it to a file or a pipe, or give -o FILE",
            ));
        }
        out.write_all(bytes)?;
        return Ok(());
    }
    std::fs::write(path, bytes)
        .map_err(|e| fail(format!("cannot write {}: {e}", path.display())))?;
    note(&format!(
        "wrote {} ({})",
        path.display(),
        classtrack::report::format_bytes(bytes.len() as u64)
    ));
    Ok(())
}
