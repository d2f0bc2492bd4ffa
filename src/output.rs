//! What the offline commands print: the plan as a graph (text or Graphviz)
//! and rendered objects as one multi-document YAML stream.

use std::fmt::Write;

use crate::object::Manifest;
use crate::plan::Plan;

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
        if stage.suspend {
            out.push_str(" (suspended)");
        }
        out.push('\n');
    }
    out
}

/// A Graphviz digraph with edges from each dependency to its dependent.
pub fn graph_dot(plan: &Plan) -> String {
    let mut out = String::from("digraph stages {\n  rankdir=LR;\n");
    for planned in &plan.stages {
        let _ = writeln!(out, "  {};", quote(planned.stage.name.as_str()));
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
    out.push_str("}\n");
    out
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Objects as a YAML stream, each document introduced by `---`.
pub fn yaml_stream<'a>(
    objects: impl IntoIterator<Item = &'a Manifest>,
) -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&object.value)?);
    }
    Ok(out)
}
