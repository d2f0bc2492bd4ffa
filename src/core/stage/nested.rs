//! Nested stages, as Flux reconciles them: a Kustomization (or Stage)
//! document in a stage's rendered output is not an object to apply but a
//! stage of its own, read after the parent's rendering (patches,
//! substitution, namespace, labels) was applied to it. A child exists while
//! its parent renders it; removed from the parent, it is gone from the plan
//! and pruned as any removed stage.
//!
//! Stages with `postBuild.substituteFrom` render last, once the objects their
//! variables come from are rendered.
//!
//! Discovery also finds the child's file on its own; the document its parent
//! renders replaces that one, since it is what Flux would apply.

use std::collections::BTreeMap;

use super::definition::read_rendered_definition;
use super::identity::{assign_names, check_sources, qualify_names, resolve_dependencies};
use super::substitute_from::{SubstitutionSource, unresolved_variables, variables};
use super::{Stage, StageName, StageOrigin, is_unreadable_stage_document};
use crate::core::diagnostics::{Problem, Problems};
use crate::core::object::Manifest;
use crate::core::render::RenderedStage;

/// How deep Kustomizations may nest; deeper is a loop of parents.
const MAX_DEPTH: usize = 16;

/// The outcome of rendering one stage: its split output, or the problem
/// that stopped it.
pub type RenderResult = Result<RenderedStage, Problem>;

/// Every stage of a revision and its rendered objects (`None` where it
/// could not be rendered; the reason is in `problems`). `render` renders a
/// batch of stages, in order; stages are named before they are rendered,
/// since the name goes into the objects' labels.
pub fn expand(
    discovered: Vec<Stage>,
    render: impl Fn(&[Stage]) -> Vec<RenderResult>,
    source: Option<&dyn SubstitutionSource>,
    problems: &mut Problems,
) -> (Vec<Stage>, Vec<Option<Vec<Manifest>>>) {
    let mut stages = discovered;
    assign_names(&mut stages, problems);
    let mut parents: Vec<Option<usize>> = vec![None; stages.len()];
    let mut results: Vec<Option<RenderedStage>> = Vec::new();
    results.resize_with(stages.len(), || None);
    // Variables of stages with `substituteFrom`, resolved once every other
    // stage rendered (their sources are objects of this revision).
    let mut vars: Vec<Option<Variables>> = vec![None; stages.len()];
    // Required sources no one could read (offline, no values given): the
    // stage is rendered without substitution to name the variables missing.
    let mut unreachable: Vec<Option<Vec<String>>> = vec![None; stages.len()];
    let mut frontier: Vec<usize> = (0..stages.len()).collect();
    let mut deferred: Vec<usize> = Vec::new();
    let mut depth = 0;
    loop {
        let (later, now): (Vec<usize>, Vec<usize>) = frontier
            .into_iter()
            .partition(|&i| !stages[i].substitute_from.is_empty() && vars[i].is_none());
        deferred.extend(later);
        if now.is_empty() {
            if deferred.is_empty() {
                break;
            }
            frontier = resolve_deferred(
                &stages,
                &results,
                (&mut vars, &mut unreachable),
                &mut deferred,
                source,
                problems,
            );
            continue;
        }
        // A stage whose definition was refused is never rendered: what it
        // would render (a remote cluster's objects, another source's) is
        // not for this cluster.
        let now: Vec<usize> = now.into_iter().filter(|&i| !stages[i].refused).collect();
        render_into(
            &stages,
            &now,
            (&vars, &unreachable),
            &render,
            &mut results,
            problems,
        );
        let again = name_unresolved(
            &stages,
            &now,
            &vars,
            &mut unreachable,
            &mut results,
            problems,
        );
        render_into(
            &stages,
            &again,
            (&vars, &unreachable),
            &render,
            &mut results,
            problems,
        );

        if depth == MAX_DEPTH {
            for &i in &now {
                problems.push(
                    Problem::error(format!(
                        "Kustomizations nest deeper than {MAX_DEPTH} levels; a stage renders its own ancestor"
                    ))
                    .in_file(&stages[i].source)
                    .in_stage(&stages[i].name),
                );
            }
            break;
        }
        depth += 1;
        let mut next = Vec::new();
        for parent in now {
            let children = results[parent]
                .as_ref()
                .map(|r| r.children.clone())
                .unwrap_or_default();
            for doc in children {
                let Some(child) = read_child(&stages[parent], &doc, problems) else {
                    continue;
                };
                if let Some(i) = place(&mut stages, &mut parents, parent, child, problems) {
                    if i == results.len() {
                        results.push(None);
                        vars.push(None);
                        unreachable.push(None);
                    }
                    vars[i] = None;
                    unreachable[i] = None;
                    if !next.contains(&i) {
                        next.push(i);
                    }
                }
            }
        }
        frontier = next;
    }

    drop_unrendered_children(
        &mut stages,
        &mut parents,
        &mut results,
        (&mut vars, &mut unreachable),
        problems,
    );

    // Children can make a name ambiguous that was not before: name again and
    // render again the stages whose name (and so whose labels) changed.
    let before: Vec<StageName> = stages.iter().map(|s| s.name.clone()).collect();
    qualify_names(&mut stages);
    let renamed: Vec<usize> = (0..stages.len())
        .filter(|&i| stages[i].name != before[i] && results[i].is_some())
        .collect();
    if !renamed.is_empty() {
        render_into(
            &stages,
            &renamed,
            (&vars, &unreachable),
            &render,
            &mut results,
            problems,
        );
    }
    for (i, parent) in parents.iter().enumerate() {
        stages[i].parent = parent.map(|p| stages[p].name.clone());
    }
    resolve_dependencies(&mut stages);
    for i in check_sources(&stages, problems) {
        stages[i].refused = true;
        results[i] = None;
    }
    fail_descendants_of_refused(&stages, &parents, &mut results, problems);
    retag_qualified(&stages, problems);
    drop_problems_said_by_parents(problems);
    let objects = results.into_iter().map(|r| r.map(|r| r.objects)).collect();
    (stages, objects)
}

/// A document a parent renders was also read by discovery: say a problem
/// with it once, as found in the parent's output (what Flux would apply).
fn drop_problems_said_by_parents(problems: &mut Problems) {
    let rendered_by = |p: &Problem| -> Option<String> {
        let rest = p.message.strip_prefix("rendered by stage ")?;
        rest.split_once(": ").map(|(_, what)| what.to_string())
    };
    let from_parents: Vec<(Option<std::path::PathBuf>, Option<StageName>, String)> = problems
        .iter()
        .filter_map(|p| rendered_by(p).map(|what| (p.file.clone(), p.stage.clone(), what)))
        .collect();
    if from_parents.is_empty() {
        return;
    }
    let said_by_parent = |p: &Problem| {
        p.message
            .strip_prefix("line ")
            .and_then(|rest| rest.split_once(": "))
            .is_some_and(|(_, what)| {
                from_parents
                    .iter()
                    .any(|(file, stage, w)| *file == p.file && *stage == p.stage && w == what)
            })
    };
    let mut kept = Problems::default();
    kept.extend(problems.iter().filter(|p| !said_by_parent(p)).cloned());
    *problems = kept;
}

/// A Flux Kustomization whose file lies in another Flux stage's path but is
/// not in that stage's output (left out of its kustomization.yaml) is not
/// reconciled by Flux: only what a parent applies exists. Discovery found it
/// on its own; it is dropped, and said so.
fn drop_unrendered_children(
    stages: &mut Vec<Stage>,
    parents: &mut Vec<Option<usize>>,
    results: &mut Vec<Option<RenderedStage>>,
    (vars, unreachable): (&mut Vec<Option<Variables>>, &mut Vec<Option<Vec<String>>>),
    problems: &mut Problems,
) {
    let holder = |i: usize| -> Option<usize> {
        let stage = &stages[i];
        if parents[i].is_some() || stage.origin != StageOrigin::Flux {
            return None;
        }
        (0..stages.len()).find(|&p| {
            p != i
                && stages[p].origin == StageOrigin::Flux
                && results[p].is_some()
                && stage.source.starts_with(&stages[p].path)
        })
    };
    let dropped: Vec<Option<usize>> = (0..stages.len()).map(holder).collect();
    fail_children_of_unrendered(stages, parents, results, &dropped, problems);
    if dropped.iter().all(Option::is_none) {
        return;
    }
    let mut new_index = Vec::with_capacity(stages.len());
    let mut kept = 0;
    for (i, holder) in dropped.iter().enumerate() {
        if let &Some(p) = holder {
            problems.push(
                Problem::warning(format!(
                    "Kustomization {} is in the path of stage {} but not in its output, so Flux \
                     would not apply it; it is not a stage",
                    stages[i].id, stages[p].name
                ))
                .in_file(&stages[i].source),
            );
            new_index.push(None);
        } else {
            new_index.push(Some(kept));
            kept += 1;
        }
    }
    let mut i = 0;
    stages.retain(|_| {
        i += 1;
        dropped[i - 1].is_none()
    });
    let mut i = 0;
    results.retain(|_| {
        i += 1;
        dropped[i - 1].is_none()
    });
    let mut i = 0;
    vars.retain(|_| {
        i += 1;
        dropped[i - 1].is_none()
    });
    let mut i = 0;
    unreachable.retain(|_| {
        i += 1;
        dropped[i - 1].is_none()
    });
    let old_parents = std::mem::take(parents);
    *parents = old_parents
        .into_iter()
        .zip(&dropped)
        .filter(|(_, d)| d.is_none())
        .map(|(p, _)| p.and_then(|p| new_index[p]))
        .collect();
}

/// A Flux Kustomization whose file lies in the path of a Flux stage that
/// could not be rendered is a child whose parent's version of it is unknown
/// (patched, substituted, or left out): it is neither applied as discovery
/// read it nor pruned, and fails until its parent renders again.
fn fail_children_of_unrendered(
    stages: &[Stage],
    parents: &[Option<usize>],
    results: &mut [Option<RenderedStage>],
    dropped: &[Option<usize>],
    problems: &mut Problems,
) {
    for i in 0..stages.len() {
        let stage = &stages[i];
        if parents[i].is_some() || dropped[i].is_some() || stage.origin != StageOrigin::Flux {
            continue;
        }
        let unrendered = (0..stages.len()).find(|&p| {
            p != i
                && stages[p].origin == StageOrigin::Flux
                && results[p].is_none()
                && stage.source.starts_with(&stages[p].path)
        });
        if let Some(p) = unrendered {
            results[i] = None;
            problems.push(
                Problem::error(format!(
                    "its Kustomization is in the path of stage {}, which could not be rendered; \
                     it is not applied until its parent renders",
                    stages[p].name
                ))
                .in_file(&stage.source)
                .in_stage(&stage.name),
            );
        }
    }
}

/// Variables resolved from `substituteFrom`; kept out of [`Stage`], which
/// is shown and stored, since they may come from Secrets.
type Variables = BTreeMap<String, String>;

fn render_into(
    stages: &[Stage],
    which: &[usize],
    (vars, unreachable): (&[Option<Variables>], &[Option<Vec<String>>]),
    render: &impl Fn(&[Stage]) -> Vec<RenderResult>,
    results: &mut [Option<RenderedStage>],
    problems: &mut Problems,
) {
    let batch: Vec<Stage> = which
        .iter()
        .map(|&i| {
            let mut stage = stages[i].clone();
            if unreachable[i].is_some() {
                // Rendered as written, to find the variables it uses.
                stage.substitute.clear();
                stage.substitute_from.clear();
            } else if let Some(vars) = &vars[i] {
                stage.substitute = vars.clone();
            }
            stage
        })
        .collect();
    for (&i, result) in which.iter().zip(render(&batch)) {
        results[i] = match result {
            Ok(rendered) => Some(rendered),
            Err(problem) => {
                problems.push(problem);
                None
            }
        };
    }
}

/// Resolve the variables of the deferred stages from everything rendered so
/// far; the ones whose sources could not all be read are not rendered (the
/// problem names the source). Returns the stages now ready to render.
fn resolve_deferred(
    stages: &[Stage],
    results: &[Option<RenderedStage>],
    (vars, unreachable): (&mut [Option<Variables>], &mut [Option<Vec<String>>]),
    deferred: &mut Vec<usize>,
    source: Option<&dyn SubstitutionSource>,
    problems: &mut Problems,
) -> Vec<usize> {
    let rendered = results.iter().flatten().flat_map(|r| r.objects.iter());
    let mut ready = Vec::new();
    for i in std::mem::take(deferred) {
        let resolved = variables(&stages[i], rendered.clone(), source);
        let failed = resolved.problems.iter().any(Problem::is_error);
        problems.extend(resolved.problems);
        vars[i] = Some(resolved.vars);
        unreachable[i] = (!resolved.unreachable.is_empty()).then_some(resolved.unreachable);
        if !failed {
            ready.push(i);
        }
    }
    ready
}

/// The stages rendered without their unreachable sources' values: the
/// variables they use that nothing gave are named, and the stage fails
/// (it is not expanded further). One that uses none is to be rendered
/// again, with substitution: those are returned.
fn name_unresolved(
    stages: &[Stage],
    which: &[usize],
    vars: &[Option<Variables>],
    unreachable: &mut [Option<Vec<String>>],
    results: &mut [Option<RenderedStage>],
    problems: &mut Problems,
) -> Vec<usize> {
    let mut again = Vec::new();
    for &i in which {
        let Some(sources) = unreachable[i].clone() else {
            continue;
        };
        let Some(rendered) = &results[i] else {
            continue;
        };
        let known = vars[i].clone().unwrap_or_default();
        let objects = rendered.objects.iter().chain(&rendered.children);
        let missing = unresolved_variables(objects, &known);
        results[i] = None;
        if missing.is_empty() {
            unreachable[i] = None;
            again.push(i);
            continue;
        }
        let message = format!(
            "postBuild.substituteFrom: {} cannot be read here (offline commands do not read \
             the cluster), so these variables are unresolved: {}; give their values with \
             --substitute-from FILE",
            sources.join(", "),
            missing.join(", ")
        );
        problems.push(
            Problem::error(message)
                .in_file(&stages[i].source)
                .in_stage(&stages[i].name),
        );
    }
    again
}

/// A definition's problems name its stage as the document does; a stage
/// whose name was qualified with its namespace is named so in them too,
/// so that they fail that stage (and not, unknown, the whole plan).
fn retag_qualified(stages: &[Stage], problems: &mut Problems) {
    let renamed: Vec<&Stage> = stages
        .iter()
        .filter(|s| s.name.as_str() != s.id.name)
        .collect();
    if renamed.is_empty() {
        return;
    }
    let mut retagged = Problems::default();
    retagged.extend(problems.iter().map(|p| {
        let owner = renamed.iter().find(|s| {
            p.stage.as_ref().is_some_and(|n| n.as_str() == s.id.name)
                && p.file.as_deref() == Some(s.source.as_path())
        });
        match owner {
            Some(stage) => p.clone().in_stage(&stage.name),
            None => p.clone(),
        }
    }));
    *problems = retagged;
}

/// The descendants of a stage whose definition was refused are not
/// applied either: they came from that stage's render.
fn fail_descendants_of_refused(
    stages: &[Stage],
    parents: &[Option<usize>],
    results: &mut [Option<RenderedStage>],
    problems: &mut Problems,
) {
    for i in 0..stages.len() {
        let mut ancestor = parents[i];
        while let Some(a) = ancestor {
            if stages[a].refused {
                results[i] = None;
                problems.push(
                    Problem::error(format!(
                        "rendered by stage {}, whose definition is refused",
                        stages[a].name
                    ))
                    .in_file(&stages[i].source)
                    .in_stage(&stages[i].name),
                );
                break;
            }
            ancestor = parents[a];
        }
    }
}

/// The ServiceAccount each stage is applied as: its own, else its
/// parent's (a tenant's child stage can do no more than the tenant), else,
/// for a Flux stage, `default` in its own namespace, as Flux's
/// `--default-service-account`.
pub fn assign_service_accounts(stages: &mut [Stage], default: Option<&str>) {
    let index: BTreeMap<StageName, usize> = stages
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.clone(), i))
        .collect();
    let declared: Vec<_> = stages.iter().map(|s| s.service_account.clone()).collect();
    for i in 0..stages.len() {
        if declared[i].is_some() {
            continue;
        }
        let mut parent = stages[i].parent.clone();
        let mut inherited = None;
        while let Some(p) = parent.and_then(|p| index.get(&p).copied()) {
            if let Some(account) = &declared[p] {
                inherited = Some(account.clone());
                break;
            }
            parent = stages[p].parent.clone();
        }
        let account = inherited.or_else(|| {
            let own = default.filter(|_| stages[i].origin == StageOrigin::Flux)?;
            Some(stages[i].own_service_account(own))
        });
        stages[i].service_account = account;
    }
}

/// A stage document from `parent`'s output, as a stage whose dependencies
/// include the parent's: Flux cannot reconcile a child before its parent
/// applied it, which it does only once the parent's dependencies are Ready.
fn read_child(parent: &Stage, doc: &Manifest, problems: &mut Problems) -> Option<Stage> {
    if is_unreadable_stage_document(doc.api_version(), doc.kind()) {
        problems.push(
            Problem::error(format!(
                "rendered by stage {}: {} {} is a stage document stagegate cannot read \
                 (apiVersion {}); it is neither applied nor taken as a stage",
                parent.name,
                doc.kind(),
                doc.name(),
                doc.api_version()
            ))
            .in_file(&doc.source)
            .in_stage(&parent.name),
        );
        return None;
    }
    let definition = read_rendered_definition(&doc.source, &doc.value, &parent.name);
    problems.extend(definition.problems);
    let mut child = definition.stage?;
    // Flux reconciles a child once its parent applied it: after the
    // parent's objects (a tenant's ServiceAccount and RoleBinding, a
    // namespace) are in the cluster.
    if child.id != parent.id && !child.dependency_refs.contains(&parent.id) {
        child.dependency_refs.push(parent.id.clone());
    }
    for dep in &parent.dependency_refs {
        if !child.dependency_refs.contains(dep) && *dep != child.id {
            child.dependency_refs.push(dep.clone());
        }
    }
    Some(child)
}

/// Put `child` among the stages: replacing the same document found by
/// discovery (or by an earlier render of the same parent), refusing a second
/// definition of its identity. The index to render, if any.
fn place(
    stages: &mut Vec<Stage>,
    parents: &mut Vec<Option<usize>>,
    parent: usize,
    mut child: Stage,
    problems: &mut Problems,
) -> Option<usize> {
    // A stage whose path holds its own definition (Flux's flux-system
    // Kustomization does) applies itself; that is no child.
    let mut ancestor = Some(parent);
    while let Some(a) = ancestor {
        if stages[a].id == child.id {
            return None;
        }
        ancestor = parents[a];
    }
    child.name = StageName::new(child.id.name.clone());
    let Some(existing) = stages.iter().position(|s| s.id == child.id) else {
        if let Some(same) = stages.iter().find(|s| s.id.name == child.id.name) {
            // Keep the names distinct until they are qualified at the end.
            if same.id.namespace.is_some() && child.id.namespace.is_some() {
                child.name = StageName::new(format!(
                    "{}.{}",
                    child.id.namespace.as_deref().unwrap_or_default(),
                    child.id.name
                ));
            }
        }
        stages.push(child);
        parents.push(Some(parent));
        return Some(stages.len() - 1);
    };
    let replaceable =
        stages[existing].source == child.source && parents[existing].is_none_or(|p| p == parent);
    if !replaceable {
        let first = match parents[existing] {
            Some(p) => format!("also rendered by stage {}", stages[p].name),
            None => format!("also defined in {}", stages[existing].source.display()),
        };
        problems.push(
            Problem::error(format!(
                "duplicate stage name {}, rendered by stage {}; {first}",
                child.id, stages[parent].name
            ))
            .in_file(&child.source)
            .in_stage(&stages[existing].name),
        );
        return None;
    }
    child.name = stages[existing].name.clone();
    stages[existing] = child;
    parents[existing] = Some(parent);
    Some(existing)
}
