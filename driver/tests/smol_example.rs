//! The smol adapter of `examples/smol.rs` completes its ping: `cargo test` runs it.

#[path = "../examples/smol.rs"]
mod example;

#[test]
fn the_smol_adapter_completes_a_ping_to_three_nodes() {
    example::main();
}
