//! The layer rules the build cannot state by itself (ARCHITECTURE.md, "Layers"):
//! - the pure crates (`sluice-core`, `sluice-stratum`, and `sluice-layout` with every feature) pull
//!   in no crate that does I/O, directly or through another dependency; sluicectl links neither the
//!   engine nor the core crate;
//! - `sluice-core` never names the Stratum crate or the engine, and Stratum V1's codec never names
//!   its session (the crate graph already refuses the first: this test reads the sources for the
//!   rest, so a path written out in full is caught too);
//! - the engine's top-level modules, and the modules inside `server/`, import each other without
//!   a cycle.
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
    dependencies_with(package, &[])
}

/// The same, with extra `cargo tree` arguments (features).
fn dependencies_with(package: &str, extra: &[&str]) -> BTreeSet<String> {
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
        .args(extra)
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
    let layout = dependencies_with("sluice-layout", &["--all-features"]);
    assert!(layout.contains("sluice-core"), "{layout:?}");
    let io: Vec<_> = IO_CRATES.iter().filter(|c| layout.contains(**c)).collect();
    assert!(io.is_empty(), "sluice-layout depends on I/O crates {io:?}");
    let ctl = normal_dependencies("sluicectl");
    assert!(ctl.contains("sluice-layout"), "{ctl:?}");
    for engine_side in ["sluice", "sluice-core", "sluice-stratum"] {
        assert!(!ctl.contains(engine_side), "sluicectl links {engine_side}");
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

/// The engine's top-level modules whose imports must form no cycle (layer 3 and the roles).
const ENGINE_MODULES: &[&str] = &[
    "plane", "server", "config", "metrics", "source", "node", "roles", "admin", "feed",
];

/// Imports that still close a cycle, each to be removed by the change that owns its module (the
/// lead empties this list): `config` builds the settings of the listeners' proxy rules and of the
/// node job source from types defined there, while both read `config::Settings`.
const ALLOWED_CYCLE_EDGES: &[(&str, &str)] = &[];

/// Each top-level module of the engine (`engine/src/NAME.rs` or `engine/src/NAME/`) and the set of
/// other top-level modules its code names as `crate::NAME` (so `use crate::NAME::…`, a path
/// written out in full, and `use crate::{NAME, …}` alike), comments aside.
fn engine_imports() -> std::collections::BTreeMap<String, BTreeSet<String>> {
    let src = root().join("engine/src");
    let mut modules = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let files = if path.is_dir() {
            rust_files(&path)
        } else if path.extension().is_some_and(|e| e == "rs") {
            vec![path]
        } else {
            continue;
        };
        let named: &mut BTreeSet<String> = modules.entry(name.clone()).or_default();
        for file in files {
            for line in std::fs::read_to_string(&file).unwrap().lines() {
                let code = line.split("//").next().unwrap_or("");
                for n in names_after(code, "crate::") {
                    if n != name {
                        named.insert(n.to_owned());
                    }
                }
            }
        }
    }
    modules
}

/// The first path segment after each `prefix` on a line of code: `prefix` NAME, or each item of a
/// `prefix{a, b::c}` group (on that line).
fn names_after<'a>(code: &'a str, prefix: &str) -> Vec<&'a str> {
    let mut names = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(prefix) {
        rest = &rest[at + prefix.len()..];
        match rest.strip_prefix('{') {
            Some(group) => names.extend(
                group
                    .split('}')
                    .next()
                    .unwrap_or("")
                    .split(',')
                    .map(|item| item.trim().split("::").next().unwrap_or("")),
            ),
            None => names.push(
                rest.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .next()
                    .unwrap_or(""),
            ),
        }
    }
    names.retain(|n| !n.is_empty());
    names
}

/// A cycle in `graph`, as the path of modules around it, if there is one.
fn find_cycle(graph: &std::collections::BTreeMap<&str, Vec<&str>>) -> Option<Vec<String>> {
    fn visit<'a>(
        node: &'a str,
        graph: &std::collections::BTreeMap<&'a str, Vec<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| *n == node) {
            let mut cycle: Vec<String> = path[at..].iter().map(|s| s.to_string()).collect();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if !done.insert(node) {
            return None;
        }
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(cycle);
        }
    }
    None
}

#[test]
fn the_engine_modules_import_each_other_without_a_cycle() {
    let imports = engine_imports();
    for m in ENGINE_MODULES {
        assert!(imports.contains_key(*m), "no module {m} in engine/src");
    }
    let mut graph = std::collections::BTreeMap::new();
    for m in ENGINE_MODULES {
        let to: Vec<&str> = ENGINE_MODULES
            .iter()
            .copied()
            .filter(|n| imports[*m].contains(*n) && !ALLOWED_CYCLE_EDGES.contains(&(m, n)))
            .collect();
        graph.insert(*m, to);
    }
    assert_eq!(find_cycle(&graph), None, "an import cycle: {graph:?}");
    // Every allowed edge still exists (else it is stale: drop it from the list).
    for (from, to) in ALLOWED_CYCLE_EDGES {
        assert!(
            imports[*from].contains(*to),
            "{from} no longer names {to}: remove it from ALLOWED_CYCLE_EDGES"
        );
    }
    // The check can fail: a made-up back edge closes a cycle.
    let mut with_back_edge = graph.clone();
    with_back_edge.get_mut("metrics").unwrap().push("server");
    assert!(find_cycle(&with_back_edge).is_some());
    assert!(imports["server"].contains("metrics"));
}

/// The modules inside `engine/src/server/` whose imports must form no cycle: every file there,
/// `mod` being `server/mod.rs`.
fn server_imports() -> std::collections::BTreeMap<String, BTreeSet<String>> {
    let dir = root().join("engine/src/server");
    let children: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|n| n != "mod")
        .collect();
    let mut modules = std::collections::BTreeMap::new();
    for name in children.iter().map(String::as_str).chain(["mod"]) {
        let text = std::fs::read_to_string(dir.join(format!("{name}.rs"))).unwrap();
        let mut named = BTreeSet::new();
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("");
            if name == "mod" {
                // `mod.rs` names a child by a path that starts with it (`core::run`,
                // `pub use shared::…`), `self::` or `crate::server::` before it or not.
                for child in &children {
                    let path = format!("{child}::");
                    let named_here = code.match_indices(&path).any(|(at, _)| {
                        let before = code[..at].trim_end_matches("self::");
                        let before = before.trim_end_matches("crate::server::");
                        !before
                            .chars()
                            .next_back()
                            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
                    });
                    if named_here {
                        named.insert(child.clone());
                    }
                }
                continue;
            }
            // A child names a sibling, or an item of `mod.rs` (a re-export: an edge to `mod`), as
            // `crate::server::NAME` (alone or in a `{…}` group).
            for item in names_after(code, "crate::server::") {
                let to = if children.contains(item) { item } else { "mod" };
                if to != name {
                    named.insert(to.to_owned());
                }
            }
        }
        modules.insert(name.to_owned(), named);
    }
    modules
}

#[test]
fn the_server_modules_import_each_other_without_a_cycle() {
    let imports = server_imports();
    for m in ["mod", "core", "connection", "limits"] {
        assert!(
            imports.contains_key(m),
            "no module {m} in engine/src/server"
        );
    }
    let graph: std::collections::BTreeMap<&str, Vec<&str>> = imports
        .iter()
        .map(|(m, to)| (m.as_str(), to.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(find_cycle(&graph), None, "an import cycle: {graph:?}");
    // The check sees the edges that matter, so it can fail: the core drives its connections,
    // and `mod.rs` starts the cores.
    assert!(imports["core"].contains("connection"), "{imports:?}");
    assert!(imports["mod"].contains("core"), "{imports:?}");
    let mut with_back_edge = graph.clone();
    with_back_edge.get_mut("connection").unwrap().push("core");
    assert!(find_cycle(&with_back_edge).is_some());
}

#[test]
fn sluicectl_builds_without_the_engine() {
    // Its tests may use the engine's fixtures (sluice-testkit, which builds headers with
    // sluice-core): dev-dependencies, absent from what an operator builds.
    let deps = normal_dependencies("sluicectl");
    for engine in ["sluice", "sluice-core", "sluice-stratum", "sluice-testkit"] {
        assert!(
            !deps.contains(engine),
            "sluicectl depends on {engine}: {deps:?}"
        );
    }
    assert!(deps.contains("sluice-layout"), "{deps:?}");
}
