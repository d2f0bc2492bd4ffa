//! The stage graph as SVG: one box per stage, coloured by phase, with its
//! hooks inside it, and an arrow from each dependency to its dependent. The
//! status page inlines it; `stagegate graph --format svg` writes it.

use std::fmt::Write;

use super::escape::escape;
use super::layout::{self, LINE_HEIGHT, Node, PADDING, Rect};
use super::report::{StatusReport, Topology};
use crate::state::Phase;

/// A stage as drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphStage {
    pub name: String,
    pub depends_on: Vec<String>,
    pub hooks: Vec<String>,
    /// `None` when drawn from a repository, before any agent ran it.
    pub phase: Option<Phase>,
    /// Shown as the box's tooltip.
    pub message: String,
}

/// Hook lines longer than this are cut: a box should not span the page.
const MAX_LINE: usize = 56;

/// The stages of a repository, without phases.
pub fn stages_of_topology(topology: &Topology) -> Vec<GraphStage> {
    topology
        .stages
        .iter()
        .map(|s| GraphStage {
            name: s.name.clone(),
            depends_on: s.depends_on.clone(),
            hooks: s.hooks.clone(),
            phase: None,
            message: String::new(),
        })
        .collect()
}

/// The stages of a status report, with their phases.
pub fn stages_of_report(report: &StatusReport) -> Vec<GraphStage> {
    report
        .stages
        .iter()
        .map(|(name, s)| GraphStage {
            name: name.clone(),
            depends_on: s.depends_on.clone(),
            hooks: s.hooks.clone(),
            phase: Some(s.phase),
            message: s.message.clone(),
        })
        .collect()
}

/// Colours for every phase, light and dark; shared by the page's stylesheet.
pub const STYLE: &str = include_str!("assets/graph.css");

/// Draw `stages`. With `links`, each box links to `/stages/NAME` (the page);
/// a standalone file carries its own stylesheet.
pub fn render(stages: &[GraphStage], links: bool, standalone: bool) -> String {
    let index = |name: &str| stages.iter().position(|s| s.name == name);
    let nodes: Vec<Node> = stages
        .iter()
        .map(|s| Node {
            deps: s.depends_on.iter().filter_map(|d| index(d)).collect(),
            lines: box_lines(s),
        })
        .collect();
    let placed = layout::layout(&nodes);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="stage-graph" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="stage graph">"#,
        w = placed.width.ceil(),
        h = placed.height.ceil()
    );
    if standalone {
        let _ = write!(out, "<style>{STYLE}</style>");
    }
    out.push_str(
        r#"<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="arrow"/></marker></defs>"#,
    );
    for (i, node) in nodes.iter().enumerate() {
        for &dep in &node.deps {
            edge(
                &mut out,
                &placed.boxes[dep],
                &placed.boxes[i],
                &stages[dep].name,
                &stages[i].name,
            );
        }
    }
    for (stage, rect) in stages.iter().zip(&placed.boxes) {
        stage_box(&mut out, stage, rect, links);
    }
    out.push_str("</svg>");
    out
}

fn box_lines(stage: &GraphStage) -> Vec<String> {
    let mut lines = vec![stage.name.clone()];
    if let Some(phase) = stage.phase {
        lines.push(phase.to_string());
    }
    lines.extend(stage.hooks.iter().map(|h| cut(h)));
    lines
}

fn cut(line: &str) -> String {
    if line.chars().count() <= MAX_LINE {
        return line.to_string();
    }
    let mut short: String = line.chars().take(MAX_LINE - 1).collect();
    short.push('…');
    short
}

fn edge(out: &mut String, from: &Rect, to: &Rect, from_name: &str, to_name: &str) {
    let (x1, y1) = (from.x + from.width / 2.0, from.y + from.height);
    let (x2, y2) = (to.x + to.width / 2.0, to.y - 2.0);
    let bend = (y2 - y1).abs() / 2.0;
    let _ = write!(
        out,
        r#"<path class="edge" data-from="{}" data-to="{}" d="M{x1:.1},{y1:.1} C{x1:.1},{:.1} {x2:.1},{:.1} {x2:.1},{y2:.1}" marker-end="url(#arrow)"/>"#,
        escape(from_name),
        escape(to_name),
        y1 + bend,
        y2 - bend,
    );
}

fn stage_box(out: &mut String, stage: &GraphStage, rect: &Rect, links: bool) {
    let name = escape(&stage.name);
    let (class, phase_attr) = match stage.phase {
        Some(phase) => (
            format!("phase-{}", format!("{phase:?}").to_lowercase()),
            format!(r#" data-phase="{phase:?}""#),
        ),
        None => ("phase-none".to_string(), String::new()),
    };
    if links {
        let _ = write!(out, r#"<a href="/stages/{}">"#, url_segment(&stage.name));
    }
    let _ = write!(
        out,
        r#"<g class="stage {class}" data-stage="{name}"{phase_attr} transform="translate({:.1},{:.1})">"#,
        rect.x, rect.y
    );
    let tooltip = if stage.message.is_empty() {
        stage.name.clone()
    } else {
        format!("{}: {}", stage.name, stage.message)
    };
    let _ = write!(out, "<title>{}</title>", escape(&tooltip));
    let _ = write!(
        out,
        r#"<rect width="{:.1}" height="{:.1}" rx="6"/>"#,
        rect.width, rect.height
    );
    let baseline = |line: usize| PADDING + LINE_HEIGHT * (line as f64 + 1.0) - 4.0;
    let _ = write!(
        out,
        r#"<text class="name" x="{PADDING}" y="{:.1}">{name}</text>"#,
        baseline(0)
    );
    let mut line = 1;
    if let Some(phase) = stage.phase {
        let _ = write!(
            out,
            r#"<text class="phase" x="{PADDING}" y="{:.1}">{phase:?}</text>"#,
            baseline(line)
        );
        line += 1;
    }
    for hook in &stage.hooks {
        let _ = write!(
            out,
            r#"<text class="hook" x="{PADDING}" y="{:.1}">{}</text>"#,
            baseline(line),
            escape(&cut(hook))
        );
        line += 1;
    }
    out.push_str("</g>");
    if links {
        out.push_str("</a>");
    }
}

/// Stage names are DNS labels; anything else is percent-encoded anyway.
pub fn url_segment(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(name: &str, deps: &[&str], phase: Option<Phase>) -> GraphStage {
        GraphStage {
            name: name.into(),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            hooks: vec!["pre: migrate <v2> (weight -5)".into()],
            phase,
            message: "blocked by failed stage \"pre\"".into(),
        }
    }

    #[test]
    fn every_stage_carries_its_name_and_phase_and_text_is_escaped() {
        let svg = render(
            &[
                stage("pre", &[], Some(Phase::Failed)),
                stage("app", &["pre"], Some(Phase::Blocked)),
            ],
            true,
            false,
        );
        assert!(svg.contains(r#"<a href="/stages/pre"><g class="stage phase-failed" data-stage="pre" data-phase="Failed""#), "{svg}");
        assert!(
            svg.contains(r#"data-stage="app" data-phase="Blocked""#),
            "{svg}"
        );
        assert!(
            svg.contains(r#"<path class="edge" data-from="pre" data-to="app""#),
            "{svg}"
        );
        assert!(svg.contains("pre: migrate &lt;v2&gt; (weight -5)"), "{svg}");
        assert!(
            svg.contains("blocked by failed stage &quot;pre&quot;"),
            "{svg}"
        );
        assert!(!svg.contains("<style>"));
    }

    #[test]
    fn a_standalone_drawing_has_its_style_and_no_phases_or_links() {
        let svg = render(&[stage("pre", &[], None)], false, true);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.contains("<style>") && svg.contains("prefers-color-scheme: dark"));
        assert!(
            svg.contains(r#"class="stage phase-none" data-stage="pre" transform"#),
            "{svg}"
        );
        assert!(!svg.contains("<a "));
        assert!(!svg.contains("data-phase"));
    }

    #[test]
    fn long_hook_lines_are_cut_and_odd_names_are_encoded() {
        assert_eq!(cut(&"x".repeat(80)).chars().count(), MAX_LINE);
        assert_eq!(url_segment("a b/c"), "a%20b%2Fc");
    }
}
