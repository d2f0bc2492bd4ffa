//! The commands about Stage objects: `status`, `rerun`, `reconcile`,
//! `suspend` and `resume`. They read the objects and write annotations; the
//! agent does the rest.

use std::process::ExitCode;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use stagegate::agent::web::StatusReport;
use stagegate::agent::web::report::{Topology, TopologyStage};
use stagegate::cli::status::RunningJob;
use stagegate::cluster::state::requests::SUSPEND_ANNOTATION;
use stagegate::cluster::state::store::StageObject;
use stagegate::cluster::state::{Phase, StateStore};

use super::{OutputFormat, print_stdout};

pub async fn status(
    store: &StateStore,
    output: OutputFormat,
    watch: bool,
) -> anyhow::Result<ExitCode> {
    let mut last = String::new();
    loop {
        let text = render(store, output).await?;
        if text != last {
            if watch && !last.is_empty() {
                print_stdout(&format!(
                    "--- {}\n",
                    jiff::Timestamp::now().round(jiff::Unit::Second)?
                ))?;
            }
            print_stdout(&text)?;
            last = text;
        }
        if !watch {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

async fn render(store: &StateStore, output: OutputFormat) -> anyhow::Result<String> {
    let stages = store.list().await?;
    let source = store.load_source().await?;
    Ok(match output {
        OutputFormat::Table if stages.is_empty() => format!(
            "no Stage objects yet in namespace {}: the agent has not run there\n",
            store.namespace()
        ),
        OutputFormat::Table => {
            let running = running_jobs(store, &stages).await;
            // Elapsed times go up every second; `--watch` reprints on
            // change, so in a table they are rounded by `age` already.
            stagegate::cli::status::table(
                source.as_ref(),
                &stages,
                &running,
                jiff::Timestamp::now(),
            )
        }
        // The status page serves the same report at /api/status.
        OutputFormat::Json => serde_json::to_string_pretty(&report(store, &stages).await?)? + "\n",
        OutputFormat::Yaml => serde_yaml::to_string(&report(store, &stages).await?)?,
    })
}

/// The report `status -o json|yaml` prints and the status page serves:
/// what the Stage objects hold, with the edges their specs name.
async fn report(store: &StateStore, stages: &[StageObject]) -> anyhow::Result<StatusReport> {
    let state = store.load().await?;
    let topology = Topology {
        stages: stagegate::cli::status::dependency_order(stages)
            .into_iter()
            .map(|o| TopologyStage {
                name: o.name.clone(),
                depends_on: o.spec.depends_on.clone(),
                parent: None,
                hooks: Vec::new(),
            })
            .collect(),
    };
    Ok(StatusReport::new(&state, Some(&topology), None))
}

/// The Jobs of stages that are Running, as the cluster shows them now. A
/// Job that cannot be read is left out: status shows what it can.
async fn running_jobs(store: &StateStore, stages: &[StageObject]) -> Vec<RunningJob> {
    let mut out = Vec::new();
    for stage in stages
        .iter()
        .filter(|s| s.status.stage.phase == Phase::Running)
    {
        let jobs: Api<Job> = Api::all(store.client().clone());
        let selector = format!("{}={}", stagegate::core::labels::STAGE_LABEL, stage.name);
        let Ok(list) = jobs.list(&ListParams::default().labels(&selector)).await else {
            continue;
        };
        for job in list.items {
            let status = job.status.clone().unwrap_or_default();
            let finished =
                status.conditions.iter().flatten().any(|c| {
                    matches!(c.type_.as_str(), "Complete" | "Failed") && c.status == "True"
                });
            if finished {
                continue;
            }
            let namespace = job.metadata.namespace.clone().unwrap_or_default();
            let name = job.metadata.name.clone().unwrap_or_default();
            let backoff = job
                .spec
                .as_ref()
                .and_then(|s| s.backoff_limit)
                .unwrap_or(6)
                .max(0) as u32;
            let pods: Api<Pod> = Api::namespaced(store.client().clone(), &namespace);
            let pod_phase = pods
                .list(&ListParams::default().labels(&format!("job-name={name}")))
                .await
                .ok()
                .and_then(|l| {
                    l.items
                        .into_iter()
                        .max_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
                })
                .and_then(|p| p.status.and_then(|s| s.phase));
            out.push(RunningJob {
                job: format!("{namespace}/{name}"),
                started: status.start_time.map(|t| t.0),
                pod_phase,
                attempt: status.failed.unwrap_or(0).max(0) as u32 + 1,
                attempts: backoff + 1,
            });
        }
    }
    out
}

pub async fn rerun(store: &StateStore, stage: &str, jobs: Vec<String>) -> anyhow::Result<ExitCode> {
    let jobs = if jobs.is_empty() {
        vec!["*".to_string()]
    } else {
        jobs
    };
    match store.request_rerun(stage, &jobs).await {
        Ok(value) => {
            let what = match jobs.as_slice() {
                [all] if all == "*" => "every Job".to_string(),
                _ => format!("Job {}", jobs.join(", ")),
            };
            println!(
                "asked the agent to run {what} of stage {stage} again \
                 (stagegate.dev/rerun={value}); it runs at once"
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(2))
        }
    }
}

pub async fn reconcile(store: &StateStore) -> anyhow::Result<ExitCode> {
    match store.request_reconcile().await {
        Ok(at) => {
            println!("asked the agent to fetch and reconcile now (requested at {at})");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(2))
        }
    }
}

pub async fn suspend(store: &StateStore, stage: &str, suspend: bool) -> anyhow::Result<ExitCode> {
    let value = suspend.then_some("true");
    match store.annotate(stage, SUSPEND_ANNOTATION, value).await {
        Ok(()) => {
            if suspend {
                println!(
                    "stage {stage} is suspended: the agent leaves its objects as they are until `stagegate resume {stage}`"
                );
            } else {
                println!("stage {stage} follows Git again");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(2))
        }
    }
}
