//! The layers keep their import rule: every `crate::` path of the code in
//! `src/` is read (in `use` lines, groups and inline paths) and checked
//! against the layer table below. Unit tests (from a file's `#[cfg(test)]`
//! on) are left out: a test may check that two layers agree on a name. A core module imports only core; the cluster side imports
//! core and cluster; the agent imports everything but the command line.
//! `docs/architecture.md` describes the layers; this test keeps it true.
//!
//! Each layer is a directory (`src/core/`, `src/cluster/`, `src/agent/`,
//! `src/cli/`) and every path names it (`crate::core::plan`). The table
//! below is the design: it says which layer each module belongs to, and the
//! test fails when a module sits in another layer's directory.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Layer {
    Core,
    Cluster,
    Agent,
    Cli,
}

/// Every module of a layer directory and the layer it belongs to.
const LAYERS: &[(&str, Layer)] = &[
    ("stage", Layer::Core),
    ("render", Layer::Core),
    ("plan", Layer::Core),
    ("hooks", Layer::Core),
    ("kinds", Layer::Core),
    ("tree", Layer::Core),
    ("yaml", Layer::Core),
    ("diagnostics", Layer::Core),
    ("object", Layer::Core),
    ("labels", Layer::Core),
    ("paths", Layer::Core),
    ("permission", Layer::Core),
    // Pure text scrubbing, used by the cluster client and the source alike.
    ("redact", Layer::Core),
    ("apply", Layer::Cluster),
    ("health", Layer::Cluster),
    ("events", Layer::Cluster),
    ("state", Layer::Cluster),
    ("client", Layer::Cluster),
    ("api_server", Layer::Cluster),
    ("run", Layer::Agent),
    ("source", Layer::Agent),
    ("server", Layer::Agent),
    ("web", Layer::Agent),
    ("metrics", Layer::Agent),
    ("logging", Layer::Agent),
    ("config", Layer::Agent),
    // It gathers every module's permissions, the agent's Lease and
    // namespace ones included.
    ("rbac", Layer::Agent),
    ("stage_commands", Layer::Cli),
    ("output", Layer::Cli),
    ("status", Layer::Cli),
];

/// Imports against the rule that are known and owned, each with why it is
/// still there. Keep this short: an entry is a debt, not a permission.
const KNOWN: &[(&str, &str, &str)] = &[];

/// A layer directory's name.
fn layer_dir(name: &str) -> Option<Layer> {
    match name {
        "core" => Some(Layer::Core),
        "cluster" => Some(Layer::Cluster),
        "agent" => Some(Layer::Agent),
        "cli" => Some(Layer::Cli),
        _ => None,
    }
}

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

/// The layer directory and module a file under `src/` belongs to
/// (`src/core/render/x.rs` is `core`, `render`); `None` for the crate roots,
/// the binary's own files and a layer's `mod.rs`.
fn module_of(src: &Path, file: &Path) -> Option<(Layer, String)> {
    let relative = file.strip_prefix(src).ok()?;
    let mut parts = relative.components().map(|c| c.as_os_str().to_str());
    let layer = layer_dir(parts.next()??)?;
    let second = parts.next()??;
    let name = second.strip_suffix(".rs").unwrap_or(second);
    (name != "mod").then(|| (layer, name.to_string()))
}

/// The `(layer, module)` pairs a source text names as `crate::<layer>::<module>`,
/// outside comments: `use` lines, use trees (`crate::core::{plan, stage::X}`,
/// over several lines too) and inline paths (`crate::agent::logging::f()`).
fn crate_imports(text: &str) -> BTreeSet<(String, String)> {
    let code: String = text
        .lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        // `$crate::` is a macro's; `xcrate::` is another name.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let mut paths = Vec::new();
        use_tree(rest, &mut Vec::new(), &mut paths);
        for path in paths {
            if let [layer, module, ..] = path.as_slice() {
                found.insert((layer.clone(), module.clone()));
            }
        }
    }
    found
}

/// The paths of one use tree at the start of `text`, each prefixed with
/// `prefix`; returns how much of `text` the tree took.
fn use_tree(text: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let text_trimmed = text.trim_start();
    let mut used = text.len() - text_trimmed.len();
    let mut rest = text_trimmed;
    if let Some(group) = rest.strip_prefix('{') {
        used += 1;
        rest = group;
        loop {
            let trimmed = rest.trim_start();
            used += rest.len() - trimmed.len();
            rest = trimmed;
            if let Some(after) = rest.strip_prefix('}') {
                return used + rest.len() - after.len();
            }
            if rest.is_empty() {
                return used;
            }
            let took = use_tree(rest, &mut prefix.clone(), out);
            rest = &rest[took..];
            used += took;
            let trimmed = rest.trim_start();
            used += rest.len() - trimmed.len();
            rest = trimmed;
            if let Some(after) = rest.strip_prefix(',') {
                used += 1;
                rest = after;
            }
        }
    }
    let name: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    used += name.len();
    rest = &rest[name.len()..];
    if name.is_empty() {
        return used.max(1);
    }
    prefix.push(name);
    match rest.strip_prefix("::") {
        Some(after) => used + 2 + use_tree(after, prefix, out),
        None => {
            out.push(prefix.clone());
            used
        }
    }
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
        let Some((directory, module)) = module_of(&src, file) else {
            continue;
        };
        let Some(layer) = layer_of(&module) else {
            unmapped.insert(module);
            continue;
        };
        if directory != layer {
            broken.push(format!(
                "{} is in the {directory:?} directory but belongs to {layer:?}",
                file.strip_prefix(&src).unwrap_or(file).display()
            ));
        }
        let text = std::fs::read_to_string(file).expect("a readable source file");
        let text = code_before_unit_tests(&text);
        for (imported_layer, imported) in crate_imports(text) {
            if imported == module {
                continue;
            }
            let Some(target) = layer_of(&imported) else {
                unmapped.insert(imported);
                continue;
            };
            if layer_dir(&imported_layer) != Some(target) {
                broken.push(format!(
                    "{} names crate::{imported_layer}::{imported}, which is in {target:?}",
                    file.strip_prefix(&src).unwrap_or(file).display()
                ));
                continue;
            }
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

/// Which modules each module imports (its unit tests aside), over all layers.
fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some((_, module)) = module_of(&src, file) else {
            continue;
        };
        let text = std::fs::read_to_string(file).expect("a readable source file");
        let imports = crate_imports(code_before_unit_tests(&text));
        let edges = graph.entry(module.clone()).or_default();
        edges.extend(
            imports
                .into_iter()
                .map(|(_, imported)| imported)
                .filter(|imported| *imported != module),
        );
    }
    graph
}

/// A cycle in `graph`, as the modules along it, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        graph: &BTreeMap<String, BTreeSet<String>>,
        module: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|m| m == module) {
            let mut cycle = path[at..].to_vec();
            cycle.push(module.to_string());
            return Some(cycle);
        }
        if done.contains(module) {
            return None;
        }
        path.push(module.to_string());
        for next in graph.get(module).into_iter().flatten() {
            if let Some(cycle) = visit(graph, next, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(module.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|module| visit(graph, module, &mut Vec::new(), &mut done))
}

/// Within a layer too, modules import each other in one direction only:
/// `stage` reads definitions and asks `render` for objects; `render` takes
/// a `StageInput` and knows nothing of stages.
#[test]
fn no_two_modules_import_each_other_even_through_others() {
    let graph = import_graph();
    assert!(graph.contains_key("render") && graph.contains_key("stage"));
    assert!(
        graph["stage"].contains("render"),
        "the check sees stage's imports"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "modules importing each other in a circle: {}",
            cycle.join(" -> ")
        );
    }
    let mut circular = BTreeMap::new();
    circular.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    circular.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(
        find_cycle(&circular),
        Some(vec!["a".into(), "b".into(), "a".into()]),
        "the cycle finder finds one"
    );
}

#[test]
fn imports_are_read_from_use_lines_groups_and_inline_paths() {
    let text = "use crate::cluster::apply::Engine;\nuse crate::{core::plan::Plan, core::stage};\n\
                let x = crate::agent::logging::short(r); // crate::agent::web in a comment\n\
                use crate::cluster::{\n    events::EventSink,\n    state::{State, StateStore},\n};\n\
                let y = $crate::cli::output::f();\n";
    let expected: BTreeSet<(String, String)> = [
        ("cluster", "apply"),
        ("core", "plan"),
        ("core", "stage"),
        ("agent", "logging"),
        ("cluster", "events"),
        ("cluster", "state"),
    ]
    .into_iter()
    .map(|(l, m)| (l.to_string(), m.to_string()))
    .collect();
    assert_eq!(crate_imports(text), expected);
}
