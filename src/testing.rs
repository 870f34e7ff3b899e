//! Memory limits in tests: exact figures for what a closure allocates, apart from every other
//! thread, and assertions that fail with the figures.
//!
//! [`measure`] runs a closure and counts everything it allocates on the calling thread,
//! whatever class scopes it enters, plus the work it hands on with
//! [`current_scope`](crate::current_scope) (a thread pool's job, a task wrapped with
//! [`InClass::in_scope`](crate::InClass::in_scope)): bytes and blocks allocated, the peak of
//! live bytes while it ran (exact, not sampled), and what it left live at the end, in all and
//! per class. Two tests measuring at once, on `cargo test`'s parallel threads, do not see each
//! other's allocations.
//!
//! ```
//! #[global_allocator]
//! static ALLOC: classtrack::TrackingAlloc<std::alloc::System> =
//!     classtrack::TrackingAlloc::new(std::alloc::System);
//!
//! fn main() {
//!     let (sum, m) = classtrack::testing::measure(|| {
//!         let v: Vec<u64> = (0..1000).collect();
//!         v.iter().sum::<u64>()
//!     });
//!     assert_eq!(sum, 499_500);
//!     assert_eq!(m.peak_bytes, 8000);
//!     m.assert_peak_at_most(8 << 10);
//!     m.assert_no_leaks();
//! }
//! ```
//!
//! # How
//!
//! While the closure runs, the thread's allocations take the allocator's slow path, where
//! each block is counted in the measurement and marked with its id (six bits of the block's
//! tag), so its free is counted there too, on any thread. Other threads pay nothing. A block
//! that outlives the measurement (its result, a leak) keeps counting its free in the
//! measurement, never in a later one. Up to 63 measurements can be under way or have blocks
//! live at once; [`measure`] waits for one to end past that.
//!
//! classtrack's own allocations (a class name registered inside the closure) are not counted.
//! A measurement inside another counts its allocations in the inner one only.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use classtrack_shim::{ClassId, MeasuredCounts, OverheadGuard};

use crate::report::format_bytes;

/// What [`measure`] counted: exact figures, in all and per class.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Measurement {
    /// Bytes allocated (new blocks and realloc growth).
    pub allocated_bytes: u64,
    /// Blocks allocated.
    pub allocations: u64,
    /// The largest live bytes at once, among the blocks the closure allocated.
    pub peak_bytes: u64,
    /// Bytes still live when the closure returned: what it left behind (its result's included).
    pub live_bytes: u64,
    /// Blocks still live when the closure returned.
    pub live_blocks: u64,
    /// The same per class, largest live bytes first, then largest allocated.
    pub classes: Vec<MeasuredClass>,
    /// How long the closure ran.
    pub elapsed: Duration,
}

/// One class's part of a [`Measurement`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MeasuredClass {
    /// The class, or `None` for the row that sums the classes past the first 256.
    pub id: Option<ClassId>,
    /// The class's name (`<untracked>` for allocations outside any scope).
    pub name: String,
    /// Bytes allocated.
    pub allocated_bytes: u64,
    /// Blocks allocated.
    pub allocations: u64,
    /// Bytes still live at the end.
    pub live_bytes: u64,
    /// Blocks still live at the end.
    pub live_blocks: u64,
}

impl MeasuredClass {
    fn of(id: Option<ClassId>, name: String, c: MeasuredCounts) -> MeasuredClass {
        MeasuredClass {
            id,
            name,
            allocated_bytes: c.allocated_bytes,
            allocations: c.allocations,
            live_bytes: c.allocated_bytes.saturating_sub(c.freed_bytes),
            live_blocks: c.allocations.saturating_sub(c.frees),
        }
    }
}

/// Sets the thread's measurement id until dropped (also on a panic).
struct Working(u8);

impl Drop for Working {
    fn drop(&mut self) {
        classtrack_shim::set_measurement(self.0);
    }
}

/// Makes the current thread work for measurement `id` while the guard lives; 0 changes
/// nothing. For [`Scope`](crate::Scope) and [`Scoped`](crate::Scoped), which carry the
/// measurement of the thread that made them.
pub(crate) fn work_for(id: u8) -> Option<impl Drop> {
    (id != 0).then(|| Working(classtrack_shim::set_measurement(id)))
}

/// The measurement the current thread works for (0: none).
pub(crate) fn current() -> u8 {
    classtrack_shim::current_measurement()
}

/// Runs `f` and returns its result with exact figures for what it allocated (see the module
/// documentation).
///
/// A panic in `f` ends the measurement and goes on unwinding. Past 63 measurements under way
/// (or ended with blocks still live) at once, it waits for one to end, and after 10 s panics
/// saying so.
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, Measurement) {
    let id = take_slot();
    let start = Instant::now();
    let r = {
        let _working = Working(classtrack_shim::set_measurement(id));
        f()
    };
    let elapsed = start.elapsed();
    let totals = classtrack_shim::end_measurement(id);
    let _g = OverheadGuard::new();
    let mut classes: Vec<MeasuredClass> = totals
        .classes
        .iter()
        .map(|&(class, counts)| MeasuredClass::of(Some(class), class_name(class), counts))
        .collect();
    if totals.other.allocations > 0 {
        classes.push(MeasuredClass::of(
            None,
            format!(
                "classes past the first {}",
                classtrack_shim::MEASURED_CLASSES
            ),
            totals.other,
        ));
    }
    classes.sort_by(|a, b| {
        b.live_bytes
            .cmp(&a.live_bytes)
            .then(b.allocated_bytes.cmp(&a.allocated_bytes))
            .then_with(|| a.name.cmp(&b.name))
    });
    let t = totals.total;
    let m = Measurement {
        allocated_bytes: t.allocated_bytes,
        allocations: t.allocations,
        peak_bytes: totals.peak_bytes,
        live_bytes: t.allocated_bytes.saturating_sub(t.freed_bytes),
        live_blocks: t.allocations.saturating_sub(t.frees),
        classes,
        elapsed,
    };
    (r, m)
}

fn class_name(class: ClassId) -> String {
    crate::registry::name_of(class).map_or_else(|| format!("class {}", class.0), |n| n.to_string())
}

/// A free measurement slot, waiting for one if all are taken.
fn take_slot() -> u8 {
    let start = Instant::now();
    loop {
        if let Some(id) = classtrack_shim::begin_measurement() {
            return id;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "classtrack::testing::measure: {} measurements are under way or have blocks still \
             live (a leak, or a measured closure's result kept); drop what they returned, or \
             measure fewer at once",
            classtrack_shim::MEASUREMENT_SLOTS
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

impl Measurement {
    /// Panics unless the peak of live bytes was at most `bytes`, with the figures, the
    /// largest classes and, where sampled, their top allocation sites.
    #[track_caller]
    pub fn assert_peak_at_most(&self, bytes: u64) {
        if self.peak_bytes > bytes {
            panic!(
                "{}",
                self.failure(
                    &format!(
                        "peak of {} ({} bytes) is above the limit of {} ({bytes} bytes)",
                        format_bytes(self.peak_bytes),
                        self.peak_bytes,
                        format_bytes(bytes)
                    ),
                    false
                )
            );
        }
    }

    /// Panics unless at most `bytes` were allocated in all, with the figures, the largest
    /// classes and, where sampled, their top allocation sites.
    #[track_caller]
    pub fn assert_allocated_at_most(&self, bytes: u64) {
        if self.allocated_bytes > bytes {
            panic!(
                "{}",
                self.failure(
                    &format!(
                        "{} ({} bytes) allocated, above the limit of {} ({bytes} bytes)",
                        format_bytes(self.allocated_bytes),
                        self.allocated_bytes,
                        format_bytes(bytes)
                    ),
                    false
                )
            );
        }
    }

    /// Panics if anything the closure allocated was still live when it returned (its result's
    /// blocks count: measure a closure that drops what it makes), with the figures, the classes
    /// that kept bytes and, where sampled, their top allocation sites.
    #[track_caller]
    pub fn assert_no_leaks(&self) {
        if self.live_blocks > 0 {
            panic!(
                "{}",
                self.failure(
                    &format!(
                        "{} in {} block{} still live at the end",
                        format_bytes(self.live_bytes),
                        self.live_blocks,
                        if self.live_blocks == 1 { "" } else { "s" }
                    ),
                    true
                )
            );
        }
    }

    /// The message of a failed assertion: the breach, the figures, the top classes and their
    /// sampled sites.
    fn failure(&self, breach: &str, live: bool) -> String {
        let _g = OverheadGuard::new();
        let mut text = format!("classtrack: {breach}\n{self}");
        let sites = site_lines(&self.classes, live);
        if !sites.is_empty() {
            text.push_str(
                "\ntop sampled allocation sites of these classes (in the whole program, \
                 estimates):\n",
            );
            text.push_str(&sites);
        }
        text
    }
}

/// Up to three sampled sites of each of the first three user classes (not `<untracked>`,
/// whose sites are the whole program's), from the sampler's table: by live bytes when `live`,
/// else by bytes allocated.
fn site_lines(classes: &[MeasuredClass], live: bool) -> String {
    let table = crate::sampling::table();
    let mut text = String::new();
    let _b = crate::sampling::Batch::new();
    for c in classes
        .iter()
        .filter(|c| c.id.is_some_and(|id| id >= ClassId::FIRST_USER))
        .take(3)
    {
        let Some(id) = c.id else {
            continue;
        };
        // Sites whose stacks read the same once symbolized (an unrolled loop's) are one.
        let mut merged: Vec<(String, crate::sampling::Estimate)> = Vec::new();
        for s in table
            .iter()
            .filter(|s| s.class == id && (!live || s.estimate.live_bytes > 0.0))
        {
            let frames = s.frames();
            let at = crate::report::console::telling_frame(&frames).map_or_else(
                || "?".to_owned(),
                |f| match (&f.file, f.line) {
                    (Some(file), Some(line)) => format!("{} ({file}:{line})", f.function),
                    _ => f.function.clone(),
                },
            );
            match merged.iter_mut().find(|(a, _)| *a == at) {
                Some((_, e)) => e.add(&s.estimate),
                None => merged.push((at, s.estimate)),
            }
        }
        merged.sort_by(|a, b| crate::sampling::Estimate::largest_first(&a.1, &b.1));
        for (at, e) in merged.iter().take(3) {
            let (bytes, samples, what) = if live {
                (e.live_bytes, e.live_samples, "live")
            } else {
                (e.allocated_bytes, e.samples, "allocated")
            };
            let _ = writeln!(
                text,
                "  {}: {} {what}  {at}",
                c.name,
                crate::report::format_site_estimate(bytes, samples, e.exact)
            );
        }
    }
    text
}

impl std::fmt::Display for Measurement {
    /// The figures, then one line per class (the ten with the most live bytes, then allocated).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "measured: peak {}, {} allocated in {} blocks, {} in {} blocks live at the end, \
             in {:?}",
            format_bytes(self.peak_bytes),
            format_bytes(self.allocated_bytes),
            self.allocations,
            format_bytes(self.live_bytes),
            self.live_blocks,
            self.elapsed
        )?;
        let width = self
            .classes
            .iter()
            .take(10)
            .map(|c| c.name.chars().count())
            .chain([5])
            .max()
            .unwrap_or(5);
        writeln!(
            f,
            "  {:<width$}  {:>12}  {:>11}  {:>12}  {:>11}",
            "class", "allocated", "allocations", "live at end", "live blocks"
        )?;
        for c in self.classes.iter().take(10) {
            writeln!(
                f,
                "  {:<width$}  {:>12}  {:>11}  {:>12}  {:>11}",
                c.name,
                format_bytes(c.allocated_bytes),
                c.allocations,
                format_bytes(c.live_bytes),
                c.live_blocks
            )?;
        }
        if self.classes.len() > 10 {
            writeln!(f, "  ({} more classes)", self.classes.len() - 10)?;
        }
        Ok(())
    }
}
