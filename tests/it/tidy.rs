//! Tidy checks on the source tree, run as ordinary tests: rules of ARCHITECTURE.md
//! that the compiler does not enforce.

use std::path::{Path, PathBuf};

/// Where the whole `Config` may be imported: `config` itself, the top that takes it
/// apart (`stages`, `run`, `cli`, `bench`), and the broker until it takes its sections.
const TAKES_CONFIG: &[&str] = &[
    "src/config/",
    "src/stages.rs",
    "src/run.rs",
    "src/cli/",
    "src/bench/",
    "src/broker/",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Whether `source` imports `crate::config::Config` (alone or in a `{...}` group).
fn imports_config(source: &str) -> bool {
    let single = regex::Regex::new(r"crate::config::Config\b").unwrap();
    let group = regex::Regex::new(r"crate::config::\{([^}]*)\}").unwrap();
    single.is_match(source)
        || group
            .captures_iter(source)
            .any(|c| c[1].split(',').any(|name| name.trim() == "Config"))
}

#[test]
fn no_module_below_config_imports_config() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let offenders: Vec<String> = files
        .iter()
        .map(|path| {
            let relative = path.strip_prefix(root).unwrap();
            relative.to_string_lossy().replace('\\', "/")
        })
        .filter(|name| !TAKES_CONFIG.iter().any(|allowed| name.starts_with(allowed)))
        .filter(|name| imports_config(&std::fs::read_to_string(root.join(name)).unwrap()))
        .collect();
    assert!(
        offenders.is_empty(),
        "these modules import the whole Config; give them their section instead: {offenders:?}"
    );
}

#[test]
fn the_check_sees_both_import_forms() {
    assert!(imports_config("use crate::config::Config;"));
    assert!(imports_config(
        "use crate::config::{\n    Config,\n    WorkerSpec,\n};"
    ));
    assert!(!imports_config(
        "use crate::config::{StoreConfig, Synchronous};"
    ));
    assert!(!imports_config("use crate::config::store::StoreConfig;"));
}
