//! The configuration file: any text parses or fails with a `ConfigError`, and what
//! parses resolves or fails the same way, never a panic. The file is taken to live in
//! an empty temporary folder, so relative certificate paths find nothing.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("esprit-fuzz-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temporary folder");
        dir.join("esprit.toml")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = path();
    if let Ok(file) = engine::config::parse(path, text) {
        if let Ok(r) = engine::config::resolve(path, &file) {
            let _ = r.ike_config();
        }
    }
});
