//! The built filter stays within its size budget, 512 KB (524,288 bytes): an accident (a
//! dependency pulling in a large table, a debug build) fails here, not in a user's proxy.
//! Envoy and Istio have no limit this close (Istio caps OCI modules at 256 MB); the budget
//! catches accidents and is no reason to rewrite a library.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

const BUDGET_BYTES: u64 = 512 * 1024;

#[test]
fn the_filter_is_within_its_size_budget() {
    let path = support::wasm_path();
    let size = std::fs::metadata(&path).unwrap().len();
    eprintln!("{}: {size} bytes ({} KB), budget {BUDGET_BYTES} bytes", path.display(), size / 1024);
    assert!(
        size <= BUDGET_BYTES,
        "{} is {size} bytes, over the {BUDGET_BYTES}-byte budget (512 KB)",
        path.display()
    );
    // A wasm module, not something else under the name.
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.get(..4), Some(&b"\0asm"[..]), "{} is not a wasm module", path.display());
}
