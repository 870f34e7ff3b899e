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

use std::cell::RefCell;

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

    /// A layer that makes only spans with the field `field` class scopes, their class named
    /// by its value.
    pub fn by_field(field: &'static str) -> ClassLayer {
        ClassLayer {
            naming: Naming::Field(field),
        }
    }

    fn field(&self) -> Option<&'static str> {
        match self.naming {
            Naming::SpanName => None,
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
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
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
