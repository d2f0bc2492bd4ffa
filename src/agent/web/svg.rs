//! The stage graph as SVG: one box per stage, coloured by phase, with its
//! hooks inside it, and an arrow from each dependency to its dependent. The
//! status page inlines it; `stagegate graph --format svg` writes it.

use std::fmt::Write;

use super::escape::escape;
use super::layout::{self, LINE_HEIGHT, Node, PADDING, Rect};
use super::report::{StatusReport, Topology};
use crate::cluster::state::Phase;

/// A stage as drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphStage {
    pub name: String,
    pub depends_on: Vec<String>,
    /// The stage that declares this one: the box is drawn under it, joined
    /// by a dashed line.
    pub parent: Option<String>,
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
            parent: s.parent.clone(),
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
            parent: s.parent.clone(),
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
            // A nested stage sits below the stage that declares it.
            deps: s
                .depends_on
                .iter()
                .chain(&s.parent)
                .filter_map(|d| index(d))
                .collect(),
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
    for (i, stage) in stages.iter().enumerate() {
        if let Some(parent) = stage.parent.as_deref().and_then(index) {
            nested_edge(&mut out, &placed.boxes[parent], &placed.boxes[i], stage);
        }
    }
    for (i, node) in nodes.iter().enumerate() {
        let parent = stages[i].parent.as_deref().and_then(index);
        for &dep in node
            .deps
            .iter()
            .filter(|&&d| Some(d) != parent || stages[i].depends_on.contains(&stages[d].name))
        {
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
    if let Some(parent) = &stage.parent {
        lines.push(format!("in {parent}"));
    }
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

/// The dashed line from a stage to a stage it declares.
fn nested_edge(out: &mut String, parent: &Rect, child: &Rect, stage: &GraphStage) {
    let (x1, y1) = (parent.x + 12.0, parent.y + parent.height);
    let (x2, y2) = (child.x + 12.0, child.y);
    let _ = write!(
        out,
        r#"<path class="nested" data-parent="{}" data-child="{}" d="M{x1:.1},{y1:.1} L{x2:.1},{y2:.1}" stroke-dasharray="4 3"/>"#,
        escape(stage.parent.as_deref().unwrap_or_default()),
        escape(&stage.name),
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
    let parent_attr = match &stage.parent {
        Some(parent) => format!(r#" data-parent="{}""#, escape(parent)),
        None => String::new(),
    };
    let _ = write!(
        out,
        r#"<g class="stage {class}" data-stage="{name}"{phase_attr}{parent_attr} transform="translate({:.1},{:.1})">"#,
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
    if let Some(parent) = &stage.parent {
        let _ = write!(
            out,
            r#"<text class="parent" x="{PADDING}" y="{:.1}">in {}</text>"#,
            baseline(line),
            escape(parent)
        );
        line += 1;
    }
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
            parent: None,
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

#[cfg(test)]
mod nested_tests {
    use super::*;

    fn stage(name: &str, parent: Option<&str>, deps: &[&str]) -> GraphStage {
        GraphStage {
            name: name.into(),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            parent: parent.map(str::to_string),
            hooks: Vec::new(),
            phase: Some(Phase::Ready),
            message: String::new(),
        }
    }

    #[test]
    fn a_nested_stage_is_drawn_under_its_parent_joined_by_a_dashed_line() {
        let stages = [
            stage("infrastructure", None, &[]),
            stage("apps", None, &["infrastructure"]),
            stage("tenant-a", Some("apps"), &[]),
        ];
        let svg = render(&stages, true, false);
        assert!(
            svg.contains(r#"class="nested" data-parent="apps" data-child="tenant-a""#),
            "{svg}"
        );
        assert!(
            svg.contains(r#"data-stage="tenant-a" data-phase="Ready" data-parent="apps""#),
            "{svg}"
        );
        assert!(svg.contains(">in apps</text>"), "{svg}");
        // Only dependsOn is an arrow; the parent link is the dashed line.
        assert!(
            !svg.contains(r#"data-from="apps" data-to="tenant-a""#),
            "{svg}"
        );
        assert!(
            svg.contains(r#"data-from="infrastructure" data-to="apps""#),
            "{svg}"
        );
        let y = |name: &str| {
            let at = svg.find(&format!(r#"data-stage="{name}""#)).unwrap();
            let t = &svg[at..];
            let t = &t[t.find("translate(").unwrap() + 10..];
            let t = &t[t.find(',').unwrap() + 1..];
            t[..t.find(')').unwrap()].parse::<f64>().unwrap()
        };
        assert!(y("tenant-a") > y("apps"), "{svg}");
    }
}
