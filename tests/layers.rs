//! The layer rules the build cannot state by itself (ARCHITECTURE.md, "Layers"):
//! - the pure crates (`sluice-core`, `sluice-stratum`) pull in no crate that does I/O, directly or
//!   through another dependency;
//! - `sluice-core` never names the Stratum crate or the engine, and Stratum V1's codec never names
//!   its session (the crate graph already refuses the first: this test reads the sources for the
//!   rest, so a path written out in full is caught too).
//!
//! The crate graph does most of the work; this is the small check that does the rest.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Crates that do I/O (or exist to), which a pure crate must never depend on.
const IO_CRATES: &[&str] = &[
    "tokio",
    "tokio-uring",
    "io-uring",
    "mio",
    "redis",
    "libc",
    "socket2",
    "nix",
    "hyper",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every package in the normal (non-dev, non-build) dependency tree of `package`.
fn normal_dependencies(package: &str) -> BTreeSet<String> {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "--locked",
            "-p",
            package,
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(root())
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// The files under `dir` whose code (comments aside) contains one of `needles`.
fn files_naming(dir: &Path, needles: &[&str]) -> Vec<String> {
    rust_files(dir)
        .into_iter()
        .filter(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(|l| l.split("//").next().unwrap_or(""))
                .any(|code| needles.iter().any(|n| code.contains(n)))
        })
        .map(|f| f.display().to_string())
        .collect()
}

#[test]
fn the_pure_crates_depend_on_no_io_crate() {
    for package in ["sluice-core", "sluice-stratum"] {
        let deps = normal_dependencies(package);
        assert!(
            deps.contains(package),
            "{package} is in its own tree: {deps:?}"
        );
        let io: Vec<_> = IO_CRATES.iter().filter(|c| deps.contains(**c)).collect();
        assert!(io.is_empty(), "{package} depends on I/O crates {io:?}");
    }
    // The check can fail: the engine does depend on them.
    let engine = normal_dependencies("sluice");
    assert!(engine.contains("tokio-uring") && engine.contains("redis"));
}

#[test]
fn the_core_knows_no_protocol_and_the_codec_knows_no_session() {
    let core = root().join("engine/core/src");
    let named = files_naming(
        &core,
        &[
            "sluice_stratum",
            "sluice::",
            "crate::stratum",
            "crate::session",
        ],
    );
    assert!(
        named.is_empty(),
        "the protocol-neutral core names a protocol: {named:?}"
    );
    let codec = root().join("engine/stratum/src/codec");
    let named = files_naming(&codec, &["crate::session", "super::session"]);
    assert!(
        named.is_empty(),
        "the V1 codec names the session: {named:?}"
    );
    // The check can fail: the session does name the codec.
    let session = root().join("engine/stratum/src/session");
    assert!(!files_naming(&session, &["crate::codec"]).is_empty());
}
