//! Finding the stage definitions of a repository: every YAML file under the
//! stages directory, read for `Stage` and Flux `Kustomization` documents.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::definition::read_definition;
use super::{
    FLUX_API_VERSIONS, FLUX_KUSTOMIZE_GROUP, STAGE_API_VERSION, STAGE_GROUP, Stage, StageOrigin,
    is_stage_document, is_unreadable_stage_document,
};
use crate::core::diagnostics::{DISCOVERY_YAML, Problem, Problems};
use crate::core::paths::display_path;
use crate::core::tree::{DISK, EntryKind, FileTree};
use crate::core::yaml::parse_documents_where;

/// Every stage declared under `dir` (inside the canonical `root`), in file
/// order, with the problems met on the way.
pub fn discover_stages(root: &Path, dir: &Path) -> (Vec<Stage>, Problems) {
    discover_stages_in(&DISK, root, dir)
}

/// What discovery is told by its caller.
#[derive(Debug, Clone, Default)]
pub struct DiscoverOptions {
    /// Take Flux's own bootstrap Kustomization as a stage instead of
    /// skipping it (`--apply-flux-bootstrap`).
    pub apply_flux_bootstrap: bool,
}

/// [`discover_stages`] with the caller's options.
pub fn discover_stages_with(
    root: &Path,
    dir: &Path,
    options: &DiscoverOptions,
) -> (Vec<Stage>, Problems) {
    discover_in(&DISK, root, dir, options)
}

/// [`discover_stages`] in any file tree.
pub fn discover_stages_in(tree: &dyn FileTree, root: &Path, dir: &Path) -> (Vec<Stage>, Problems) {
    discover_in(tree, root, dir, &DiscoverOptions::default())
}

/// [`discover_stages_with`] in any file tree.
pub fn discover_in(
    tree: &dyn FileTree,
    root: &Path,
    dir: &Path,
    options: &DiscoverOptions,
) -> (Vec<Stage>, Problems) {
    let mut problems = Problems::default();
    let mut files = Vec::new();
    collect_yaml_files(tree, root, dir, &mut files, &mut problems);
    let mut stages = Vec::new();
    let mut yaml_files = Vec::new();
    for file in files {
        let shown = display_path(root, &file);
        yaml_files.push(shown.clone());
        let text = match tree.read_to_string(&file) {
            Ok(text) => text,
            Err(e) => {
                problems.push(Problem::error(format!("cannot read: {e}")).in_file(&shown));
                continue;
            }
        };
        // Only stage documents become values: a large manifest costs its parse, not a tree.
        let docs = match parse_documents_where(&text, |h| {
            is_stage_document(&h.api_version, &h.kind)
                || is_unreadable_stage_document(&h.api_version, &h.kind)
        }) {
            Ok(docs) => docs,
            // An application's own config (custom tags, templates) is not a
            // stage definition; only a file that names a stage API must parse.
            Err(e) if mentions_stage_api(&text) => {
                problems.push(Problem::error(format!("{DISCOVERY_YAML}{e}")).in_file(&shown));
                continue;
            }
            Err(_) => continue,
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
            if is_unreadable_stage_document(api_version, kind) {
                problems.push(
                    Problem::error(format!(
                        "line {}: {kind} with apiVersion {api_version} is a stage document \
                         stagegate cannot read (it reads {STAGE_API_VERSION} Stage and {} \
                         Kustomization); refusing rather than treating its stage as removed",
                        doc.line,
                        FLUX_API_VERSIONS.join(" or ")
                    ))
                    .in_file(&shown),
                );
                continue;
            }
            if !is_stage_document(api_version, kind) {
                continue;
            }
            let definition = read_definition(&shown, &doc);
            problems.extend(definition.problems);
            stages.extend(definition.stage);
        }
    }
    skip_flux_bootstrap(&mut stages, &yaml_files, options, &mut problems);
    (stages, problems)
}

/// YAML files under `dir`, sorted by path. Hidden directories (`.git`,
/// `.github`) hold no stages; symlinked directories are not followed, since a
/// link could lead out of the repository.
fn collect_yaml_files(
    tree: &dyn FileTree,
    root: &Path,
    dir: &Path,
    out: &mut Vec<PathBuf>,
    problems: &mut Problems,
) {
    let entries = match tree.read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            problems.push(
                Problem::error(format!("cannot read directory: {e}"))
                    .in_file(display_path(root, dir)),
            );
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries.into_iter().map(|name| dir.join(name)).collect();
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
        let Ok(kind) = tree.entry_kind(&path) else {
            continue;
        };
        if kind == EntryKind::Dir {
            if !hidden {
                collect_yaml_files(tree, root, &path, out, problems);
            }
        } else if is_yaml(&path) && !hidden {
            // A symlinked file is read only when it stays inside the root.
            if kind == EntryKind::Symlink
                && !tree
                    .canonicalize(&path)
                    .is_ok_and(|real| real.starts_with(root) && tree.is_file(&real))
            {
                continue;
            }
            out.push(path);
        }
    }
}

/// The file Flux's bootstrap writes its own controllers to.
pub const FLUX_COMPONENTS_FILE: &str = "gotk-components.yaml";
/// Annotation on Flux's bootstrap Kustomization that makes stagegate apply it.
pub const APPLY_BOOTSTRAP_ANNOTATION: &str = "stagegate.dev/apply-flux-bootstrap";

/// Flux's own bootstrap Kustomization (the one whose path holds
/// `gotk-components.yaml`) installs Flux's controllers, kustomize-controller
/// among them, which stagegate replaces: it is skipped, and said so, unless
/// `--apply-flux-bootstrap` is set or the Kustomization is annotated
/// `stagegate.dev/apply-flux-bootstrap: "true"`.
fn skip_flux_bootstrap(
    stages: &mut Vec<Stage>,
    files: &[PathBuf],
    options: &DiscoverOptions,
    problems: &mut Problems,
) {
    if options.apply_flux_bootstrap {
        return;
    }
    stages.retain(|stage| {
        let bootstrap = stage.origin == StageOrigin::Flux
            && files.iter().any(|f| {
                f.file_name().is_some_and(|n| n == FLUX_COMPONENTS_FILE)
                    && f.starts_with(&stage.path)
            });
        if !bootstrap || stage.apply_bootstrap {
            return true;
        }
        problems.push(
            Problem::warning(format!(
                "Flux's own bootstrap Kustomization {} (its path {} holds {FLUX_COMPONENTS_FILE}) \
                 is skipped: source- and helm-controller keep running from Flux's install; \
                 pass --apply-flux-bootstrap (or annotate it {APPLY_BOOTSTRAP_ANNOTATION}: \
                 \"true\") to apply it",
                stage.id,
                stage.path.display()
            ))
            .in_file(&stage.source)
            .in_stage(&stage.name),
        );
        false
    });
}

/// Whether a file that failed to parse could hold a stage definition.
fn mentions_stage_api(text: &str) -> bool {
    text.contains(STAGE_GROUP) || text.contains(FLUX_KUSTOMIZE_GROUP)
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
    use std::fs;

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
        fs::write(
            root.join("broken.yaml"),
            "apiVersion: stagegate.dev/v1alpha1\n---\nb: [\n",
        )
        .unwrap();
        let (_, problems) = discover_stages(&root, &root);
        let message = problems.iter().next().unwrap().to_string();
        assert!(
            message.starts_with("error: broken.yaml: invalid YAML: line"),
            "{message}"
        );
    }

    #[test]
    fn yaml_that_names_no_stage_api_is_not_read_for_stages() {
        let repo = tempfile::tempdir().unwrap();
        let root = repo.path().canonicalize().unwrap();
        fs::create_dir_all(root.join("app/config")).unwrap();
        fs::write(
            root.join("app/config/template.yaml"),
            "Resources:\n  Bucket:\n    Name: !Ref BucketName\n    Arn: !GetAtt Bucket.Arn\n",
        )
        .unwrap();
        fs::write(
            root.join("app/values.yaml"),
            "image: {{ .Values.tag }}\n  bad: [\n",
        )
        .unwrap();
        fs::write(
            root.join("stage.yaml"),
            "apiVersion: stagegate.dev/v1alpha1\nkind: Stage\nmetadata: {name: app}\nspec: {path: app}\n",
        )
        .unwrap();
        let (stages, problems) = discover_stages(&root, &root);
        assert!(problems.is_empty(), "{problems}");
        assert_eq!(stages.len(), 1);
    }

    #[test]
    fn a_stage_document_of_an_unknown_version_is_an_error_naming_the_file() {
        let repo = tempfile::tempdir().unwrap();
        let root = repo.path().canonicalize().unwrap();
        for (file, api_version, kind) in [
            (
                "flux.yaml",
                "kustomize.toolkit.fluxcd.io/v2",
                "Kustomization",
            ),
            ("typo.yaml", "stagegate.dev/v1alpah1", "Stage"),
            ("group.yaml", "stagegate.dve/v1alpha1", "Stage"),
            ("kind.yaml", "stagegate.dev/v1alpha1", "Stgae"),
        ] {
            fs::write(
                root.join(file),
                format!("apiVersion: {api_version}\nkind: {kind}\nmetadata: {{name: a}}\nspec: {{path: .}}\n"),
            )
            .unwrap();
        }
        fs::write(
            root.join("kustomization.yaml"),
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: []\n",
        )
        .unwrap();
        let (stages, problems) = discover_stages(&root, &root);
        assert!(stages.is_empty());
        let errors: Vec<String> = problems.errors().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 4, "{errors:#?}");
        for file in ["flux.yaml", "typo.yaml", "group.yaml", "kind.yaml"] {
            assert!(
                errors
                    .iter()
                    .any(|e| e.starts_with(&format!("error: {file}: line 1: "))
                        && e.contains("stage document stagegate cannot read")),
                "{file}: {errors:#?}"
            );
        }
    }

    #[test]
    fn flux_bootstrap_kustomization_is_skipped_and_said_so_unless_annotated() {
        let repo = tempfile::tempdir().unwrap();
        let root = repo.path().canonicalize().unwrap();
        fs::create_dir_all(root.join("clusters/prod/flux-system")).unwrap();
        fs::write(
            root.join("clusters/prod/flux-system/gotk-components.yaml"),
            "",
        )
        .unwrap();
        let sync = |annotations: &str| {
            format!(
                "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {{name: flux-system, namespace: flux-system{annotations}}}\nspec: {{path: ./clusters/prod, sourceRef: {{kind: GitRepository, name: flux-system}}}}\n"
            )
        };
        let file = root.join("clusters/prod/flux-system/gotk-sync.yaml");
        fs::write(&file, sync("")).unwrap();
        let (stages, problems) = discover_stages(&root, &root);
        assert!(stages.is_empty());
        let warning = problems.warnings().next().unwrap().to_string();
        assert!(
            warning.contains("bootstrap Kustomization flux-system/flux-system")
                && warning.contains("is skipped"),
            "{warning}"
        );
        fs::write(
            &file,
            sync(", annotations: {stagegate.dev/apply-flux-bootstrap: \"true\"}"),
        )
        .unwrap();
        let (stages, problems) = discover_stages(&root, &root);
        assert!(problems.is_empty(), "{problems}");
        assert_eq!(stages.len(), 1);
    }
}
