//! Integrations with other crates, each behind its own cargo feature (see "Feature flags" in
//! the crate docs).

#[cfg(feature = "tracing")]
pub mod tracing;
