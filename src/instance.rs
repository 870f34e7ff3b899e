//! Tracked instances: options, the `Tracked<T>` wrapper and the tracker's records of them.

use std::fmt::Debug;
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use classtrack_shim::{OverheadGuard, Tag};
use serde::{Deserialize, Serialize};

use crate::history::{Event, History};
use crate::scope::ScopeGuard;

/// The longest `repr` kept for an instance, in characters.
pub const REPR_LIMIT: usize = 128;

/// How a class (or an object) is tracked: pympler's `name`, `resolution_level`, `keep` and
/// `trace`.
///
/// ```
/// let opts = classtrack::TrackOptions::new().name("order").trace(true);
/// assert_eq!(opts.name.as_deref(), Some("order"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TrackOptions {
    /// The name shown for the class or object; by default the class name
    /// (`std::any::type_name::<T>()`).
    pub name: Option<String>,
    /// How deep an instance's bytes are broken down by the scopes nested in its own: 0 = not at
    /// all, 1 = by the scopes entered directly inside it, 2 = also by the scopes inside those.
    /// Change it for one live instance with
    /// [`ClassTracker::track_change`](crate::ClassTracker::track_change).
    ///
    /// A constructed instance is broken down as its blocks are allocated, each nested scope
    /// charging a node of its own. An object tracked by handle was allocated before it was
    /// tracked, under whatever scope was current then: it is broken down by traversal, field
    /// by field, to this depth, when tracked with
    /// [`track_object_footprint`](crate::ClassTracker::track_object_footprint); given to
    /// [`track_object`](crate::ClassTracker::track_object), it is tracked with no breakdown
    /// ([`Breakdown::Unavailable`](crate::Breakdown::Unavailable)).
    pub resolution_level: u32,
    /// For `track_object`: the tracker holds a strong reference, so the object lives at least
    /// as long as it is tracked. (A constructed [`Tracked<T>`] is owned by the program; `keep`
    /// has no effect on it.)
    pub keep: bool,
    /// Capture the construction backtrace of each instance (cheaply: symbols are resolved only
    /// when shown).
    pub trace: bool,
}

impl TrackOptions {
    /// Default options: the class name, no breakdown, no keep, no trace.
    pub fn new() -> TrackOptions {
        TrackOptions::default()
    }

    /// Sets the name shown.
    pub fn name(mut self, name: impl Into<String>) -> TrackOptions {
        self.name = Some(name.into());
        self
    }

    /// Sets the breakdown depth.
    pub fn resolution_level(mut self, level: u32) -> TrackOptions {
        self.resolution_level = level;
        self
    }

    /// Sets whether the tracker keeps tracked objects alive.
    pub fn keep(mut self, keep: bool) -> TrackOptions {
        self.keep = keep;
        self
    }

    /// Sets whether construction backtraces are captured.
    pub fn trace(mut self, trace: bool) -> TrackOptions {
        self.trace = trace;
        self
    }
}

/// Clips a representation to [`REPR_LIMIT`] characters.
pub(crate) fn clip(mut s: String) -> String {
    if let Some((i, _)) = s.char_indices().nth(REPR_LIMIT) {
        s.truncate(i);
        s.push('…');
    }
    s
}

/// The frame that separates classtrack's own frames from the program's in a construction
/// trace: the public entry points (`construct`, `construct_debug`, `track_object`,
/// `track_object_debug`) run their work through it, so every frame above it in a trace
/// (`capture_trace`, the unwinder, closure glue, whatever the optimizer inlined) is
/// classtrack's, and the frame below it is the program's call (or the public entry point,
/// when that was not inlined into the program, which `resolve_trace` skips by name).
///
/// Not generic, so it has one address to look for; never inlined, and not a tail call, so it
/// always has a frame of its own.
#[inline(never)]
fn trace_marker(f: &mut dyn FnMut()) {
    f();
    // Work after the call keeps `f()` from becoming a tail call, which would pop this frame.
    std::hint::black_box(());
}

/// Runs `f` through [`trace_marker`]: construction traces captured inside `f` start below
/// it.
#[inline(always)]
pub(crate) fn through_marker<R>(f: impl FnOnce() -> R) -> R {
    let mut f = Some(f);
    let mut out = None;
    trace_marker(&mut || out = f.take().map(|f| f()));
    match out {
        Some(out) => out,
        None => unreachable!("classtrack: the trace marker did not run its closure"),
    }
}

/// Whether `frame` is [`trace_marker`]'s: by the start address of its function (what the
/// unwinder reports), or, where the unwinder does not report one, by a return address just
/// past the start of the marker (its body is a call and a return).
fn is_marker(frame: &backtrace::Frame) -> bool {
    let marker = trace_marker as fn(&mut dyn FnMut()) as usize;
    match frame.symbol_address() as usize {
        0 => {
            let ip = frame.ip() as usize;
            ip > marker && ip - marker < 128
        }
        start => start == marker,
    }
}

/// The deepest construction backtrace kept, in frames.
const TRACE_DEPTH: usize = 64;

/// Captures the current stack as raw return addresses (8 bytes a frame; no symbols), starting
/// below [`trace_marker`] when the capture runs inside [`through_marker`] (the whole stack
/// otherwise).
pub(crate) fn capture_trace() -> Box<[usize]> {
    let _g = OverheadGuard::new();
    let mut ips = Vec::with_capacity(TRACE_DEPTH);
    let mut below_marker = false;
    crate::fork::with_backtrace(|| {
        backtrace::trace(|frame| {
            if !below_marker && is_marker(frame) {
                // Everything so far was classtrack's own.
                below_marker = true;
                ips.clear();
                return true;
            }
            ips.push(frame.ip() as usize);
            // Without a marker (a capture outside `through_marker`), look a little further for
            // one; then keep the top (trimmed by name and file when resolved).
            let limit = if below_marker {
                TRACE_DEPTH
            } else {
                4 * TRACE_DEPTH
            };
            ips.len() < limit
        })
    });
    ips.truncate(TRACE_DEPTH);
    ips.into_boxed_slice()
}

/// How the tracker learns an instance's size and whether it is alive.
pub(crate) enum Source {
    /// Built by `construct`: its size is its object's live bytes; its death is reported by
    /// `Tracked<T>`'s drop.
    Constructed { object: u32 },
    /// Registered by `track_object`.
    Shared(Arc<dyn SharedObject>),
}

/// An `Arc` tracked by handle.
pub(crate) trait SharedObject: Send + Sync {
    fn alive(&self) -> bool;
    /// Its size now, and its parts: by traversal where it has one, else its own inline bytes.
    fn measure(&self) -> (u64, Vec<crate::objects::Referent>);
    fn repr(&self) -> Option<String>;
    fn address(&self) -> usize;
}

pub(crate) struct SharedArc<T: Send + Sync + 'static> {
    pub(crate) weak: Weak<T>,
    /// With `keep`: held (never read) to keep the object alive while it is tracked.
    pub(crate) _kept: Option<Arc<T>>,
    pub(crate) repr: Option<fn(&T) -> String>,
    /// A traversal ([`Footprint`](crate::Footprint) or `Allocative`), and the depth of its
    /// breakdown.
    pub(crate) walk: Option<(Walk<T>, u32)>,
}

/// How a traversal measures a value, to a depth.
pub(crate) type Walk<T> = fn(&T, u32) -> crate::footprint::FootprintSize;

impl<T: Send + Sync + 'static> SharedObject for SharedArc<T> {
    fn alive(&self) -> bool {
        self.weak.strong_count() > 0
    }

    fn measure(&self) -> (u64, Vec<crate::objects::Referent>) {
        let Some(obj) = self.weak.upgrade() else {
            return (0, Vec::new());
        };
        match self.walk {
            Some((walk, depth)) => {
                let size = walk(&obj, depth);
                (size.bytes, size.referents)
            }
            None => (std::mem::size_of_val(&*obj) as u64, Vec::new()),
        }
    }

    fn repr(&self) -> Option<String> {
        let f = self.repr?;
        self.weak.upgrade().map(|a| f(&a))
    }

    fn address(&self) -> usize {
        self.weak.as_ptr() as *const () as usize
    }
}

/// The link from a `Tracked<T>` to its record.
struct Handle {
    history: Weak<History>,
    id: u64,
    tag: Tag,
}

/// A value built by [`ClassTracker::construct`](crate::ClassTracker::construct): it derefs to
/// the value, charges growth made through [`Tracked::scope`] to the instance, and its drop is
/// the instance's death.
///
/// The instance's size is the live bytes of the blocks allocated in its scopes (at
/// construction and in `scope`), wherever they are now; bytes allocated for it elsewhere are
/// charged to the scope that allocated them. The value itself lives where the `Tracked` is
/// (box it to count its own bytes).
pub struct Tracked<T> {
    value: ManuallyDrop<T>,
    handle: Option<Handle>,
    repr: Option<fn(&T) -> String>,
    /// The snapshot epoch the representation was last refreshed at.
    seen: AtomicU64,
}

/// Bumped by every snapshot of every tracker: a `Tracked<T>` with a representation refreshes
/// it at its first access after a snapshot (before any change made through that access), so
/// the tracker never reads a value behind its owner's back.
static SNAPSHOT_EPOCH: AtomicU64 = AtomicU64::new(0);

/// A snapshot was taken.
pub(crate) fn bump_epoch() {
    // Relaxed: a hint that a refresh is due; nothing is published with it.
    SNAPSHOT_EPOCH.fetch_add(1, Ordering::Relaxed);
}

impl<T> Tracked<T> {
    pub(crate) fn untracked(value: T) -> Tracked<T> {
        Tracked {
            value: ManuallyDrop::new(value),
            handle: None,
            repr: None,
            seen: AtomicU64::new(0),
        }
    }

    pub(crate) fn new(
        value: T,
        history: Weak<History>,
        id: u64,
        tag: Tag,
        repr: Option<fn(&T) -> String>,
    ) -> Tracked<T> {
        Tracked {
            value: ManuallyDrop::new(value),
            handle: Some(Handle { history, id, tag }),
            repr,
            // Relaxed: see `bump_epoch`.
            seen: AtomicU64::new(SNAPSHOT_EPOCH.load(Ordering::Relaxed)),
        }
    }

    /// The instance id, or `None` when the class was not tracked at construction.
    pub fn id(&self) -> Option<u64> {
        self.handle.as_ref().map(|h| h.id)
    }

    /// The tracker record this value reports to, its instance id and its object id.
    pub(crate) fn link(&self) -> Option<(&Weak<History>, u64, u32)> {
        self.handle
            .as_ref()
            .map(|h| (&h.history, h.id, h.tag.object))
    }

    /// Runs `f` on the value inside the instance's scope: what it allocates (and the growth of
    /// what it resizes) is charged to this instance and its class.
    ///
    /// ```
    /// # use classtrack::{ClassTracker, TrackOptions};
    /// struct Basket { items: Vec<String> }
    /// let tracker = ClassTracker::new();
    /// tracker.track_class::<Basket>(TrackOptions::new());
    /// let mut basket = tracker.construct(|| Basket { items: Vec::new() });
    /// basket.scope(|b| b.items.push("apple".to_string()));
    /// assert_eq!(basket.items.len(), 1);
    /// ```
    pub fn scope<R>(&mut self, f: impl FnOnce(&mut T) -> R) -> R {
        let r = match &self.handle {
            Some(h) => {
                let _g = ScopeGuard::enter_tag(h.tag);
                f(&mut self.value)
            }
            None => f(&mut self.value),
        };
        self.refresh();
        r
    }

    /// Updates the instance's recorded representation (for values built with
    /// [`construct_debug`](crate::ClassTracker::construct_debug)); done by `scope` and at drop.
    pub fn refresh(&self) {
        if let (Some(h), Some(repr)) = (&self.handle, self.repr) {
            if let Some(history) = h.history.upgrade() {
                let text = {
                    let _g = OverheadGuard::new();
                    clip(repr(&self.value))
                };
                history.post(Event::Repr(h.id, text));
            }
        }
    }

    /// Takes the value out; the instance dies now (its blocks stay charged to it until freed).
    pub fn into_inner(mut self) -> T {
        self.refresh();
        self.release_handle();
        // SAFETY: `value` is taken exactly once; `self` is forgotten below so it is not dropped
        // again.
        let value = unsafe { ManuallyDrop::take(&mut self.value) };
        std::mem::forget(self);
        value
    }

    /// Records the instance's death and releases its object ids (once), without waiting for
    /// the tracker's lock: the tracker gives the ids back when it applies the death (so a
    /// snapshot that still counts the instance alive never reads a reused id).
    fn release_handle(&mut self) {
        if let Some(h) = self.handle.take() {
            match h.history.upgrade() {
                Some(history) => history.post(Event::Death {
                    id: h.id,
                    time: history.now(),
                    object: h.tag.object,
                }),
                None => crate::objects::release_tree(h.tag.object),
            }
        }
    }
}

impl<T> Drop for Tracked<T> {
    fn drop(&mut self) {
        self.refresh();
        // SAFETY: the value is dropped exactly once, here; it is not used afterwards.
        unsafe { ManuallyDrop::drop(&mut self.value) };
        // The value's blocks are freed now: record the death and release its object ids.
        self.release_handle();
    }
}

impl<T> Tracked<T> {
    /// Refreshes the representation if a snapshot was taken since the last refresh.
    #[inline]
    fn refresh_if_stale(&self) {
        if self.repr.is_none() {
            return;
        }
        // Relaxed: a hint; a refresh one access late is harmless.
        let epoch = SNAPSHOT_EPOCH.load(Ordering::Relaxed);
        if self.seen.swap(epoch, Ordering::Relaxed) != epoch {
            self.refresh();
        }
    }
}

impl<T> Deref for Tracked<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.refresh_if_stale();
        &self.value
    }
}

impl<T> DerefMut for Tracked<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.refresh_if_stale();
        &mut self.value
    }
}

impl<T: Debug> Debug for Tracked<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracked")
            .field("id", &self.id())
            .field("value", &*self.value)
            .finish()
    }
}
