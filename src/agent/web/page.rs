//! The status page's markup, made on the server: the graph, the Git source
//! and one detail section per stage. The browser only swaps these fragments
//! in when the agent's state changes (see `assets/page.js`).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use super::escape::escape;
use super::report::{JobReport, RunReport, SourceReport, StageReport, StatusReport};
use super::svg::{self, url_segment};
use crate::cluster::state::{JobResult, Phase};

/// What the page shows, as sent on every change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct View {
    pub svg: String,
    pub source: String,
    /// Detail section by stage name.
    pub details: BTreeMap<String, String>,
}

impl View {
    pub fn of(report: &StatusReport) -> Self {
        Self {
            svg: svg::render(&svg::stages_of_report(report), true, false),
            source: source_html(report.source.as_ref()),
            details: report
                .stages
                .iter()
                .map(|(name, stage)| (name.clone(), stage_html(name, stage)))
                .collect(),
        }
    }
}

const TEMPLATE: &str = include_str!("assets/page.html");

/// The whole page, with `selected`'s details shown (`/stages/NAME`).
pub fn document(view: &View, selected: Option<&str>) -> String {
    let detail = match selected {
        Some(name) => view.details.get(name).cloned().unwrap_or_else(|| {
            format!(
                r#"<p class="empty">No stage named <code>{}</code>.</p>"#,
                escape(name)
            )
        }),
        None => r#"<p class="empty">Select a stage to see its Jobs, objects and logs.</p>"#.into(),
    };
    let graph = if view.details.is_empty() {
        r#"<p class="empty">No stages yet: the agent has not planned a revision.</p>"#.to_string()
    } else {
        view.svg.clone()
    };
    TEMPLATE
        .replace("{{title}}", &escape(selected.unwrap_or("stages")))
        .replace("{{source}}", &view.source)
        .replace("{{graph}}", &graph)
        .replace("{{detail}}", &detail)
}

fn source_html(source: Option<&SourceReport>) -> String {
    let Some(source) = source else {
        return r#"<p class="empty">No revision fetched yet.</p>"#.into();
    };
    let mut out = String::from(r#"<ul class="facts">"#);
    let mut fact = |term: &str, value: Option<&str>| {
        if let Some(value) = value {
            let _ = write!(
                out,
                r#"<li><span class="term">{term}</span> <code title="{}">{}</code></li>"#,
                escape(value),
                escape(short_revision(value)),
            );
        }
    };
    fact("repository", source.repository.as_deref());
    fact("following", source.reference.as_deref());
    fact("applied", Some(source.applied.as_deref().unwrap_or("-")));
    fact("attempted", source.attempted.as_deref());
    out.push_str("</ul>");
    if !source.error.is_empty() {
        let since = source
            .error_since
            .as_deref()
            .map(|s| format!(" since {}", escape(s)))
            .unwrap_or_default();
        let _ = write!(
            out,
            r#"<div class="error"><strong>last fetch failed{since}</strong><pre>{}</pre></div>"#,
            escape(&source.error)
        );
    }
    for warning in &source.warnings {
        let _ = write!(out, r#"<p class="warning">{}</p>"#, escape(warning));
    }
    out
}

fn stage_html(name: &str, stage: &StageReport) -> String {
    let mut out = String::new();
    let phase = format!("{:?}", stage.phase);
    let _ = write!(
        out,
        r#"<section class="stage-detail" data-detail="{n}"><h2><a href="/stages/{u}">{n}</a> <span class="badge phase-{p}">{phase}</span></h2>"#,
        n = escape(name),
        u = url_segment(name),
        p = phase.to_lowercase(),
    );
    out.push_str("<dl>");
    let mut row = |term: &str, value: Option<&str>| {
        if let Some(value) = value {
            let _ = write!(
                out,
                r#"<dt>{term}</dt><dd title="{}">{}</dd>"#,
                escape(value),
                escape(short_revision(value))
            );
        }
    };
    row("since", stage.since.as_deref());
    row("ready at", stage.revision.as_deref());
    row("attempted", stage.attempted_revision.as_deref());
    if !stage.depends_on.is_empty() {
        row("depends on", Some(&stage.depends_on.join(", ")));
    }
    out.push_str("</dl>");
    if !stage.message.is_empty() {
        let label = match stage.phase {
            Phase::Blocked => "why it is blocked",
            Phase::Failed => "why it failed",
            _ => "message",
        };
        let _ = write!(
            out,
            r#"<h3>{label}</h3><pre class="message">{}</pre>"#,
            escape(&stage.message)
        );
    }
    if !stage.hooks.is_empty() {
        out.push_str("<h3>hooks</h3><ul class=\"hooks\">");
        for hook in &stage.hooks {
            let _ = write!(out, "<li>{}</li>", escape(hook));
        }
        out.push_str("</ul>");
    }
    if !stage.jobs.is_empty() {
        jobs_html(&mut out, name, &stage.jobs);
    }
    objects_html(&mut out, stage);
    out.push_str("</section>");
    out
}

fn jobs_html(out: &mut String, stage: &str, jobs: &[JobReport]) {
    out.push_str(
        r#"<h3>Jobs</h3><div class="scroll"><table class="runs"><thead><tr><th>Job</th><th>spec</th><th>attempt</th><th>outcome</th><th>duration</th><th>revision</th></tr></thead><tbody>"#,
    );
    for job in jobs {
        let anchor = job_anchor(&job.name);
        for run in job.runs.iter().rev() {
            let hook = job
                .hook
                .as_deref()
                .map(|h| format!(r#" <span class="hook">{}</span>"#, escape(h)))
                .unwrap_or_default();
            let _ = write!(
                out,
                r#"<tr class="run result-{r}" id="{anchor}"><td><a href="/stages/{s}#{anchor}">{j}</a>{hook}</td><td><code title="{hash}">{short}</code></td><td>{a}</td><td>{outcome}</td><td>{d}</td><td><code>{rev}</code></td></tr>"#,
                r = result_name(run.result),
                s = url_segment(stage),
                j = escape(&job.name),
                hash = escape(&run.hash),
                short = escape(&run.hash[..run.hash.len().min(12)]),
                a = run.attempt,
                outcome = outcome(run),
                d = run
                    .duration_seconds
                    .map(|s| format!("{s:.1}s"))
                    .unwrap_or_else(|| "-".into()),
                rev = escape(short_revision(&run.revision)),
            );
        }
    }
    out.push_str("</tbody></table></div>");
    // The log of the newest failed run of each Job: what someone opening a
    // red stage came for.
    for job in jobs {
        let failed = job
            .runs
            .iter()
            .rev()
            .find(|r| r.result == JobResult::Failed && r.log_tail.is_some());
        if let Some(run) = failed {
            let _ = write!(
                out,
                r#"<h3>log tail of {} (attempt {})</h3><pre class="log-tail" data-job="{}">{}</pre>"#,
                escape(&job.name),
                run.attempt,
                escape(&job.name),
                escape(run.log_tail.as_deref().unwrap_or_default())
            );
        }
    }
}

fn objects_html(out: &mut String, stage: &StageReport) {
    if stage.objects.is_empty() {
        return;
    }
    let _ = write!(
        out,
        r#"<h3>objects ({})</h3><div class="scroll"><table class="objects"><thead><tr><th>kind</th><th>namespace</th><th>name</th><th>health</th></tr></thead><tbody>"#,
        stage.objects.len()
    );
    for object in &stage.objects {
        let _ = write!(
            out,
            // Filled in by the page from /api/stages/NAME/health: the state
            // records what was applied, not how it is doing now.
            r#"<tr><td>{}</td><td>{}</td><td>{}</td><td class="health" data-object="{}">…</td></tr>"#,
            escape(&object.kind),
            escape(object.namespace.as_deref().unwrap_or("-")),
            escape(&object.name),
            escape(&object_key(
                &object.kind,
                object.namespace.as_deref(),
                &object.name
            )),
        );
    }
    out.push_str("</tbody></table></div>");
}

/// How the page matches a health answer to its row: `Kind/namespace/name`.
fn object_key(kind: &str, namespace: Option<&str>, name: &str) -> String {
    format!("{kind}/{}/{name}", namespace.unwrap_or_default())
}

/// `main@sha1:<40 hex>` keeps 12 hex digits; the full one is the title.
fn short_revision(revision: &str) -> &str {
    match revision.rsplit_once("sha1:") {
        Some((prefix, sha)) if sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit()) => {
            &revision[..prefix.len() + "sha1:".len() + 12]
        }
        _ => revision,
    }
}

fn job_anchor(job: &str) -> String {
    let slug: String = job
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("job-{slug}")
}

fn result_name(result: JobResult) -> &'static str {
    match result {
        JobResult::Running => "running",
        JobResult::Succeeded => "succeeded",
        JobResult::Failed => "failed",
    }
}

fn outcome(run: &RunReport) -> String {
    match &run.reason {
        Some(reason) => format!("{} ({})", result_name(run.result), escape(reason)),
        None => result_name(run.result).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::web::report::ObjectReport;

    fn report() -> StatusReport {
        let mut report = StatusReport::default();
        report.stages.insert(
            "pre".into(),
            StageReport {
                phase: Phase::Failed,
                message: "Job shop/migrate failed".into(),
                objects: vec![ObjectReport {
                    api_version: "v1".into(),
                    kind: "Secret".into(),
                    namespace: Some("shop".into()),
                    name: "db".into(),
                }],
                jobs: vec![JobReport {
                    name: "shop/migrate".into(),
                    hook: None,
                    runs: vec![RunReport {
                        hash: "ab".repeat(32),
                        revision: "main@sha1:1".into(),
                        result: JobResult::Failed,
                        attempt: 1,
                        reason: Some("BackoffLimitExceeded".into()),
                        started: None,
                        finished: None,
                        duration_seconds: Some(1.25),
                        log_tail: Some("Died at -e line 1 <script>".into()),
                    }],
                }],
                ..StageReport::default()
            },
        );
        report.stages.insert(
            "app".into(),
            StageReport {
                phase: Phase::Blocked,
                message: "blocked by failed stage pre".into(),
                depends_on: vec!["pre".into()],
                ..StageReport::default()
            },
        );
        report
    }

    #[test]
    fn a_failed_stage_shows_its_runs_and_escaped_log_tail() {
        let view = View::of(&report());
        let pre = &view.details["pre"];
        assert!(
            pre.contains(r#"<span class="badge phase-failed">Failed</span>"#),
            "{pre}"
        );
        assert!(
            pre.contains("<td>1</td><td>failed (BackoffLimitExceeded)</td><td>1.2s</td>"),
            "{pre}"
        );
        assert!(pre.contains(r#"<pre class="log-tail" data-job="shop/migrate">Died at -e line 1 &lt;script&gt;</pre>"#), "{pre}");
        assert!(
            pre.contains(r#"<td>Secret</td><td>shop</td><td>db</td><td class="health" data-object="Secret/shop/db">"#),
            "{pre}"
        );
        assert!(
            pre.contains(r##"href="/stages/pre#job-shop-migrate""##),
            "{pre}"
        );
        let app = &view.details["app"];
        assert!(
            app.contains(
                "<h3>why it is blocked</h3><pre class=\"message\">blocked by failed stage pre</pre>"
            ),
            "{app}"
        );
    }

    #[test]
    fn the_document_shows_the_selected_stage_or_says_there_is_none() {
        let view = View::of(&report());
        let page = document(&view, Some("app"));
        assert!(page.contains(r#"data-detail="app""#));
        assert!(page.contains(r#"data-stage="pre" data-phase="Failed""#));
        assert!(!page.contains("{{"), "a placeholder was left");
        let page = document(&view, Some("nope<"));
        assert!(page.contains("No stage named <code>nope&lt;</code>"));
        let empty = document(&View::of(&StatusReport::default()), None);
        assert!(empty.contains("No stages yet"));
    }
}
