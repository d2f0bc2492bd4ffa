//! `stagegate status`: the state as a table a human reads, or as JSON/YAML.

use std::fmt::Write;

use crate::state::{JobResult, Phase, State};

/// One row per stage: name, phase, revision, age, message. Failed and
/// Blocked stages say why; each Job's last run follows its stage.
pub fn table(state: &State, now: jiff::Timestamp) -> String {
    let mut rows: Vec<[String; 5]> =
        vec![["STAGE", "PHASE", "REVISION", "AGE", "MESSAGE"].map(String::from)];
    let mut details: Vec<(usize, Vec<String>)> = Vec::new();
    for (name, stage) in &state.stages {
        let revision = stage
            .revision
            .as_deref()
            .or(stage.attempted_revision.as_deref())
            .map(short_revision)
            .unwrap_or("-");
        let age = stage
            .since
            .as_deref()
            .and_then(|s| s.parse::<jiff::Timestamp>().ok())
            .map(|since| age(now.duration_since(since)))
            .unwrap_or_else(|| "-".into());
        let first_line = stage.message.lines().next().unwrap_or_default().to_string();
        rows.push([
            name.clone(),
            stage.phase.to_string(),
            revision.to_string(),
            age,
            first_line,
        ]);
        let mut lines = Vec::new();
        for (job, history) in &stage.jobs {
            if let Some(run) = history.last() {
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
        }
        if matches!(stage.phase, Phase::Failed | Phase::Blocked) {
            for extra in stage.message.lines().skip(1) {
                lines.push(format!("  {extra}"));
            }
        }
        details.push((rows.len() - 1, lines));
    }
    let widths: Vec<usize> = (0..4)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    // A failing fetch keeps the last good revision in force: say both.
    if let Some(source) = &state.source {
        let revision = source
            .revision
            .as_deref()
            .map(short_revision)
            .unwrap_or("-");
        if source.error.is_empty() {
            let _ = writeln!(out, "source: {revision}");
        } else {
            let since = source
                .since
                .as_deref()
                .map(|s| format!(" since {s}"))
                .unwrap_or_default();
            let first = source.error.lines().next().unwrap_or_default();
            let _ = writeln!(
                out,
                "source: {revision} (last good); failing{since}: {first}"
            );
        }
    }
    for (i, row) in rows.iter().enumerate() {
        for (c, cell) in row.iter().enumerate().take(4) {
            let _ = write!(out, "{cell:<width$}  ", width = widths[c]);
        }
        out.push_str(&row[4]);
        out.push('\n');
        if let Some((_, lines)) = details.iter().find(|(row, _)| *row == i) {
            for line in lines {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
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
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        7200..=172_799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{JobHistory, JobRun, StageState};

    #[test]
    fn table_lists_stages_with_why_for_blocked_and_job_outcomes() {
        let mut state = State::default();
        let mut pre = StageState {
            phase: Phase::Failed,
            message: "Job shop/migrate: BackoffLimitExceeded\nlast log lines".into(),
            ..StageState::default()
        };
        pre.attempted_revision = Some("main@sha1:0123456789abcdef0123456789abcdef01234567".into());
        pre.since = Some("2026-01-01T00:00:00Z".into());
        let mut history = JobHistory::default();
        history.record(JobRun {
            hash: "ab".repeat(32),
            revision: "main@sha1:0123456789abcdef0123456789abcdef01234567".into(),
            result: JobResult::Failed,
            reason: Some("BackoffLimitExceeded".into()),
            uid: Some("u".into()),
            started: None,
            finished: None,
            log_tail: None,
        });
        pre.jobs.insert("shop/migrate".into(), history.clone());
        history.hook = Some("post-apply".into());
        history.runs[0].result = JobResult::Succeeded;
        history.runs[0].reason = None;
        pre.jobs.insert("shop/smoke".into(), history);
        state.stages.insert("pre".into(), pre);
        state.stages.insert(
            "application".into(),
            StageState {
                phase: Phase::Blocked,
                message: "blocked by failed stage pre".into(),
                ..StageState::default()
            },
        );
        let now: jiff::Timestamp = "2026-01-01T00:05:00Z".parse().unwrap();
        let text = table(&state, now);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("STAGE"), "{text}");
        assert!(
            lines[1].starts_with("application")
                && lines[1].contains("Blocked")
                && lines[1].contains("blocked by failed stage pre"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("pre")
                && lines[2].contains("main@sha1:0123456789ab")
                && lines[2].contains("5m"),
            "{text}"
        );
        assert!(text.contains("job shop/migrate: failed at main@sha1:0123456789ab (spec abababababab): BackoffLimitExceeded"), "{text}");
        assert!(text.contains("  last log lines"), "{text}");
        assert!(
            text.contains("  hook post-apply shop/smoke: succeeded at main@sha1:0123456789ab (spec abababababab)\n"),
            "{text}"
        );
    }
}
