//! The dependency graph of stages: a deterministic topological order and the
//! cycles that prevent one.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};

use super::{Stage, StageName};

/// A dependency cycle, as the path of stage names it follows, starting and
/// ending at the same stage (each stage depends on the next).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cycle(pub Vec<StageName>);

impl std::fmt::Display for Cycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.0.iter().map(StageName::as_str).collect();
        f.write_str(&names.join(" -> "))
    }
}

/// Stages indexed by name, with edges from each stage to its dependencies.
/// Dependencies on unknown stages are left out (validation reports them).
pub struct StageGraph<'a> {
    stages: &'a [Stage],
    deps: Vec<Vec<usize>>,
}

impl<'a> StageGraph<'a> {
    /// Build the graph; with duplicate names the first stage wins (validation
    /// reports the duplicates).
    pub fn new(stages: &'a [Stage]) -> Self {
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (i, stage) in stages.iter().enumerate() {
            index.entry(stage.name.as_str()).or_insert(i);
        }
        let deps = stages
            .iter()
            .map(|stage| {
                let mut deps: Vec<usize> = stage
                    .depends_on
                    .iter()
                    .filter_map(|d| index.get(d.as_str()).copied())
                    .collect();
                deps.sort_unstable();
                deps.dedup();
                deps
            })
            .collect();
        Self { stages, deps }
    }

    /// Indices of the stages `i` depends on directly.
    pub fn dependencies(&self, i: usize) -> &[usize] {
        &self.deps[i]
    }

    /// A topological order (dependencies first); among stages that are ready at
    /// the same time, names sort alphabetically, so the order is the same on
    /// every run. Fails with every cycle when there is one.
    pub fn topological_order(&self) -> Result<Vec<usize>, Vec<Cycle>> {
        let n = self.stages.len();
        let mut pending: Vec<usize> = self.deps.iter().map(Vec::len).collect();
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, deps) in self.deps.iter().enumerate() {
            for &d in deps {
                dependents[d].push(i);
            }
        }
        let mut ready: BinaryHeap<Reverse<(&str, usize)>> = (0..n)
            .filter(|&i| pending[i] == 0)
            .map(|i| Reverse((self.stages[i].name.as_str(), i)))
            .collect();
        let mut order = Vec::with_capacity(n);
        while let Some(Reverse((_, i))) = ready.pop() {
            order.push(i);
            for &dependent in &dependents[i] {
                pending[dependent] -= 1;
                if pending[dependent] == 0 {
                    ready.push(Reverse((self.stages[dependent].name.as_str(), dependent)));
                }
            }
        }
        if order.len() == n {
            Ok(order)
        } else {
            let stuck: Vec<usize> = (0..n).filter(|&i| pending[i] > 0).collect();
            Err(self.cycles_among(&stuck))
        }
    }

    /// Every elementary cycle reachable among the stuck stages, each once,
    /// rotated to start at its alphabetically first stage.
    fn cycles_among(&self, stuck: &[usize]) -> Vec<Cycle> {
        let stuck_set: BTreeSet<usize> = stuck.iter().copied().collect();
        let mut found: BTreeSet<Vec<usize>> = BTreeSet::new();
        for &start in stuck {
            let mut path = vec![start];
            self.walk(start, &stuck_set, &mut path, &mut found);
        }
        found
            .into_iter()
            .map(|cycle| {
                let mut names: Vec<StageName> =
                    cycle.iter().map(|&i| self.stages[i].name.clone()).collect();
                names.push(names[0].clone());
                Cycle(names)
            })
            .collect()
    }

    fn walk(
        &self,
        node: usize,
        allowed: &BTreeSet<usize>,
        path: &mut Vec<usize>,
        found: &mut BTreeSet<Vec<usize>>,
    ) {
        // Bounded: a repository with many intertwined cycles still reports
        // enough to fix the first ones without an exponential search.
        if found.len() >= 20 {
            return;
        }
        for &next in &self.deps[node] {
            if !allowed.contains(&next) {
                continue;
            }
            if let Some(pos) = path.iter().position(|&p| p == next) {
                found.insert(self.rotate(&path[pos..]));
            } else {
                path.push(next);
                self.walk(next, allowed, path, found);
                path.pop();
            }
        }
    }

    fn rotate(&self, cycle: &[usize]) -> Vec<usize> {
        let first = (0..cycle.len())
            .min_by_key(|&k| self.stages[cycle[k]].name.as_str())
            .unwrap_or(0);
        cycle[first..]
            .iter()
            .chain(&cycle[..first])
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(name: &str, deps: &[&str]) -> Stage {
        let mut s = Stage::new(name, name);
        s.depends_on = deps.iter().map(|d| StageName::from(*d)).collect();
        s
    }

    fn names(stages: &[Stage], order: &[usize]) -> Vec<String> {
        order.iter().map(|&i| stages[i].name.to_string()).collect()
    }

    #[test]
    fn dependencies_come_first_and_ties_sort_by_name() {
        let stages = vec![
            stage("app", &["pre", "crds"]),
            stage("pre", &["crds"]),
            stage("monitoring", &[]),
            stage("crds", &[]),
        ];
        let order = StageGraph::new(&stages).topological_order().unwrap();
        assert_eq!(names(&stages, &order), ["crds", "monitoring", "pre", "app"]);
    }

    #[test]
    fn cycle_is_reported_as_a_path() {
        let stages = vec![
            stage("a", &["b"]),
            stage("b", &["c"]),
            stage("c", &["a"]),
            stage("d", &["a"]),
        ];
        let cycles = StageGraph::new(&stages).topological_order().unwrap_err();
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].to_string(), "a -> b -> c -> a");
    }

    #[test]
    fn self_dependency_is_a_cycle() {
        let stages = vec![stage("a", &["a"])];
        let cycles = StageGraph::new(&stages).topological_order().unwrap_err();
        assert_eq!(cycles[0].to_string(), "a -> a");
    }

    #[test]
    fn unknown_dependencies_do_not_block_the_order() {
        let stages = vec![stage("a", &["ghost"])];
        assert_eq!(StageGraph::new(&stages).topological_order().unwrap(), [0]);
    }
}
