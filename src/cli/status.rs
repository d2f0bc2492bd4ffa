//! `stagegate status`: the Stage objects as a table a human reads.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use crate::cluster::state::store::StageObject;
use crate::cluster::state::{JobResult, Phase, SourceState};
use crate::core::object::Revision;

/// A Job running now, as seen live in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningJob {
    /// `namespace/name`.
    pub job: String,
    pub started: Option<jiff::Timestamp>,
    /// Phase of its newest pod (`Pending`, `Running`, …).
    pub pod_phase: Option<String>,
    /// Which attempt runs (failed pods + 1), of how many the Job allows.
    pub attempt: u32,
    pub attempts: u32,
}

/// Stages dependencies first; stages ready at the same time sort by name.
/// A dependency that is not an object (or a cycle) does not hide a stage.
pub fn dependency_order(stages: &[StageObject]) -> Vec<&StageObject> {
    let names: BTreeSet<&str> = stages.iter().map(|s| s.name.as_str()).collect();
    let mut pending: BTreeMap<&str, BTreeSet<&str>> = stages
        .iter()
        .map(|s| {
            let deps = s
                .spec
                .depends_on
                .iter()
                .map(String::as_str)
                .filter(|d| names.contains(d) && *d != s.name)
                .collect();
            (s.name.as_str(), deps)
        })
        .collect();
    let mut order = Vec::with_capacity(stages.len());
    while !pending.is_empty() {
        let ready: Vec<&str> = pending
            .iter()
            .filter(|(_, deps)| deps.is_empty())
            .map(|(n, _)| *n)
            .collect();
        // A cycle: take the rest by name rather than loop forever.
        let ready = if ready.is_empty() {
            pending.keys().copied().collect()
        } else {
            ready
        };
        for name in &ready {
            pending.remove(name);
            order.push(*name);
        }
        for deps in pending.values_mut() {
            for name in &ready {
                deps.remove(name);
            }
        }
    }
    order
        .into_iter()
        .filter_map(|n| stages.iter().find(|s| s.name == n))
        .collect()
}

/// One row per stage, in dependency order: name, phase, applied and
/// attempted revision, age of the phase, message. Failed and Blocked stages
/// say why; each Job's last run and every running Job follow their stage.
pub fn table(
    source: Option<&SourceState>,
    stages: &[StageObject],
    running: &[RunningJob],
    now: jiff::Timestamp,
) -> String {
    let mut rows: Vec<[String; 6]> =
        vec![["STAGE", "PHASE", "APPLIED", "ATTEMPTED", "AGE", "MESSAGE"].map(String::from)];
    let mut details: Vec<Vec<String>> = vec![Vec::new()];
    for object in dependency_order(stages) {
        let stage = &object.status.stage;
        let short =
            |r: &Option<Revision>| r.as_deref().map(short_revision).unwrap_or("-").to_string();
        let since = stage
            .since
            .as_deref()
            .and_then(|s| s.parse::<jiff::Timestamp>().ok());
        let message = match (stage.phase, object.requests.suspend) {
            (_, true) => format!("suspended by request; {}", first_line(&stage.message)),
            _ => first_line(&stage.message).to_string(),
        };
        rows.push([
            object.name.clone(),
            stage.phase.to_string(),
            short(&stage.revision),
            short(&stage.attempted_revision),
            since
                .map(|s| age(now.duration_since(s)))
                .unwrap_or_else(|| "-".into()),
            message,
        ]);
        let mut lines = Vec::new();
        for (job, history) in &stage.jobs {
            let Some(run) = history.last() else { continue };
            if running.iter().any(|r| r.job == *job) {
                continue;
            }
            let result = match run.result {
                JobResult::Running => "running",
                JobResult::Succeeded => "succeeded",
                JobResult::Failed => "failed",
            };
            let reason = run
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            // Hook Jobs say their phase: `hook pre-apply shop/migrate: …`.
            let what = match &history.hook {
                Some(phase) => format!("hook {phase}"),
                None => "job".to_string(),
            };
            lines.push(format!(
                "  {what} {job}: {result} at {} (spec {}){reason}",
                short_revision(&run.revision),
                &run.hash[..run.hash.len().min(12)]
            ));
        }
        let job_of_stage = |j: &RunningJob| {
            stage.jobs.contains_key(&j.job)
                || stage.inventory.iter().any(|e| {
                    e.kind == "Job"
                        && format!("{}/{}", e.namespace.as_deref().unwrap_or("default"), e.name)
                            == j.job
                })
        };
        for job in running.iter().filter(|j| job_of_stage(j)) {
            lines.push(format!("  {}", running_line(job, now)));
        }
        if matches!(stage.phase, Phase::Failed | Phase::Blocked) {
            for extra in stage.message.lines().skip(1) {
                lines.push(format!("  {extra}"));
            }
        }
        details.push(lines);
    }
    let widths: Vec<usize> = (0..5)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    if let Some(source) = source {
        out.push_str(&source_lines(source));
    }
    for (row, lines) in rows.iter().zip(&details) {
        for (c, cell) in row.iter().enumerate().take(5) {
            let _ = write!(out, "{cell:<width$}  ", width = widths[c]);
        }
        out.push_str(&row[5]);
        out.push('\n');
        for line in lines {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `Job shop/db-migrate running 1m12s, pod Running, attempt 2 of 5`.
pub fn running_line(job: &RunningJob, now: jiff::Timestamp) -> String {
    let ran = job
        .started
        .map(|s| format!(" {}", age(now.duration_since(s))))
        .unwrap_or_default();
    let pod = job
        .pod_phase
        .as_deref()
        .map(|p| format!(", pod {p}"))
        .unwrap_or_else(|| ", no pod yet".into());
    format!(
        "Job {} running{ran}{pod}, attempt {} of {}",
        job.job, job.attempt, job.attempts
    )
}

/// The source: the revision fetched, the one the stages are at, a
/// failure with its whole cause, and what the last plan warned about.
fn source_lines(source: &SourceState) -> String {
    let revision = source
        .revision
        .as_deref()
        .map(short_revision)
        .unwrap_or("-");
    let mut out = format!("source: {revision}");
    if let Some(applied) = source
        .applied
        .as_deref()
        .filter(|a| Some(*a) != source.revision.as_deref())
    {
        let _ = write!(out, " (stages at {})", short_revision(applied));
    }
    if source.error.is_empty() {
        out.push('\n');
    } else {
        let since = source
            .since
            .as_deref()
            .map(|s| format!(" since {s}"))
            .unwrap_or_default();
        let _ = writeln!(out, "; failing{since}:");
        for line in source.error.lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    for warning in &source.warnings {
        let _ = writeln!(out, "  {warning}");
    }
    out
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

fn short_revision(revision: &str) -> &str {
    // `main@sha1:<40 hex>` or a bare sha: keep it readable.
    match revision.rsplit_once(':') {
        Some((prefix, sha)) if sha.len() > 12 => &revision[..prefix.len() + 1 + 12],
        _ if revision.len() > 40 => &revision[..40],
        _ => revision,
    }
}

fn age(d: jiff::SignedDuration) -> String {
    let secs = d.as_secs().max(0);
    match secs {
        0..=59 => format!("{secs}s"),
        60..=7199 => format!("{}m{}s", secs / 60, secs % 60),
        7200..=172_799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::state::requests::Requests;
    use crate::cluster::state::{JobHistory, JobRun, StageSpec, StageState, StageStatus};

    fn object(name: &str, deps: &[&str], stage: StageState) -> StageObject {
        StageObject {
            name: name.into(),
            spec: StageSpec {
                depends_on: deps.iter().map(|d| d.to_string()).collect(),
                ..StageSpec::default()
            },
            status: StageStatus::new(&stage, None),
            requests: Requests::default(),
            created: None,
            uid: None,
            generation: None,
        }
    }

    #[test]
    fn stages_are_listed_dependencies_first() {
        let s = |n, d: &[&str]| object(n, d, StageState::default());
        let stages = vec![
            s("app", &["pre", "db"]),
            s("db", &[]),
            s("pre", &["db"]),
            s("zz", &[]),
        ];
        let order: Vec<&str> = dependency_order(&stages)
            .iter()
            .map(|o| o.name.as_str())
            .collect();
        assert_eq!(order, ["db", "zz", "pre", "app"]);
        let cycle = vec![s("a", &["b"]), s("b", &["a"])];
        assert_eq!(dependency_order(&cycle).len(), 2);
    }

    #[test]
    fn table_shows_revisions_running_jobs_and_why() {
        let rev = "main@sha1:0123456789abcdef0123456789abcdef01234567";
        let mut pre = StageState {
            phase: Phase::Running,
            message: "applying".into(),
            revision: Some("main@sha1:ffffffffffffffffffff".into()),
            attempted_revision: Some(rev.into()),
            since: Some("2026-01-01T00:00:00Z".into()),
            ..StageState::default()
        };
        let mut history = JobHistory::default();
        history.record(JobRun {
            hash: "ab".repeat(32),
            revision: rev.into(),
            result: JobResult::Succeeded,
            reason: None,
            uid: Some("u".into()),
            started: None,
            finished: None,
            log_tail: None,
        });
        history.hook = Some("post-apply".into());
        pre.jobs.insert("shop/smoke".into(), history);
        pre.inventory.push(crate::cluster::state::InventoryEntry {
            api_version: "batch/v1".into(),
            kind: "Job".into(),
            namespace: Some("shop".into()),
            name: "db-migrate".into(),
            hash: String::new(),
            resource_version: String::new(),
        });
        let app = StageState {
            phase: Phase::Blocked,
            message: "blocked: stage pre failed\nmore".into(),
            ..StageState::default()
        };
        let stages = vec![object("app", &["pre"], app), object("pre", &[], pre)];
        let running = vec![RunningJob {
            job: "shop/db-migrate".into(),
            started: Some("2026-01-01T00:03:48Z".parse().unwrap()),
            pod_phase: Some("Running".into()),
            attempt: 2,
            attempts: 5,
        }];
        let source = SourceState {
            revision: Some("main@sha1:9999999999999999999".into()),
            applied: Some("main@sha1:ffffffffffffffffffff".into()),
            error: "revision main@sha1:9999 is invalid; nothing was applied:\nstages/x.yaml: unknown apiVersion".into(),
            since: Some("2026-01-01T00:01:00Z".into()),
            invalid: true,
            warnings: vec!["warning: flux-system.yaml: stage flux-system: skipped".into()],
        };
        let now: jiff::Timestamp = "2026-01-01T00:05:00Z".parse().unwrap();
        let text = table(Some(&source), &stages, &running, now);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "source: main@sha1:999999999999 (stages at main@sha1:ffffffffffff); failing since 2026-01-01T00:01:00Z:",
            "{text}"
        );
        assert_eq!(lines[2], "  stages/x.yaml: unknown apiVersion", "{text}");
        assert_eq!(
            lines[3], "  warning: flux-system.yaml: stage flux-system: skipped",
            "{text}"
        );
        assert!(lines[4].starts_with("STAGE"), "{text}");
        assert!(
            lines[5].starts_with("pre ")
                && lines[5].contains("main@sha1:ffffffffffff")
                && lines[5].contains("main@sha1:0123456789ab")
                && lines[5].contains("5m0s"),
            "{text}"
        );
        assert!(text.contains("  hook post-apply shop/smoke: succeeded at main@sha1:0123456789ab (spec abababababab)\n"), "{text}");
        assert!(
            text.contains("  Job shop/db-migrate running 1m12s, pod Running, attempt 2 of 5\n"),
            "{text}"
        );
        let app_line = lines.iter().position(|l| l.starts_with("app ")).unwrap();
        assert!(
            app_line > 5 && lines[app_line].contains("blocked: stage pre failed"),
            "{text}"
        );
        assert_eq!(lines[app_line + 1], "  more", "{text}");
    }
}
