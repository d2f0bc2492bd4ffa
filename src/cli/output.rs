//! What the offline commands print: the plan as a graph (text or Graphviz)
//! and rendered objects as one multi-document YAML stream.

use std::fmt::Write;

use crate::core::hooks::HookKind;
use crate::core::plan::{Plan, PlannedObject, hook_lines};

/// One stage per line, dependencies first: `name <- dep, dep`.
pub fn graph_text(plan: &Plan) -> String {
    let mut out = String::new();
    for planned in &plan.stages {
        let stage = &planned.stage;
        out.push_str(stage.name.as_str());
        if !stage.depends_on.is_empty() {
            let deps: Vec<&str> = stage.depends_on.iter().map(|d| d.as_str()).collect();
            let _ = write!(out, " <- {}", deps.join(", "));
        }
        if let Some(parent) = &stage.parent {
            let _ = write!(out, " (child of {parent})");
        }
        if stage.suspend {
            out.push_str(" (suspended)");
        }
        out.push('\n');
        for line in hook_lines(planned) {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

/// A Graphviz digraph with edges from each dependency to its dependent.
pub fn graph_dot(plan: &Plan) -> String {
    let mut out = String::from("digraph stages {\n  rankdir=LR;\n");
    for planned in &plan.stages {
        let hooks = hook_lines(planned);
        if hooks.is_empty() {
            let _ = writeln!(out, "  {};", quote(planned.stage.name.as_str()));
        } else {
            // The stage's hooks under its name, one per line of the label.
            let mut label = planned.stage.name.to_string();
            for line in hooks {
                label.push('\n');
                label.push_str(&line);
            }
            let _ = writeln!(
                out,
                "  {} [label={}];",
                quote(planned.stage.name.as_str()),
                quote(&label).replace('\n', "\\l")
            );
        }
    }
    for planned in &plan.stages {
        for dep in &planned.stage.depends_on {
            let _ = writeln!(
                out,
                "  {} -> {};",
                quote(dep.as_str()),
                quote(planned.stage.name.as_str())
            );
        }
    }
    for planned in &plan.stages {
        if let Some(parent) = &planned.stage.parent {
            let _ = writeln!(
                out,
                "  {} -> {} [style=dashed];",
                quote(parent.as_str()),
                quote(planned.stage.name.as_str())
            );
        }
    }
    out.push_str("}\n");
    out
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Objects as a YAML stream, each document introduced by `---`; a hook's
/// document starts with a comment saying when it runs
/// (`# hook: pre-apply (weight -5)`), which keeps the stream valid YAML.
pub fn yaml_stream<'a>(
    objects: impl IntoIterator<Item = &'a PlannedObject>,
) -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        match &object.hook {
            HookKind::Hook(hook) => {
                let _ = writeln!(out, "# hook: {}", hook.describe());
            }
            HookKind::Unsupported => {
                out.push_str("# hook: never applied (stagegate cannot honour its hook kinds)\n");
            }
            HookKind::NotAHook => {}
        }
        out.push_str(&crate::core::yaml::to_yaml(&object.value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::plan::build_plan;

    fn write(dir: &std::path::Path, files: &[(&str, &str)]) {
        for (path, content) in files {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
    }

    fn job(name: &str, annotations: &str) -> String {
        format!(
            "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\n  annotations:\n{annotations}spec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{{name: a, image: busybox}}]\n"
        )
    }

    fn hooked_plan() -> (tempfile::TempDir, Plan) {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[
                (
                    "stage.yaml",
                    "apiVersion: stagegate.dev/v1alpha1\nkind: Stage\nmetadata: {name: app}\nspec: {path: app}\n",
                ),
                (
                    "app/cm.yaml",
                    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n",
                ),
                (
                    "app/migrate.yaml",
                    &job(
                        "migrate",
                        "    stagegate.dev/hook: pre-apply\n    stagegate.dev/hook-weight: \"-5\"\n",
                    ),
                ),
                (
                    "app/seed.yaml",
                    &job(
                        "seed",
                        "    helm.sh/hook: pre-install\n    helm.sh/hook-weight: \"-7\"\n",
                    ),
                ),
                (
                    "app/smoke.yaml",
                    &job(
                        "smoke",
                        "    kluctl.io/hook: post-deploy\n    kluctl.io/hook-wait: \"false\"\n",
                    ),
                ),
                (
                    "app/cleanup.yaml",
                    &job("cleanup", "    helm.sh/hook: pre-delete\n"),
                ),
            ],
        );
        let plan = build_plan(dir.path(), None).unwrap();
        (dir, plan)
    }

    #[test]
    fn graph_lists_each_stages_hooks_in_run_order() {
        let (_dir, plan) = hooked_plan();
        assert_eq!(
            graph_text(&plan),
            "app\n  pre (initial install): seed (weight -7)\n  pre: migrate (weight -5)\n  post: smoke (not waited for)\n  never applied: cleanup (unsupported hook kinds)\n"
        );
        let dot = graph_dot(&plan);
        assert!(
            dot.contains(
                r#""app" [label="app\lpre (initial install): seed (weight -7)\lpre: migrate"#
            ),
            "{dot}"
        );
    }

    #[test]
    fn render_marks_hooks_with_a_comment_and_stays_valid_yaml() {
        let (_dir, plan) = hooked_plan();
        let text = yaml_stream(&plan.stages[0].objects).unwrap();
        assert!(
            text.contains("---\n# hook: pre-apply (weight -5)\napiVersion: batch/v1"),
            "{text}"
        );
        assert!(
            text.contains("# hook: post-apply (not waited for)\n"),
            "{text}"
        );
        assert!(
            text.contains("# hook: pre-apply on the initial install (weight -7)\n"),
            "{text}"
        );
        assert!(text.contains("# hook: never applied"), "{text}");
        let docs: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
        assert_eq!(docs.len(), 5);
        assert!(docs.iter().all(|d| d.get("kind").is_some()));
    }
}
