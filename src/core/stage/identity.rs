//! Stage identity: a Flux Kustomization is known by namespace and name, a
//! native stage by name. Once every stage of a revision is known, each gets
//! its [`StageName`] (the name, or `namespace.name` when two Flux stages
//! share a name), `dependsOn` is resolved against identities, and the
//! sources the stages read from are checked.

use std::collections::{BTreeMap, HashMap};

use super::{Stage, StageName, StageOrigin, StageRef};
use crate::core::diagnostics::{Problem, Problems};

/// Name every stage, dropping (and reporting) a second definition of the
/// same identity so that it is reported once, with both namespaces and files.
pub fn assign_names(stages: &mut Vec<Stage>, problems: &mut Problems) {
    let mut seen: HashMap<StageRef, usize> = HashMap::new();
    let mut keep = Vec::with_capacity(stages.len());
    for (i, stage) in stages.iter().enumerate() {
        match seen.get(&stage.id) {
            Some(&first) => {
                problems.push(
                    Problem::error(format!(
                        "duplicate stage name {}, also defined in {}",
                        stage.id,
                        stages[first].source.display()
                    ))
                    .in_file(&stage.source)
                    .in_stage(&stage.name),
                );
                keep.push(false);
            }
            None => {
                seen.insert(stage.id.clone(), i);
                keep.push(true);
            }
        }
    }
    let mut keep = keep.into_iter();
    stages.retain(|_| keep.next().unwrap_or(true));
    qualify_names(stages);
}

/// Give each stage its name: the declared name, or `namespace.name` for Flux
/// stages that share a name across namespaces. The dot keeps the name valid
/// as a label value and an object name.
pub fn qualify_names(stages: &mut [Stage]) {
    let mut by_name: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, stage) in stages.iter().enumerate() {
        by_name.entry(stage.id.name.clone()).or_default().push(i);
    }
    for indices in by_name.values() {
        // Only Flux stages in distinct namespaces can be told apart; a native
        // stage of the same name stays a duplicate the plan reports.
        let qualify = indices.len() > 1
            && indices.iter().all(|&i| {
                stages[i].origin == StageOrigin::Flux && stages[i].id.namespace.is_some()
            });
        for &i in indices {
            let id = &stages[i].id;
            stages[i].name = match (&id.namespace, qualify) {
                (Some(ns), true) => StageName::new(format!("{ns}.{}", id.name)),
                _ => StageName::new(id.name.clone()),
            };
        }
    }
}

/// Resolve every stage's `dependsOn` into stage names. A reference names a
/// stage by identity; one that names no stage is kept as written, for the
/// plan to report as unknown.
pub fn resolve_dependencies(stages: &mut [Stage]) {
    let by_id: HashMap<StageRef, StageName> = stages
        .iter()
        .map(|s| (s.id.clone(), s.name.clone()))
        .collect();
    let mut by_name: HashMap<&str, Vec<&Stage>> = HashMap::new();
    for stage in stages.iter() {
        by_name
            .entry(stage.id.name.as_str())
            .or_default()
            .push(stage);
    }
    let resolved: Vec<Vec<StageName>> = stages
        .iter()
        .map(|stage| {
            let mut deps: Vec<StageName> = Vec::new();
            for dep in &stage.dependency_refs {
                let name = by_id
                    .get(dep)
                    .cloned()
                    .or_else(|| across_forms(dep, &by_name))
                    .unwrap_or_else(|| StageName::new(dep.to_string()));
                if !deps.contains(&name) {
                    deps.push(name);
                }
            }
            deps
        })
        .collect();
    for (stage, deps) in stages.iter_mut().zip(resolved) {
        stage.depends_on = deps;
    }
    add_children_to_waiting_parents(stages);
}

/// A native stage has no namespace, and a Flux document may omit its own:
/// such a reference matches the only stage of that name where one side has
/// no namespace to compare.
fn across_forms(dep: &StageRef, by_name: &HashMap<&str, Vec<&Stage>>) -> Option<StageName> {
    let candidates = by_name.get(dep.name.as_str())?;
    match candidates.as_slice() {
        [only] if only.id.namespace.is_none() || dep.namespace.is_none() => Some(only.name.clone()),
        _ => None,
    }
}

/// Flux's health check on a Kustomization object waits for that
/// Kustomization to be Ready; a parent with `wait: true` is therefore Ready
/// only once the children it applies are. Whoever depends on such a parent
/// depends on its children too (on every descendant through waiting parents).
fn add_children_to_waiting_parents(stages: &mut [Stage]) {
    let mut children: HashMap<StageName, Vec<StageName>> = HashMap::new();
    let waits: HashMap<StageName, bool> = stages
        .iter()
        .map(|s| (s.name.clone(), s.wait == Some(true)))
        .collect();
    for stage in stages.iter() {
        if let Some(parent) = &stage.parent {
            children
                .entry(parent.clone())
                .or_default()
                .push(stage.name.clone());
        }
    }
    let descendants = |root: &StageName| -> Vec<StageName> {
        let mut out = Vec::new();
        let mut todo = vec![root.clone()];
        while let Some(next) = todo.pop() {
            if !waits.get(&next).copied().unwrap_or(false) {
                continue;
            }
            for child in children.get(&next).into_iter().flatten() {
                if !out.contains(child) {
                    out.push(child.clone());
                    todo.push(child.clone());
                }
            }
        }
        out
    };
    let parent_of: HashMap<StageName, StageName> = stages
        .iter()
        .filter_map(|s| Some((s.name.clone(), s.parent.clone()?)))
        .collect();
    let is_ancestor = |stage: &StageName, of: &StageName| {
        let mut up = parent_of.get(of);
        while let Some(p) = up {
            if p == stage {
                return true;
            }
            up = parent_of.get(p);
        }
        false
    };
    // A child depends on its parent (it exists once the parent applied
    // it), not on its siblings: its own ancestors add nothing.
    let extra: Vec<Vec<StageName>> = stages
        .iter()
        .map(|stage| {
            stage
                .depends_on
                .iter()
                .filter(|d| !is_ancestor(d, &stage.name))
                .flat_map(&descendants)
                .filter(|d| *d != stage.name)
                .collect()
        })
        .collect();
    for (stage, extra) in stages.iter_mut().zip(extra) {
        for name in extra {
            if !stage.depends_on.contains(&name) {
                stage.depends_on.push(name);
            }
        }
    }
}

/// The source a Flux stage reads from, as its `sourceRef` names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceRef {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl std::fmt::Display for SourceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// stagegate renders every stage from the one repository it watches. Flux
/// stages name that repository as a GitRepository; the one most of them name
/// is taken as it (`flux-system`, Flux's bootstrap name, on a tie). A stage
/// naming another source would be rendered from the wrong files, so it is an
/// error naming `spec.sourceRef`; the indices of those stages are returned.
pub fn check_sources(stages: &[Stage], problems: &mut Problems) -> Vec<usize> {
    let mut counts: BTreeMap<&SourceRef, usize> = BTreeMap::new();
    for source in stages.iter().filter_map(|s| s.source_ref.as_ref()) {
        if source.kind == "GitRepository" {
            *counts.entry(source).or_default() += 1;
        }
    }
    let watched = counts
        .iter()
        .max_by_key(|(source, n)| (**n, source.name == "flux-system"))
        .map(|(source, _)| (*source).clone());
    let mut refused = Vec::new();
    for (i, stage) in stages.iter().enumerate() {
        let Some(source) = &stage.source_ref else {
            continue;
        };
        if Some(source) == watched.as_ref() {
            continue;
        }
        let why = if source.kind == "GitRepository" {
            match &watched {
                Some(w) => format!("the repository stagegate watches is {w}"),
                None => String::new(),
            }
        } else {
            "stagegate renders only the Git repository it watches".to_string()
        };
        problems.push(
            Problem::error(format!(
                "Kustomization spec.sourceRef: {source} is not the watched repository; {why}"
            ))
            .in_file(&stage.source)
            .in_stage(&stage.name),
        );
        refused.push(i);
    }
    refused
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flux(ns: &str, name: &str, deps: &[(&str, Option<&str>)]) -> Stage {
        let mut s = Stage::new(name, name);
        s.origin = StageOrigin::Flux;
        s.id.namespace = Some(ns.to_string());
        s.source = format!("{ns}/{name}.yaml").into();
        s.dependency_refs = deps
            .iter()
            .map(|(n, dep_ns)| StageRef {
                namespace: Some(dep_ns.unwrap_or(ns).to_string()),
                name: n.to_string(),
            })
            .collect();
        s
    }

    #[test]
    fn same_name_in_two_namespaces_is_two_stages_and_depends_on_means_own_namespace() {
        let mut stages = vec![
            flux("production", "infra", &[]),
            flux("staging", "infra", &[]),
            flux("production", "apps", &[("infra", None)]),
            flux("staging", "apps", &[("infra", None)]),
            flux("flux-system", "tests", &[("apps", Some("staging"))]),
        ];
        let mut problems = Problems::default();
        assign_names(&mut stages, &mut problems);
        resolve_dependencies(&mut stages);
        assert!(problems.is_empty(), "{problems}");
        let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "production.infra",
                "staging.infra",
                "production.apps",
                "staging.apps",
                "tests"
            ]
        );
        assert_eq!(stages[2].depends_on, [StageName::from("production.infra")]);
        assert_eq!(stages[3].depends_on, [StageName::from("staging.infra")]);
        assert_eq!(stages[4].depends_on, [StageName::from("staging.apps")]);
    }

    #[test]
    fn duplicate_identity_names_namespace_and_both_files() {
        let mut stages = vec![
            flux("production", "apps", &[]),
            flux("production", "apps", &[]),
        ];
        stages[1].source = "other.yaml".into();
        let mut problems = Problems::default();
        assign_names(&mut stages, &mut problems);
        assert_eq!(stages.len(), 1);
        let message = problems.iter().next().unwrap().to_string();
        assert!(
            message.contains("duplicate stage name production/apps"),
            "{message}"
        );
        assert!(message.contains("production/apps.yaml"), "{message}");
        assert!(message.starts_with("error: other.yaml"), "{message}");
    }

    #[test]
    fn dependency_in_another_namespace_is_not_found_by_name_alone() {
        let mut stages = vec![
            flux("production", "infra", &[]),
            flux("staging", "infra", &[]),
            flux("tenants", "apps", &[("infra", None)]),
        ];
        let mut problems = Problems::default();
        assign_names(&mut stages, &mut problems);
        resolve_dependencies(&mut stages);
        assert_eq!(stages[2].depends_on, [StageName::from("tenants/infra")]);
    }

    #[test]
    fn dependents_of_a_waiting_parent_wait_for_its_children() {
        let mut parent = flux("flux-system", "apps", &[]);
        parent.wait = Some(true);
        let mut child = flux("flux-system", "podinfo", &[]);
        child.parent = Some(StageName::from("apps"));
        let tests = flux("flux-system", "tests", &[("apps", None)]);
        let mut stages = vec![parent, child, tests];
        assign_names(&mut stages, &mut Problems::default());
        resolve_dependencies(&mut stages);
        assert_eq!(
            stages[2].depends_on,
            [StageName::from("apps"), StageName::from("podinfo")]
        );
        stages[0].wait = None;
        stages[2].depends_on.clear();
        resolve_dependencies(&mut stages);
        assert_eq!(stages[2].depends_on, [StageName::from("apps")]);
    }

    #[test]
    fn a_source_other_than_the_watched_repository_is_refused() {
        let git = |name: &str| SourceRef {
            kind: "GitRepository".into(),
            namespace: Some("flux-system".into()),
            name: name.into(),
        };
        let mut stages = vec![
            flux("flux-system", "a", &[]),
            flux("flux-system", "b", &[]),
            flux("flux-system", "c", &[]),
            flux("flux-system", "d", &[]),
        ];
        stages[0].source_ref = Some(git("fleet"));
        stages[1].source_ref = Some(git("fleet"));
        stages[2].source_ref = Some(git("other"));
        stages[3].source_ref = Some(SourceRef {
            kind: "OCIRepository".into(),
            ..git("fleet")
        });
        let mut problems = Problems::default();
        assert_eq!(check_sources(&stages, &mut problems), [2, 3]);
        let messages: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(
            messages[0].contains("spec.sourceRef: GitRepository flux-system/other")
                && messages[0].contains("GitRepository flux-system/fleet"),
            "{messages:?}"
        );
        assert!(messages[1].contains("OCIRepository"), "{messages:?}");
    }
}
