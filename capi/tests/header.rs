//! The committed header `include/caq.h` is what cbindgen makes of `src/lib.rs` today: a change to
//! the ABI without regenerating it fails here. `CAQ_BLESS=1 cargo test -p caq-capi --test header`
//! rewrites it.

use std::path::Path;

#[test]
fn the_committed_header_is_what_cbindgen_generates() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut fresh = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut fresh);
    let fresh = String::from_utf8(fresh).expect("UTF-8 header");
    let path = crate_dir.join("include/caq.h");
    if std::env::var_os("CAQ_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("write include/caq.h");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "{} is stale: regenerate it with CAQ_BLESS=1 cargo test -p caq-capi --test header",
        path.display()
    );
}
