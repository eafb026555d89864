//! The architecture invariants of ARCHITECTURE.md that a text search can
//! check, checked: a change that breaks one fails here, with the line.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `root` (a file or a folder), with its text.
fn sources(root: &str) -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(root);
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("readable folder") {
                stack.push(entry.expect("entry").path());
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("readable source");
            out.push((path, text));
        }
    }
    assert!(!out.is_empty(), "no sources found");
    out
}

/// The lines of `roots` that contain any of `needles`.
fn offenders(roots: &[&str], needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for root in roots {
        for (path, text) in sources(root) {
            for (n, line) in text.lines().enumerate() {
                if needles.iter().any(|needle| line.contains(needle)) {
                    found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                }
            }
        }
    }
    found
}

#[test]
fn the_core_imports_no_dialect() {
    let core = [
        "src/hub",
        "src/sources",
        "src/store",
        "src/calendar",
        "src/clock.rs",
        "src/auth.rs",
        "src/metrics.rs",
        "src/config",
        "src/gateway.rs",
        "src/runtime",
        "src/market",
        "src/broker",
    ];
    let found = offenders(&core, &["crate::dialects"]);
    assert!(
        found.is_empty(),
        "the core names a dialect:\n{}",
        found.join("\n")
    );
}

#[test]
fn no_dialect_module_owns_a_socket_loop() {
    let found = offenders(
        &["src/dialects"],
        &["StreamExt", ".split()", "Message::", "WebSocketStream"],
    );
    assert!(
        found.is_empty(),
        "a dialect reads or writes its socket itself; give the runtime a Handler instead:\n{}",
        found.join("\n")
    );
}

#[test]
fn only_protocol_builds_frames() {
    let found = offenders(
        &["src/dialects", "src/hub", "src/runtime"],
        &["serde_json::to_string", "unwrap_or_default().into()"],
    );
    assert!(
        found.is_empty(),
        "frames are built outside src/protocol:\n{}",
        found.join("\n")
    );
}
