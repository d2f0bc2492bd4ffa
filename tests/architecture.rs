//! The layers keep their import rule: every `crate::` path of the code in
//! `src/` is read (in `use` lines, groups and inline paths) and checked
//! against the layer table below. Unit tests (from a file's `#[cfg(test)]`
//! on) are left out: a test may check that two layers agree on a name. A core module imports only core; the cluster side imports
//! core and cluster; the agent imports everything but the command line.
//! `docs/architecture.md` describes the layers; this test keeps it true.
//!
//! The table maps today's top-level modules to their layer. When modules
//! move into layer directories (`src/core/…`), the table is the one place to
//! update: map the new paths' first segments the same way.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Layer {
    Core,
    Cluster,
    Agent,
    Cli,
}

/// Every top-level module of `src/` and its layer.
const LAYERS: &[(&str, Layer)] = &[
    ("stage", Layer::Core),
    ("render", Layer::Core),
    ("plan", Layer::Core),
    ("hooks", Layer::Core),
    ("tree", Layer::Core),
    ("yaml", Layer::Core),
    ("diagnostics", Layer::Core),
    ("object", Layer::Core),
    ("labels", Layer::Core),
    ("paths", Layer::Core),
    // Pure text scrubbing, used by the cluster client and the source alike.
    ("redact", Layer::Core),
    ("apply", Layer::Cluster),
    ("health", Layer::Cluster),
    ("events", Layer::Cluster),
    ("state", Layer::Cluster),
    ("cluster", Layer::Cluster),
    ("rbac", Layer::Cluster),
    ("run", Layer::Agent),
    ("source", Layer::Agent),
    ("server", Layer::Agent),
    ("web", Layer::Agent),
    ("metrics", Layer::Agent),
    ("logging", Layer::Agent),
    ("config", Layer::Agent),
    ("stage_commands", Layer::Cli),
    ("output", Layer::Cli),
    ("status", Layer::Cli),
];

/// Imports against the rule that are known and owned, each with why it is
/// still there. Keep this short: an entry is a debt, not a permission.
const KNOWN: &[(&str, &str, &str)] = &[
    (
        "web",
        "output",
        "the status page's report uses output::hook_lines, the command \
         line's wording of a hook; it belongs with hooks, below both",
    ),
    (
        "rbac",
        "run",
        "rbac::required() gathers every module's permissions, the agent's \
         Lease and namespace ones included; it belongs with the agent",
    ),
];

fn layer_of(module: &str) -> Option<Layer> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file under `src/` belongs to (`src/apply/x.rs` and
/// `src/apply.rs` are `apply`); `None` for the crate roots.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

/// The modules a source text names as `crate::<module>`, outside comments:
/// `use crate::a::b;`, `use crate::{a, b::c};` and inline `crate::a::f()`.
fn crate_imports(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().last();
            rest = &rest[at + "crate::".len()..];
            // `stagegate::crate::` cannot occur; `$crate::` is a macro's.
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let name = item.trim().split("::").next().unwrap_or_default().trim();
                    if !name.is_empty() {
                        found.insert(name.to_string());
                    }
                }
                continue;
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

/// Multi-line `use crate::{…}` groups: the names on the lines after the brace.
fn grouped_imports(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut in_group = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("use crate::{") && !trimmed.contains('}') {
            in_group = true;
            continue;
        }
        if in_group {
            if trimmed.starts_with('}') {
                in_group = false;
                continue;
            }
            let name = trimmed.split("::").next().unwrap_or_default();
            let name = name.trim_end_matches(',').trim();
            if !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                found.insert(name.to_string());
            }
        }
    }
    found
}

/// A file's code up to its unit tests (a top-level `#[cfg(test)]`).
fn code_before_unit_tests(text: &str) -> &str {
    match text.find("\n#[cfg(test)]") {
        Some(at) => &text[..at],
        None => text,
    }
}

#[test]
fn every_module_imports_only_its_own_layer_or_the_ones_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(
        files.len() > 50,
        "the sources were not found under {}",
        src.display()
    );
    let mut unmapped = BTreeSet::new();
    let mut broken = Vec::new();
    let mut known_seen = BTreeSet::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let Some(layer) = layer_of(&module) else {
            unmapped.insert(module);
            continue;
        };
        let text = std::fs::read_to_string(file).expect("a readable source file");
        let text = code_before_unit_tests(&text);
        let mut imports = crate_imports(text);
        imports.extend(grouped_imports(text));
        for imported in imports {
            if imported == module {
                continue;
            }
            let Some(target) = layer_of(&imported) else {
                unmapped.insert(imported);
                continue;
            };
            if target <= layer {
                continue;
            }
            if KNOWN
                .iter()
                .any(|(from, to, _)| *from == module && *to == imported)
            {
                known_seen.insert((module.clone(), imported.clone()));
                continue;
            }
            broken.push(format!(
                "{} ({layer:?}) imports crate::{imported} ({target:?})",
                file.strip_prefix(&src).unwrap_or(file).display()
            ));
        }
    }
    assert!(
        unmapped.is_empty(),
        "modules missing from the layer table in tests/architecture.rs: {unmapped:?}"
    );
    assert!(
        broken.is_empty(),
        "imports against the layer rule (see docs/architecture.md):\n{}",
        broken.join("\n")
    );
    let stale: Vec<_> = KNOWN
        .iter()
        .filter(|(from, to, _)| !known_seen.contains(&(from.to_string(), to.to_string())))
        .collect();
    assert!(
        stale.is_empty(),
        "known exceptions no longer needed: {stale:?}"
    );
}

#[test]
fn imports_are_read_from_use_lines_groups_and_inline_paths() {
    let text = "use crate::apply::Engine;\nuse crate::{plan::Plan, stage};\n\
                let x = crate::logging::short(r); // crate::web in a comment\n\
                use crate::{\n    metrics::Metrics,\n    state::{State, StateStore},\n};\n";
    let mut found = crate_imports(text);
    found.extend(grouped_imports(text));
    let expected: BTreeSet<String> = ["apply", "plan", "stage", "logging", "metrics", "state"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(found, expected);
}
