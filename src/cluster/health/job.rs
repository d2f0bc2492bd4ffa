//! Waiting for a Job: its conditions, its pods (a pod stuck pulling its image
//! or unschedulable is reported at once and fails the Job after a grace
//! period instead of the whole timeout), and the failed pod's log tail.

use std::collections::HashMap;
use std::time::Duration;

use futures::{StreamExt, stream};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, LogParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, watcher};
use tokio::time::Instant;

use super::wait::Progress;
use super::{Health, evaluate};

/// Lines of a failed pod's log kept in the stage message, the Event and the state.
pub const LOG_TAIL_LINES: i64 = 20;

/// Waiting reasons of a container that will not resolve by themselves soon.
const STUCK_REASONS: &[&str] = &[
    "ImagePullBackOff",
    "ErrImagePull",
    "CreateContainerConfigError",
    "InvalidImageName",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEnd {
    Succeeded,
    Failed {
        reason: String,
        log_tail: Option<String>,
    },
}

pub struct JobWatch<'a> {
    pub jobs: Api<Job>,
    pub pods: Api<Pod>,
    pub name: &'a str,
    pub uid: &'a str,
    pub stuck_grace: Duration,
    pub progress: &'a Progress,
    /// Told once per stuck pod, with what it waits for (the caller turns
    /// it into an Event).
    pub on_stuck: &'a (dyn Fn(String) + Send + Sync),
}

enum Seen {
    Job(Box<Job>),
    /// The Job's last state, as it was deleted.
    Deleted(Box<Job>),
    /// A relist without the Job: deleted while the watch was broken.
    Gone,
    Pod(Box<Pod>),
}

pub async fn wait_job(w: JobWatch<'_>) -> JobEnd {
    w.progress.set("waiting for the Job's first status");
    // Every event, deletions and relists included: a Job whose TTL removes
    // it while the watch is broken is seen in its last state (a deletion
    // replayed on re-watch) or missing from the relist, never waited on
    // forever.
    let uid = w.uid.to_string();
    let mut listed = false;
    let jobs = watcher(
        w.jobs.clone(),
        watcher::Config::default().fields(&format!("metadata.name={}", w.name)),
    )
    .default_backoff()
    .filter_map(move |r| {
        let seen = match r {
            Ok(watcher::Event::Init) => {
                listed = false;
                None
            }
            Ok(watcher::Event::InitApply(job)) => {
                listed |= job.metadata.uid.as_deref() == Some(uid.as_str());
                Some(Seen::Job(Box::new(job)))
            }
            Ok(watcher::Event::InitDone) => (!listed).then_some(Seen::Gone),
            Ok(watcher::Event::Apply(job)) => Some(Seen::Job(Box::new(job))),
            Ok(watcher::Event::Delete(job)) => Some(Seen::Deleted(Box::new(job))),
            Err(_) => None,
        };
        async move { seen }
    });
    let pods = watcher(
        w.pods.clone(),
        watcher::Config::default().labels(&pod_selector(w.uid)),
    )
    .default_backoff()
    .applied_objects()
    .filter_map(|r| async move { r.ok().map(|p| Seen::Pod(Box::new(p))) });
    let mut seen = stream::select(jobs.boxed(), pods.boxed());

    // Pods first seen stuck, and when; reported once each.
    let mut stuck: HashMap<String, (Instant, String)> = HashMap::new();
    loop {
        let deadline = stuck
            .values()
            .map(|(since, _)| *since + w.stuck_grace)
            .min();
        let next = match deadline {
            Some(deadline) => tokio::select! {
                item = seen.next() => item,
                () = tokio::time::sleep_until(deadline) => {
                    let message = stuck.values().min_by_key(|(since, _)| *since).map(|(_, m)| m.clone()).unwrap_or_default();
                    let reason = format!("pod stuck for {}: {message}", humantime::format_duration(w.stuck_grace));
                    return JobEnd::Failed { reason, log_tail: None };
                }
            },
            None => seen.next().await,
        };
        match next {
            None => {
                return JobEnd::Failed {
                    reason: "watch ended".into(),
                    log_tail: None,
                };
            }
            Some(Seen::Gone) => {
                return JobEnd::Failed {
                    reason: "the Job was deleted (by its TTL or by hand) before its end was seen"
                        .into(),
                    log_tail: None,
                };
            }
            Some(Seen::Deleted(job)) => {
                if job.metadata.uid.as_deref() != Some(w.uid) {
                    continue;
                }
                let value = serde_json::to_value(&job).unwrap_or_default();
                return match evaluate("Job", &value) {
                    Health::Ready => JobEnd::Succeeded,
                    Health::Failed(reason) => JobEnd::Failed {
                        reason,
                        log_tail: None,
                    },
                    Health::Progressing(_) => JobEnd::Failed {
                        reason: "the Job was deleted before it finished".into(),
                        log_tail: None,
                    },
                };
            }
            Some(Seen::Job(job)) => {
                if job.metadata.uid.as_deref() != Some(w.uid) {
                    continue;
                }
                let value = serde_json::to_value(&job).unwrap_or_default();
                match evaluate("Job", &value) {
                    Health::Ready => return JobEnd::Succeeded,
                    Health::Failed(reason) => {
                        let log_tail = last_failed_pod_log(&w.pods, w.uid).await;
                        return JobEnd::Failed { reason, log_tail };
                    }
                    Health::Progressing(message) => w.progress.set(message),
                }
            }
            Some(Seen::Pod(pod)) => {
                let name = pod.metadata.name.clone().unwrap_or_default();
                match stuck_reason(&pod) {
                    Some(message) => {
                        if let std::collections::hash_map::Entry::Vacant(slot) =
                            stuck.entry(name.clone())
                        {
                            let note = format!("pod {name}: {message}");
                            w.progress.set(note.clone());
                            tracing::warn!(job = w.name, pod = %name, "{message}");
                            (w.on_stuck)(note.clone());
                            slot.insert((Instant::now(), note));
                        }
                    }
                    None => {
                        stuck.remove(&name);
                    }
                }
            }
        }
    }
}

/// Pods of exactly this Job object (not of an earlier one with the same name).
pub fn pod_selector(uid: &str) -> String {
    format!("batch.kubernetes.io/controller-uid={uid}")
}

/// Why a pod cannot make progress, if it is stuck.
pub fn stuck_reason(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let containers = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for c in containers {
        if let Some(waiting) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            let reason = waiting.reason.as_deref().unwrap_or_default();
            if STUCK_REASONS.contains(&reason) {
                let message = waiting.message.as_deref().unwrap_or_default();
                return Some(
                    format!("container {} is waiting: {reason} {message}", c.name)
                        .trim_end()
                        .to_string(),
                );
            }
        }
    }
    for c in status.conditions.iter().flatten() {
        if c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
        {
            return Some(
                format!(
                    "Unschedulable: {}",
                    c.message.as_deref().unwrap_or_default()
                )
                .trim_end()
                .to_string(),
            );
        }
    }
    None
}

/// The last lines of the log of the Job's most recent failed pod.
pub async fn last_failed_pod_log(pods: &Api<Pod>, uid: &str) -> Option<String> {
    let list = pods
        .list(&ListParams::default().labels(&pod_selector(uid)))
        .await
        .ok()?;
    // The most recent failed pod; if the Job failed before any pod was seen
    // failing (a deadline, or a listing that raced the last pod's update),
    // the most recent pod at all: its log is still the best explanation.
    let pod = list.items.into_iter().max_by_key(|p| {
        let status = p.status.as_ref();
        (
            status.and_then(|s| s.phase.as_deref()) == Some("Failed"),
            p.metadata.creation_timestamp.clone(),
            status.and_then(|s| s.start_time.clone()),
            p.metadata.name.clone(),
        )
    })?;
    let name = pod.metadata.name?;
    let params = LogParams {
        tail_lines: Some(LOG_TAIL_LINES),
        ..LogParams::default()
    };
    match pods.logs(&name, &params).await {
        Ok(log) => Some(format!("pod {name}:\n{}", log.trim_end())),
        Err(e) => Some(format!("pod {name}: log unavailable: {e}")),
    }
}
