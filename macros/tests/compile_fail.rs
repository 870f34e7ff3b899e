//! The attribute macros' compile errors, each with a message that says what to do: `class`
//! on a function, on an impl block with no constructor, on a `const fn` constructor, with an
//! unknown argument; `scope` on a `const fn`, on a struct, with an argument that is not a
//! string; `#[derive(Footprint)]` on a union, and with a field attribute other than
//! `#[footprint(skip)]`. The expected messages are the `.stderr` files beside each case in `tests/ui/`.
//!
//! The errors come from the expansion, before any of classtrack's paths is resolved: the cases
//! use this crate alone (`#[classtrack_macros::class]`, which users write
//! `#[classtrack::class]`), so that the test builds nothing but it.

#[test]
fn compile_errors_say_what_to_do() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
