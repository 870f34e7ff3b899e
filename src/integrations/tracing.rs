//! Spans as class scopes: a [`tracing_subscriber::Layer`] (feature `tracing`).
//!
//! With [`ClassLayer`] installed, entering a span enters its class scope on the current thread
//! and exiting it leaves the scope, so `#[instrument]`ed functions and tasks wrapped with
//! `.instrument(span)` are attributed with no other change to the code. A span's class is
//! found once, when the span is created, and kept in the span's extensions.
//!
//! ```
//! use tracing_subscriber::prelude::*;
//!
//! let subscriber = tracing_subscriber::registry().with(classtrack::integrations::tracing::ClassLayer::new());
//! tracing::subscriber::with_default(subscriber, || {
//!     let span = tracing::info_span!("ingest", class = "ingest batch");
//!     let _entered = span.enter();
//!     assert_eq!(classtrack::current_class(), classtrack::class_id_named("ingest batch"));
//! });
//! ```
//!
//! Spans exited out of order (which tracing allows) are handled like scope guards dropped out
//! of order: the thread's class is always that of the innermost span still entered.
//!
//! # Classes by module: [`ClassLayer::by_target`]
//!
//! `#[instrument]` names spans after their function alone (`run`, `apply`), so functions of the
//! same name in different modules would share a class; [`ClassLayer::by_target`] names each
//! class `target::name` instead, the target being the module path by default
//! (`mini_redis::server::run`).
//!
//! # Spans reach the layer whatever the log filter
//!
//! A filter installed as a layer of its own (`registry().with(EnvFilter::from_default_env())`,
//! the usual logging set-up) is global: with `RUST_LOG` unset it lets only `ERROR` through, and
//! the spans it disables reach no layer, so every allocation goes to `<untracked>`. Give the
//! logs' filter to their layer alone, and the class layer a filter that lets every span
//! through (tracing-subscriber's per-layer filters, [`Layer::with_filter`]). Below,
//! `fmt_layer` stands for `tracing_subscriber::fmt::layer()` and `env_filter` for
//! `EnvFilter::from_default_env()` (tracing-subscriber's features `fmt` and `env-filter`):
//!
//! ```
//! use tracing_subscriber::{filter, prelude::*};
//! use classtrack::integrations::tracing::ClassLayer;
//!
//! # let fmt_layer = tracing_subscriber::layer::Identity::new();
//! # let env_filter = filter::LevelFilter::ERROR;
//! let subscriber = tracing_subscriber::registry()
//!     // The logs keep their filter (RUST_LOG)…
//!     .with(fmt_layer.with_filter(env_filter))
//!     // …and every span, of any level, is a class scope.
//!     .with(ClassLayer::by_target().with_filter(filter::filter_fn(|meta| meta.is_span())));
//! tracing::subscriber::with_default(subscriber, || {
//!     let span = tracing::debug_span!("apply"); // below the logs' level
//!     let _entered = span.enter();
//!     let class = classtrack::class_id_named(&format!("{}::apply", module_path!()));
//!     assert_eq!(classtrack::current_class(), class);
//! });
//! ```
//!
//! When a layer is installed and no span has reached any for a while (a second) as the program
//! allocated (a MiB), snapshots' tables and the endpoint's page say so, in one line.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use classtrack_shim::{ClassId, OverheadGuard};
use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::Subscriber;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::scope::{class_id_named, RawScope};

/// Which spans are class scopes, and of which class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Naming {
    /// Every span: its class is named like the span.
    SpanName,
    /// Spans with this field: the field's value names the class. Others are not scopes.
    Field(&'static str),
    /// The field's value if the span has it, otherwise the span's name.
    FieldOrSpanName(&'static str),
    /// Every span: its class is named `target::name`.
    Target,
}

/// When the first layer was added to a subscriber, and the bytes allocated by then (over all
/// classes).
static INSTALLED: OnceLock<(Instant, u64)> = OnceLock::new();

/// Whether a span has reached a layer.
static SPAN_SEEN: AtomicBool = AtomicBool::new(false);

/// How long a layer may see no span before the hint shows.
const QUIET_FOR: Duration = Duration::from_secs(1);

/// How much the program must have allocated since then.
const QUIET_ALLOCATED: u64 = 1 << 20;

/// The hint snapshots' tables and the endpoint's page show.
const QUIET_HINT: &str = "hint: a ClassLayer is installed but no span has reached it, so \
    allocations outside other scopes go to <untracked>; a global filter (such as an EnvFilter \
    added with `.with(filter)`, RUST_LOG unset) disables spans for every layer: give the logs' \
    filter to their layer alone (see classtrack::integrations::tracing)";

/// The hint, if a layer has been installed for a while, the program has allocated meanwhile
/// (`allocated_bytes` now, over all classes), and no span has reached a layer.
pub(crate) fn quiet_hint(allocated_bytes: u64) -> Option<&'static str> {
    let &(at, base) = INSTALLED.get()?;
    // Relaxed: a hint; a span seen a moment late changes nothing that matters.
    let quiet = !SPAN_SEEN.load(Ordering::Relaxed)
        && at.elapsed() >= QUIET_FOR
        && allocated_bytes.saturating_sub(base) >= QUIET_ALLOCATED;
    quiet.then_some(QUIET_HINT)
}

/// A [`Layer`] that makes spans class scopes.
///
/// - [`ClassLayer::new`]: a span's class is its `class` field (`info_span!("req", class =
///   "checkout")`), or its name when it has none;
/// - [`ClassLayer::by_span_name`]: every span's class is named like the span;
/// - [`ClassLayer::by_field`]: only spans with the given field are scopes, named by its
///   value; other spans leave the current class as it is.
///
/// A field's value is taken as text: a string as is, anything else by its `Debug` form
/// (`class = %name` records its `Display` form). Recording the field later with
/// `Span::record` changes the class from the span's next entry on.
///
/// Spans are class scopes only while they are entered: the time between polls of an
/// `.instrument(span)`ed future is not charged. Spans created inside a class scope also cost
/// the registry some memory (its span slots and stacks, kept for reuse), charged to the scope
/// that was current.
#[derive(Debug, Clone)]
pub struct ClassLayer {
    naming: Naming,
}

impl Default for ClassLayer {
    fn default() -> Self {
        ClassLayer::new()
    }
}

impl ClassLayer {
    /// A layer that charges a span's allocations to the class named by its `class` field, or
    /// by its name when it has no such field.
    pub fn new() -> ClassLayer {
        ClassLayer {
            naming: Naming::FieldOrSpanName("class"),
        }
    }

    /// A layer that charges every span's allocations to a class named like the span.
    pub fn by_span_name() -> ClassLayer {
        ClassLayer {
            naming: Naming::SpanName,
        }
    }

    /// A layer that charges every span's allocations to a class named `target::name`: with
    /// `#[instrument]`, the module path and the function (`mini_redis::server::run`).
    ///
    /// ```
    /// use tracing_subscriber::prelude::*;
    ///
    /// let layer = classtrack::integrations::tracing::ClassLayer::by_target();
    /// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    ///     let _entered = tracing::info_span!(target: "app::server", "run").entered();
    ///     assert_eq!(classtrack::current_class(), classtrack::class_id_named("app::server::run"));
    /// });
    /// ```
    pub fn by_target() -> ClassLayer {
        ClassLayer {
            naming: Naming::Target,
        }
    }

    /// A layer that makes only spans with the field `field` class scopes, their class named
    /// by its value.
    pub fn by_field(field: &'static str) -> ClassLayer {
        ClassLayer {
            naming: Naming::Field(field),
        }
    }

    fn field(&self) -> Option<&'static str> {
        match self.naming {
            Naming::SpanName | Naming::Target => None,
            Naming::Field(f) | Naming::FieldOrSpanName(f) => Some(f),
        }
    }
}

/// A span's class, kept in its extensions.
#[derive(Debug, Clone, Copy)]
struct SpanClass(ClassId);

/// Finds one field's value, as text.
struct FieldValue {
    name: &'static str,
    value: Option<String>,
}

impl Visit for FieldValue {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == self.name {
            self.value = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == self.name {
            self.value = Some(format!("{value:?}"));
        }
    }
}

thread_local! {
    /// The spans this layer entered on this thread, innermost last, with their scopes.
    static ENTERED: RefCell<Vec<(u64, RawScope)>> = const { RefCell::new(Vec::new()) };
}

impl<S> Layer<S> for ClassLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_layer(&mut self, _subscriber: &mut S) {
        let _g = OverheadGuard::new();
        INSTALLED.get_or_init(|| {
            let allocated = classtrack_shim::read_totals(crate::registry::class_count())
                .iter()
                .map(|c| c.allocated_bytes)
                .sum();
            (Instant::now(), allocated)
        });
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        // Relaxed: a hint (see `quiet_hint`). Loaded first: a store on every span would
        // bounce the line between threads.
        if !SPAN_SEEN.load(Ordering::Relaxed) {
            SPAN_SEEN.store(true, Ordering::Relaxed);
        }
        let _g = OverheadGuard::new();
        let name = match self.field() {
            Some(field) => {
                let mut v = FieldValue {
                    name: field,
                    value: None,
                };
                attrs.record(&mut v);
                v.value
            }
            None => None,
        };
        let class = match (name, self.naming) {
            (Some(name), _) => class_id_named(&name),
            (None, Naming::Field(_)) => return,
            (None, Naming::Target) => {
                let meta = attrs.metadata();
                class_id_named(&format!("{}::{}", meta.target(), meta.name()))
            }
            (None, _) => class_id_named(attrs.metadata().name()),
        };
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanClass(class));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(field) = self.field() else {
            return;
        };
        let _g = OverheadGuard::new();
        let mut v = FieldValue {
            name: field,
            value: None,
        };
        values.record(&mut v);
        let (Some(name), Some(span)) = (v.value, ctx.span(id)) else {
            return;
        };
        let class = class_id_named(&name);
        let mut ext = span.extensions_mut();
        match ext.get_mut::<SpanClass>() {
            Some(c) => c.0 = class,
            None => ext.insert(SpanClass(class)),
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        let class = {
            let _g = OverheadGuard::new();
            ctx.span(id)
                .and_then(|s| s.extensions().get::<SpanClass>().copied())
        };
        let Some(SpanClass(class)) = class else {
            return;
        };
        let raw = RawScope::enter_class(class);
        let _g = OverheadGuard::new();
        let pushed = ENTERED.try_with(|e| e.borrow_mut().push((id.into_u64(), raw)));
        if pushed.is_err() {
            // The thread is exiting: nothing would exit the scope later; leave it now.
            drop(_g);
            raw.exit();
        }
    }

    fn on_exit(&self, id: &Id, _ctx: Context<'_, S>) {
        let key = id.into_u64();
        let raw = ENTERED
            .try_with(|e| {
                let mut e = e.borrow_mut();
                let i = e.iter().rposition(|&(k, _)| k == key)?;
                Some(e.remove(i).1)
            })
            .ok()
            .flatten();
        if let Some(raw) = raw {
            raw.exit();
        }
    }
}
