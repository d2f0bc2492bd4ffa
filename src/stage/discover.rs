//! Finding the stage definitions of a repository: every YAML file under the
//! stages directory, read for `Stage` and Flux `Kustomization` documents.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::definition::read_definition;
use super::{Stage, is_stage_document};
use crate::diagnostics::{DISCOVERY_YAML, Problem, Problems};
use crate::paths::display_path;
use crate::yaml::parse_documents;

/// Every stage declared under `dir` (inside the canonical `root`), in file
/// order, with the problems met on the way.
pub fn discover_stages(root: &Path, dir: &Path) -> (Vec<Stage>, Problems) {
    let mut problems = Problems::default();
    let mut files = Vec::new();
    collect_yaml_files(root, dir, &mut files, &mut problems);
    let mut stages = Vec::new();
    for file in files {
        let shown = display_path(root, &file);
        let text = match fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) => {
                problems.push(Problem::error(format!("cannot read: {e}")).in_file(&shown));
                continue;
            }
        };
        let docs = match parse_documents(&text) {
            Ok(docs) => docs,
            Err(e) => {
                problems.push(Problem::error(format!("{DISCOVERY_YAML}{e}")).in_file(&shown));
                continue;
            }
        };
        for doc in docs {
            let api_version = doc
                .value
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let kind = doc
                .value
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !is_stage_document(api_version, kind) {
                continue;
            }
            let definition = read_definition(&shown, &doc);
            problems.extend(definition.problems);
            stages.extend(definition.stage);
        }
    }
    (stages, problems)
}

/// YAML files under `dir`, sorted by path. Hidden directories (`.git`,
/// `.github`) hold no stages; symlinked directories are not followed, since a
/// link could lead out of the repository.
fn collect_yaml_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>, problems: &mut Problems) {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            problems.push(
                Problem::error(format!("cannot read directory: {e}"))
                    .in_file(display_path(root, dir)),
            );
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.file_name().is_some_and(|n| n.to_str().is_none()) {
            let problem = Problem::error("the file name is not UTF-8; rename it");
            problems.push(problem.in_file(display_path(root, &path)));
            continue;
        }
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if !hidden {
                collect_yaml_files(root, &path, out, problems);
            }
        } else if is_yaml(&path) && !hidden {
            // A symlinked file is read only when it stays inside the root.
            if meta.file_type().is_symlink()
                && !path
                    .canonicalize()
                    .is_ok_and(|real| real.starts_with(root) && real.is_file())
            {
                continue;
            }
            out.push(path);
        }
    }
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_native_and_flux_stages_recursively_and_skips_hidden_dirs() {
        let repo = tempfile::tempdir().unwrap();
        let root = repo.path().canonicalize().unwrap();
        fs::create_dir_all(root.join("clusters/prod")).unwrap();
        fs::create_dir_all(root.join(".github")).unwrap();
        fs::write(
            root.join("clusters/prod/apps.yaml"),
            "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {name: apps}\nspec: {path: ./apps, prune: true}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
        )
        .unwrap();
        fs::write(
            root.join("stages.yaml"),
            "apiVersion: stagegate.dev/v1alpha1\nkind: Stage\nmetadata: {name: pre}\nspec: {path: pre}\n",
        )
        .unwrap();
        fs::write(root.join(".github/ci.yaml"), "not: [valid").unwrap();
        fs::write(
            root.join("kustomization.yaml"),
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: []\n",
        )
        .unwrap();

        let (stages, problems) = discover_stages(&root, &root);
        assert!(problems.is_empty(), "{problems}");
        let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["apps", "pre"]);
        assert_eq!(stages[0].source, Path::new("clusters/prod/apps.yaml"));
    }

    #[test]
    fn yaml_syntax_error_names_file_and_line() {
        let repo = tempfile::tempdir().unwrap();
        let root = repo.path().canonicalize().unwrap();
        fs::write(root.join("broken.yaml"), "a: 1\n---\nb: [\n").unwrap();
        let (_, problems) = discover_stages(&root, &root);
        let message = problems.iter().next().unwrap().to_string();
        assert!(
            message.starts_with("error: broken.yaml: invalid YAML: line"),
            "{message}"
        );
    }
}
