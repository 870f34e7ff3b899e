//! What the attribute macros (`classtrack-macros`) expand to, beyond the public API. Not a
//! public interface: it changes with the macros.

use std::future::Future;

use crate::{InClass, Scoped};

/// An `async fn`'s body wrapped in the class scope of `T`. The output type is named so that
/// `?` in the body infers its error type.
#[inline]
pub fn in_class_of<T: ?Sized + 'static, R, F: Future<Output = R>>(future: F) -> Scoped<F> {
    future.in_class::<T>()
}

/// An `async fn`'s body wrapped in the class scope named `name`.
#[inline]
pub fn in_class_named<R, F: Future<Output = R>>(future: F, name: &str) -> Scoped<F> {
    future.in_class_named(name)
}
