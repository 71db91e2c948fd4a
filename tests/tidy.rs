//! Repository rules that code review would otherwise have to remember: every Rust file says what
//! it is for in a `//!` line, and crates depend only on crates before them in the data-flow order
//! written in ARCHITECTURE.md.

use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The data-flow order of ARCHITECTURE.md.
const ORDER: &[&str] = &[
    "tern-proto",
    "tern-core",
    "tern-store",
    "tern-store-postgres",
    "tern-blobs",
    "tern-api",
    "tern-cluster",
    "tern-hooks",
    "tern-push",
    "tern-gateway",
    "tern-http",
    "tern-server",
    "tern-client",
    "tern-cli",
    "tern-testkit",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_starts_with_a_module_doc_line() {
    let mut files = Vec::new();
    for dir in ["src", "tests", "crates"] {
        rust_files(&Path::new(ROOT).join(dir), &mut files);
    }
    assert!(files.len() > 30, "found only {} files", files.len());
    let missing: Vec<_> = files
        .iter()
        .filter(|f| !std::fs::read_to_string(f).unwrap().starts_with("//!"))
        .collect();
    assert!(
        missing.is_empty(),
        "files without a leading //! line: {missing:?}"
    );
}

/// The `tern-*` names in a manifest's `[dependencies]` section.
fn tern_dependencies(manifest: &str) -> Vec<String> {
    let mut in_deps = false;
    let mut deps = Vec::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps && line.starts_with("tern-") {
            deps.push(line.split(['.', ' ', '=']).next().unwrap().to_owned());
        }
    }
    deps
}

fn package_name(manifest: &str) -> String {
    manifest
        .lines()
        .find_map(|l| l.strip_prefix("name = \""))
        .map(|rest| rest.trim_end_matches('"').to_owned())
        .unwrap()
}

#[test]
fn crates_depend_only_on_crates_before_them() {
    let mut checked = 0;
    for entry in std::fs::read_dir(Path::new(ROOT).join("crates")).unwrap() {
        let manifest_path = entry.unwrap().path().join("Cargo.toml");
        let Ok(manifest) = std::fs::read_to_string(&manifest_path) else {
            continue;
        };
        let name = package_name(&manifest);
        let Some(position) = ORDER.iter().position(|c| *c == name) else {
            // Crates outside the order (the fuzz target, the load tool) only consume it.
            continue;
        };
        for dep in tern_dependencies(&manifest) {
            let dep_position = ORDER.iter().position(|c| *c == dep).unwrap_or(usize::MAX);
            assert!(
                dep_position < position,
                "{name} depends on {dep}, which comes after it"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, ORDER.len());
}

#[test]
fn the_gateway_never_sees_a_store_and_the_sdk_sees_only_the_codec() {
    let deps = |c: &str| {
        tern_dependencies(
            &std::fs::read_to_string(Path::new(ROOT).join("crates").join(c).join("Cargo.toml"))
                .unwrap(),
        )
    };
    assert!(!deps("gateway").contains(&"tern-store".to_owned()));
    assert!(!deps("core").iter().any(|d| d != "tern-proto"));
    assert_eq!(deps("client"), vec!["tern-proto".to_owned()]);
}

#[test]
fn the_architecture_document_lists_the_crates_in_this_order() {
    let doc = std::fs::read_to_string(Path::new(ROOT).join("ARCHITECTURE.md")).unwrap();
    let positions: Vec<usize> = ORDER
        .iter()
        .map(|c| {
            doc.find(&format!("(`{c}`)"))
                .unwrap_or_else(|| panic!("ARCHITECTURE.md does not list {c}"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "ARCHITECTURE.md lists the crates out of order"
    );
}
