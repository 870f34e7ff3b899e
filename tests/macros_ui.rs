//! The attribute macros' compile errors, each with a message that says what to do: `class`
//! on a function, on an impl block with no constructor, on a `const fn` constructor, with an
//! unknown argument; `scope` on a `const fn`, on a struct, with an argument that is not a
//! string. The expected messages are the `.stderr` files beside each case in `tests/ui/`.
#![cfg(feature = "macros")]

#[test]
#[cfg_attr(
    any(not(debug_assertions), feature = "server"),
    ignore = "builds a project of its own (about 2 minutes): run in the debug pass with default \
              features, `cargo test --test macros_ui`"
)]
fn compile_errors_say_what_to_do() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
