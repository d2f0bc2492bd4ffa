//! Watching for requests made through annotations (see
//! [`crate::cluster::state::requests`]): a rerun value is taken into its stage's
//! state once and recorded in its status; a suspend, resume or reconcile
//! request wakes the loop so that it acts now, not at the next poll.

use std::sync::Arc;

use futures::StreamExt;
use kube::core::DynamicObject;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::context::AgentContext;
use crate::cluster::apply::api_call::WatchMessage;
use crate::cluster::state::Requests;
use crate::cluster::state::requests::RECONCILE_ANNOTATION;
use crate::cluster::state::store::{SOURCE_CONFIGMAP, StageObject};
use crate::core::object::StageName;

/// Watch the Stage objects and the source object until `shutdown`.
pub async fn watch_requests(
    ctx: Arc<AgentContext>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let stages = watcher::watcher(ctx.store.stages_api().clone(), watcher::Config::default())
        .default_backoff()
        .boxed();
    let source = watcher::watcher(
        ctx.store.configmaps_api().clone(),
        watcher::Config::default().fields(&format!("metadata.name={SOURCE_CONFIGMAP}")),
    )
    .default_backoff()
    .boxed();
    let mut stages = stages;
    let mut source = source;
    let mut source_seen: Option<Option<String>> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            event = stages.next() => match event {
                Some(Ok(Event::Apply(obj) | Event::InitApply(obj))) => {
                    if on_stage(&ctx, &obj).await {
                        wake.notify_one();
                    }
                }
                Some(Ok(Event::Delete(obj))) => on_deleted(&ctx, &obj).await,
                Some(Ok(_)) => {}
                Some(Err(e)) => warn!(error = %WatchMessage("Stage objects", &e), "watching Stage objects failed; retrying"),
                None => return,
            },
            event = source.next() => match event {
                Some(Ok(Event::Apply(cm) | Event::InitApply(cm))) => {
                    let at = cm
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(RECONCILE_ANNOTATION))
                        .cloned();
                    // The first sight is the state before this agent started.
                    if source_seen.as_ref().is_some_and(|seen| *seen != at) && at.is_some() {
                        info!(requested_at = at.as_deref().unwrap_or_default(), "reconcile requested: fetching now");
                        wake.notify_one();
                    }
                    source_seen = Some(at);
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => warn!(error = %WatchMessage("the source object", &e), "watching the source object failed; retrying"),
                None => return,
            },
        }
    }
}

/// Take one Stage object's requests; true when the loop should act now.
async fn on_stage(ctx: &AgentContext, obj: &DynamicObject) -> bool {
    let Some(object) = StageObject::from_dynamic(obj) else {
        return false;
    };
    let name = StageName::new(object.name.clone());
    let requests = object.requests;
    let (act, write) = {
        let mut state = ctx.state.lock().await;
        let previous = state.requests.insert(name.clone(), requests.clone());
        let mut act = false;
        let mut write = false;
        if let Some(value) = &requests.rerun
            && let Some(stage) = state.stages.get_mut(&name)
            && stage.last_handled_rerun.as_deref() != Some(value.as_str())
        {
            // `JOBS@token`: the token only makes a repeated request distinct.
            let jobs = Requests::rerun_jobs(value.split('@').next().unwrap_or_default());
            info!(stage = %name, request = %value, "rerun of {} requested", jobs.join(", "));
            stage.rerun.extend(jobs);
            stage.last_handled_rerun = Some(value.clone());
            act = true;
            write = true;
        }
        let previous = previous.unwrap_or_default();
        if previous.suspend != requests.suspend {
            let what = if requests.suspend {
                "suspend"
            } else {
                "resume"
            };
            info!(stage = %name, "{what} requested");
            act = true;
        }
        if requests.reconcile_at.is_some() && previous.reconcile_at != requests.reconcile_at {
            info!(stage = %name, "reconcile requested: fetching now");
            act = true;
        }
        (act, write)
    };
    if write {
        ctx.persist_stage(name.as_str()).await;
    }
    act
}

/// A Stage object deleted by hand while its stage is still in Git: written
/// again at once, since it holds what keeps Jobs from running twice.
async fn on_deleted(ctx: &AgentContext, obj: &DynamicObject) {
    let Some(name) = obj.metadata.name.clone() else {
        return;
    };
    if !ctx.state.lock().await.stages.contains_key(name.as_str()) {
        return;
    }
    warn!(stage = %name, "the Stage object was deleted; writing it again");
    ctx.store.forget(&name);
    ctx.persist_stage(&name).await;
}
