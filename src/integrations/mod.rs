//! Integrations with other crates, each behind its own cargo feature (see "Feature flags" in
//! the crate documentation).

#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "tracing")]
pub mod tracing;

/// A hint about how the integrations are set up, for snapshots' tables and the endpoint's page
/// (see [`tracing`]'s): `allocated_bytes` is the allocator's total so far.
pub(crate) fn hint(allocated_bytes: u64) -> Option<&'static str> {
    #[cfg(feature = "tracing")]
    return tracing::quiet_hint(allocated_bytes);
    #[cfg(not(feature = "tracing"))]
    {
        let _ = allocated_bytes;
        None
    }
}
