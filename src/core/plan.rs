//! From a repository checkout to an ordered plan of rendered stages: discover
//! the stage definitions, validate them, render each stage and check the
//! result as a whole. Every problem is collected; a plan with errors is never
//! returned, so nothing downstream can apply half of a broken repository.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::core::diagnostics::{Problem, Problems};
use crate::core::hooks::{self, HookKind, HookPhase};
use crate::core::labels::SPEC_HASH_ANNOTATION;
use crate::core::object::{Manifest, ObjectRef, SpecHash};
use crate::core::paths::{PathError, display_path};
use crate::core::render::{RenderError, annotate_spec_hashes, is_cluster_scoped, render_stage_in};
use crate::core::stage::discover::DiscoverOptions;
use crate::core::stage::discover::discover_in;
use crate::core::stage::substitute_from::SubstitutionSource;
use crate::core::stage::{Stage, StageGraph, StageName, nested};
use crate::core::tree::{DISK, FileTree, resolve_inside};

/// The stages of one repository revision, dependencies first, each with its
/// rendered objects.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Canonical path of the repository checkout.
    pub root: PathBuf,
    pub stages: Vec<PlannedStage>,
    /// Warnings found while planning; errors that concern one stage fail
    /// that stage alone (see [`PlannedStage::failed`]), the others prevent
    /// a plan.
    pub warnings: Problems,
    /// The errors of the stages that failed to plan, as found.
    pub errors: Problems,
}

/// What the caller adds to a repository's own declarations.
#[derive(Default)]
pub struct PlanOptions {
    /// Flux's `--default-service-account`: Flux stages without a
    /// `serviceAccountName` are applied as this ServiceAccount of their
    /// namespace.
    pub default_service_account: Option<String>,
    /// Apply Flux's own bootstrap Kustomization instead of skipping it.
    pub apply_flux_bootstrap: bool,
    /// Where `postBuild.substituteFrom` sources not rendered from the
    /// repository are read: the cluster (the agent), a file of values
    /// (`--substitute-from`), or nowhere (the variables they would have
    /// given are named as unresolved).
    pub substitution: Option<Box<dyn SubstitutionSource>>,
}

#[derive(Debug, Clone)]
pub struct PlannedStage {
    pub stage: Stage,
    pub objects: Vec<PlannedObject>,
    /// The graph's edges: positions in [`Plan::stages`] of the stages this
    /// one depends on, all before it.
    pub needs: Vec<usize>,
}

impl PlannedStage {
    /// Why the stage could not be planned (its render or definition
    /// errors, one per line); such a stage is never applied, and the stages
    /// depending on it are blocked.
    pub fn failed(&self) -> Option<&str> {
        self.stage.not_planned.as_deref()
    }
}

/// One rendered object of a stage, read once for everyone downstream:
/// its hook annotations parsed, and a Job's spec hash (every Job has one).
#[derive(Debug, Clone)]
pub struct PlannedObject {
    pub manifest: Manifest,
    pub hook: HookKind,
    /// `Some` exactly for Jobs (`batch` `Job`).
    pub job: Option<SpecHash>,
}

impl std::ops::Deref for PlannedObject {
    type Target = Manifest;

    fn deref(&self) -> &Manifest {
        &self.manifest
    }
}

impl Plan {
    pub fn stage(&self, name: &str) -> Option<&PlannedStage> {
        self.stages.iter().find(|s| s.stage.name.as_str() == name)
    }

    pub fn object_count(&self) -> usize {
        self.stages.iter().map(|s| s.objects.len()).sum()
    }

    /// The stages that could not be planned.
    pub fn failed(&self) -> impl Iterator<Item = &PlannedStage> {
        self.stages.iter().filter(|s| s.failed().is_some())
    }
}

/// Where to look: the repository checkout and, inside it, the directory that
/// holds the stage definitions (the root itself when `None`).
pub fn build_plan(root: &Path, stages_dir: Option<&Path>) -> Result<Plan, Problems> {
    build_plan_with(root, stages_dir, &PlanOptions::default())
}

/// [`build_plan`] with the caller's options. A problem of one stage (it
/// does not render, a field it uses cannot be honoured, a variable source
/// is missing) fails that stage alone; a problem of the repository as a
/// whole (a definition that cannot be read, a cycle, an unknown dependency,
/// an object refused by the checks) fails the plan.
pub fn build_plan_with(
    root: &Path,
    stages_dir: Option<&Path>,
    options: &PlanOptions,
) -> Result<Plan, Problems> {
    build_plan_in(&DISK, root, stages_dir, options)
}

/// [`build_plan_with`], reading the repository from `tree` (the checkout on
/// disk, or files in memory): the plan needs nothing else.
pub fn build_plan_in(
    tree: &dyn FileTree,
    root: &Path,
    stages_dir: Option<&Path>,
    options: &PlanOptions,
) -> Result<Plan, Problems> {
    let mut problems = Problems::default();
    let root = tree.canonicalize(root).map_err(|e| {
        one_problem(Problem::error(format!("cannot open repository: {e}")).in_file(root))
    })?;
    let dir = match stages_dir {
        None => root.clone(),
        Some(dir) => resolve_dir(tree, &root, dir).map_err(|p| {
            one_problem(Problem::error(format!(
                "--path {}: {}",
                dir.display(),
                p.message
            )))
        })?,
    };

    let discover = DiscoverOptions {
        apply_flux_bootstrap: options.apply_flux_bootstrap,
    };
    let (discovered, found) = discover_in(tree, &root, &dir, &discover);
    problems.extend(found);
    if discovered.is_empty() && !problems.has_errors() {
        problems.push(
            Problem::error(
                "no stage definitions found (apiVersion stagegate.dev/v1alpha1 kind Stage, \
                 or a Flux kustomize.toolkit.fluxcd.io Kustomization)",
            )
            .in_file(display_path(&root, &dir)),
        );
    }
    // Rendering finds nested stages, so it comes before the graph is known.
    let (mut stages, mut rendered) = nested::expand(
        discovered,
        |batch| render_all(tree, &root, batch),
        options.substitution.as_deref(),
        &mut problems,
    );
    nested::assign_service_accounts(&mut stages, options.default_service_account.as_deref());
    // What went wrong while reading and rendering one stage fails that
    // stage alone; the checks below (names, dependencies, objects) still
    // judge the repository as a whole.
    problems.drop_discovery_duplicates();
    let rendered_ok: Vec<bool> = rendered.iter().map(Option::is_some).collect();
    let (errors, failed) = stage_failures(&stages, &rendered_ok, &mut problems);
    check_names(&stages, &mut problems);
    check_dependencies(&stages, &mut problems);
    let order = match StageGraph::new(&stages).topological_order() {
        Ok(order) => order,
        Err(cycles) => {
            for cycle in cycles {
                problems.push(Problem::error(format!("dependency cycle: {cycle}")));
            }
            Vec::new()
        }
    };

    hash_with_repository_config(&mut rendered);
    check_duplicate_objects(&stages, &rendered, &mut problems);
    let each = stages.iter().zip(&rendered);
    crate::core::diagnostics::check_objects(
        each.flat_map(|(s, o)| o.iter().flatten().map(move |m| (&s.name, m))),
        &mut problems,
    );
    for (stage, objects) in stages.iter().zip(&rendered) {
        let has_children = stages
            .iter()
            .any(|s| s.parent.as_ref() == Some(&stage.name));
        if objects.as_ref().is_some_and(Vec::is_empty) && !has_children {
            problems.push(
                Problem::warning(format!(
                    "path {} holds no manifests",
                    shown_path(&stage.path)
                ))
                .in_file(&stage.source)
                .in_stage(&stage.name),
            );
        }
    }
    let mut objects = read_objects(&stages, &mut rendered, &mut problems);

    problems.drop_discovery_duplicates();
    if problems.has_errors() {
        problems.extend(errors.iter().cloned());
        return Err(problems);
    }
    let position: HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(at, &i)| (stages[i].name.as_str(), at))
        .collect();
    let stages = order
        .iter()
        .map(|&i| PlannedStage {
            stage: Stage {
                not_planned: failed[i].clone(),
                ..stages[i].clone()
            },
            objects: std::mem::take(&mut objects[i]),
            needs: stages[i]
                .depends_on
                .iter()
                .filter_map(|d| position.get(d.as_str()).copied())
                .collect(),
        })
        .collect();
    Ok(Plan {
        root,
        stages,
        warnings: problems,
        errors,
    })
}

/// Take out of `problems` the errors that concern one stage of the plan,
/// and say for each stage why it failed, if it did. What is left in
/// `problems` are warnings and the repository's own errors. A stage that
/// rendered nothing failed even when its error was said about a file (the
/// reason is then among the repository's errors).
fn stage_failures(
    stages: &[Stage],
    rendered: &[bool],
    problems: &mut Problems,
) -> (Problems, Vec<Option<String>>) {
    let index: HashMap<&StageName, usize> = stages
        .iter()
        .enumerate()
        .map(|(i, s)| (&s.name, i))
        .collect();
    let mut reasons: Vec<Vec<String>> = vec![Vec::new(); stages.len()];
    let mut errors = Problems::default();
    let mut rest = Problems::default();
    for problem in problems.iter() {
        let at = problem.stage.as_ref().and_then(|s| index.get(s).copied());
        match at {
            Some(i) if problem.is_error() => {
                let mut shown = problem.clone();
                shown.severity = crate::core::diagnostics::Severity::Error;
                shown.stage = None;
                let text = shown.to_string();
                reasons[i].push(text.strip_prefix("error: ").unwrap_or(&text).to_string());
                errors.push(problem.clone());
            }
            _ => rest.push(problem.clone()),
        }
    }
    *problems = rest;
    let failed = reasons
        .into_iter()
        .zip(rendered)
        .map(|(reasons, &ok)| match (reasons.is_empty(), ok) {
            (true, true) => None,
            (true, false) => Some("could not be rendered".to_string()),
            (false, _) => Some(reasons.join("\n")),
        })
        .collect();
    (errors, failed)
}

fn shown_path(path: &Path) -> String {
    if path.as_os_str().is_empty() {
        ".".to_string()
    } else {
        path.display().to_string()
    }
}

fn one_problem(problem: Problem) -> Problems {
    let mut problems = Problems::default();
    problems.push(problem);
    problems
}

/// A directory inside the repository; the problem says what is wrong with it
/// without repeating the path, which the caller names as the user wrote it.
fn resolve_dir(tree: &dyn FileTree, root: &Path, rel: &Path) -> Result<PathBuf, Problem> {
    let path = resolve_inside(tree, root, root, rel).map_err(|e| {
        Problem::error(match e {
            PathError::Missing { .. } => "does not exist".to_string(),
            PathError::OutsideRoot { .. } => "is outside the repository root; refused".to_string(),
            PathError::Io { source, .. } => source.to_string(),
        })
    })?;
    if !tree.is_dir(&path) {
        return Err(Problem::error("is not a directory"));
    }
    Ok(path)
}

/// Stage names become label values (`stagegate.dev/stage`) and object names in
/// Events, so they follow Kubernetes' rules for names.
fn check_names(stages: &[Stage], problems: &mut Problems) {
    let mut seen: HashMap<&str, &Stage> = HashMap::new();
    for stage in stages {
        // A Flux stage sharing its name across namespaces is `namespace.name`.
        if !stage.name.as_str().split('.').all(is_dns_label) || stage.name.as_str().len() > 63 {
            problems.push(
                Problem::error(
                    "stage name must be at most 63 lowercase letters, digits or '-', \
                     starting and ending with a letter or digit",
                )
                .in_file(&stage.source)
                .in_stage(&stage.name),
            );
        }
        match seen.get(stage.name.as_str()) {
            Some(first) => problems.push(
                Problem::error(format!(
                    "duplicate stage name, also defined in {}",
                    first.source.display()
                ))
                .in_file(&stage.source)
                .in_stage(&stage.name),
            ),
            None => {
                seen.insert(stage.name.as_str(), stage);
            }
        }
    }
}

fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

fn check_dependencies(stages: &[Stage], problems: &mut Problems) {
    let names: std::collections::HashSet<&StageName> = stages.iter().map(|s| &s.name).collect();
    for stage in stages {
        for dep in &stage.depends_on {
            if !names.contains(dep) {
                problems.push(
                    Problem::error(format!("dependsOn names unknown stage {dep}"))
                        .in_file(&stage.source)
                        .in_stage(&stage.name),
                );
            }
        }
    }
}

/// Render every stage whose path is safe to read; `None` where it could not
/// be rendered (the reason is in `problems`). Stages render on all cores:
/// they are independent and rendering is CPU-bound.
type Rendered = nested::RenderResult;

fn render_all(tree: &dyn FileTree, root: &Path, stages: &[Stage]) -> Vec<Rendered> {
    // One worker per core, each taking the next stage: a thread per stage
    // would cost a stack and an allocator arena each in a 50-stage repository.
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(stages.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<Rendered>>> =
        stages.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(stage) = stages.get(i) else { break };
                    let result = render_one(tree, root, stage);
                    *slots[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
                }
            });
        }
    });
    slots
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .unwrap_or_else(|| Err(Problem::error("renderer panicked")))
        })
        .zip(stages)
        .map(|(result, stage)| {
            result.map_err(|p| match p.stage {
                Some(_) => p,
                None => p.in_stage(&stage.name),
            })
        })
        .collect()
}

fn render_one(tree: &dyn FileTree, root: &Path, stage: &Stage) -> Rendered {
    let at = |p: Problem| p.in_file(&stage.source).in_stage(&stage.name);
    resolve_dir(tree, root, &stage.path).map_err(|p| {
        at(Problem::error(format!(
            "spec.path {}: {}",
            shown_path(&stage.path),
            p.message
        )))
    })?;
    render_stage_in(tree, root, stage).map_err(|e| {
        // The renderer's errors name the stage and file themselves; the
        // stage is taken out of the text to be the problem's own.
        let text = e.to_string();
        let own = format!("stage {}: ", stage.name);
        let problem =
            Problem::error(text.strip_prefix(&own).unwrap_or(&text)).in_stage(&stage.name);
        match e {
            RenderError::Yaml {
                stage,
                path,
                line,
                column,
                message,
            } => Problem::error(format!("line {line}, column {column}: {message}"))
                .in_file(path)
                .in_stage(&stage),
            _ => problem,
        }
    })
}

/// A Job's spec hash covers the ConfigMaps and Secrets its pods read, wherever
/// in the repository they are rendered (a script may live in another stage).
fn hash_with_repository_config(rendered: &mut [Option<Vec<Manifest>>]) {
    let sources: Vec<Manifest> = rendered
        .iter()
        .flatten()
        .flatten()
        .filter(|m| m.api_version() == "v1" && matches!(m.kind(), "ConfigMap" | "Secret"))
        .cloned()
        .collect();
    for objects in rendered.iter_mut().flatten() {
        annotate_spec_hashes(objects, &sources);
    }
}

/// Read each object once for everyone downstream: its hook annotations
/// (kinds stagegate cannot honour are warnings naming the object, values it
/// cannot read are errors; see [`crate::core::hooks`]) and a Job's spec hash.
fn read_objects(
    stages: &[Stage],
    rendered: &mut [Option<Vec<Manifest>>],
    problems: &mut Problems,
) -> Vec<Vec<PlannedObject>> {
    let mut planned = Vec::with_capacity(rendered.len());
    for (stage, objects) in stages.iter().zip(rendered.iter_mut()) {
        let mut read = Vec::new();
        for manifest in objects.take().unwrap_or_default() {
            let name = manifest.object_ref().to_string();
            let at = |p: Problem| p.in_file(&manifest.source).in_stage(&stage.name);
            let hook = match crate::core::hooks::parse(&manifest.value, &name) {
                Ok(parsed) => {
                    for warning in parsed.warnings {
                        problems.push(at(Problem::warning(warning)));
                    }
                    parsed.kind
                }
                Err(error) => {
                    problems.push(at(Problem::error(error.to_string())));
                    continue;
                }
            };
            let job = if manifest.group() == "batch" && manifest.kind() == "Job" {
                let Some(hash) = manifest.annotation(SPEC_HASH_ANNOTATION) else {
                    let message =
                        format!("{name}: no {SPEC_HASH_ANNOTATION} annotation after rendering");
                    problems.push(at(Problem::error(message)));
                    continue;
                };
                Some(SpecHash::new(hash))
            } else {
                None
            };
            read.push(PlannedObject {
                manifest,
                hook,
                job,
            });
        }
        planned.push(read);
    }
    planned
}

fn check_duplicate_objects(
    stages: &[Stage],
    rendered: &[Option<Vec<Manifest>>],
    problems: &mut Problems,
) {
    let mut owners: BTreeMap<ObjectRef, &Stage> = BTreeMap::new();
    for (stage, objects) in stages.iter().zip(rendered) {
        for object in objects.iter().flatten() {
            let mut key = object.object_ref();
            // A namespaced object without a namespace lands in `default`.
            if key.namespace.is_none() && !is_cluster_scoped(&key.kind) {
                key.namespace = Some("default".into());
            }
            match owners.get(&key) {
                Some(first) if first.name != stage.name => problems.push(
                    Problem::error(format!(
                        "{key} (from {}) is also rendered by stage {}",
                        object.source.display(),
                        first.name
                    ))
                    .in_stage(&stage.name),
                ),
                Some(_) => problems.push(
                    Problem::error(format!(
                        "{key} (from {}) is rendered twice",
                        object.source.display()
                    ))
                    .in_stage(&stage.name),
                ),
                None => {
                    owners.insert(key, stage);
                }
            }
        }
    }
}

/// The hooks of a stage as lines, `pre: migrate (weight -5)`, pre before
/// post, each phase in run order (weight, then kind, then name); objects
/// whose hook kinds cannot be honoured are listed as never applied.
pub fn hook_lines(planned: &PlannedStage) -> Vec<String> {
    let mut points: Vec<(HookPhase, i32, &str, &str, String)> = Vec::new();
    let mut ignored = Vec::new();
    for object in &planned.objects {
        let label = if object.group() == "batch" && object.kind() == "Job" {
            object.name().to_string()
        } else {
            format!("{} {}", object.kind(), object.name())
        };
        match &object.hook {
            HookKind::Hook(hook) => {
                for (phase, when) in hook.points() {
                    let line = format!(
                        "{}{}: {label}{}",
                        phase.short(),
                        match when {
                            hooks::When::Always => "",
                            hooks::When::Initial => " (initial install)",
                            hooks::When::Upgrade => " (upgrades)",
                        },
                        hook.details()
                    );
                    points.push((phase, hook.weight, object.kind(), object.name(), line));
                }
            }
            HookKind::Unsupported => {
                ignored.push(format!("never applied: {label} (unsupported hook kinds)"))
            }
            HookKind::NotAHook => {}
        }
    }
    points.sort_by(|a, b| (a.0, a.1, a.2, a.3).cmp(&(b.0, b.1, b.2, b.3)));
    points.into_iter().map(|p| p.4).chain(ignored).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::tree::MemoryTree;

    /// The whole plan, discovery to spec hashes, from files in memory: the
    /// core reads nothing but its tree.
    #[test]
    fn a_plan_is_built_from_a_tree_in_memory() {
        let stages = "apiVersion: stagegate.dev/v1alpha1\nkind: Stage\nmetadata: {name: pre}\nspec: {path: pre, targetNamespace: shop}\n---\n\
                      apiVersion: stagegate.dev/v1alpha1\nkind: Stage\nmetadata: {name: app}\nspec: {path: app, dependsOn: [pre]}\n";
        let job = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: migrate}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: m, image: busybox, command: [sh, /s/up.sh]}]\n      volumes: [{name: s, configMap: {name: scripts}}]\n";
        let tree = MemoryTree::new(
            Path::new("/repo"),
            &[
                ("stages.yaml", stages),
                (
                    "pre/kustomization.yaml",
                    "resources: [job.yaml]\nconfigMapGenerator:\n- name: scripts\n  files: [up.sh]\n",
                ),
                ("pre/job.yaml", job),
                ("pre/up.sh", "echo up\n"),
                (
                    "app/cm.yaml",
                    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app, namespace: shop}\n",
                ),
            ],
        );
        let plan = build_plan_in(&tree, Path::new("/repo"), None, &PlanOptions::default())
            .unwrap_or_else(|problems| panic!("{problems}"));
        let names: Vec<&str> = plan.stages.iter().map(|s| s.stage.name.as_str()).collect();
        assert_eq!(names, ["pre", "app"]);
        let pre = plan.stage("pre").unwrap();
        let job = pre.objects.iter().find(|o| o.kind() == "Job").unwrap();
        assert!(job.job.is_some(), "the Job has its spec hash");
        let volume = &job.value["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"];
        assert!(
            volume.as_str().is_some_and(|n| n.starts_with("scripts-")),
            "the reference follows the generated name: {volume}"
        );

        let Err(missing) = build_plan_in(
            &tree,
            Path::new("/repo"),
            Some(Path::new("nowhere")),
            &PlanOptions::default(),
        ) else {
            panic!("a --path that is not in the tree is refused");
        };
        assert!(
            missing
                .to_string()
                .contains("--path nowhere: does not exist"),
            "{missing}"
        );
    }
}
