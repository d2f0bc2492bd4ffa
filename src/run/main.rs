//! `stagegate run`: wiring the agent together — cluster client, namespace,
//! state, leader election, HTTP server, signals — around the loop.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::agent::Agent;
use super::context::AgentContext;
use super::leader::LeaderLease;
use super::startup;
use crate::apply::{Engine, EngineSettings};
use crate::config::{RunArgs, Settings};
use crate::events::EventSink;
use crate::metrics::Metrics;
use crate::server::{ServerState, serve};
use crate::state::{Phase, StateStore};
use crate::web::{SourceOrigin, StatusFeed};

/// The binary's edge: `anyhow` errors, an exit code.
pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    limit_malloc_arenas();
    let settings = Settings::resolve(args)?;
    let client =
        crate::cluster::limited_client(settings.kubeconfig.as_deref(), settings.concurrency)
            .await?;
    let server_url = crate::cluster::server_url(settings.kubeconfig.as_deref()).await?;
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    ensure_namespace(
        &client,
        &settings.namespace,
        settings.create_namespace,
        &shutdown,
    )
    .await
    .with_context(|| format!("API server {server_url}"))?;

    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    let wake = Arc::new(Notify::new());
    let webhook_secret = settings.webhook_secret()?;
    let status_page = (settings.status_page && settings.listen.is_some()).then(|| {
        let origin = SourceOrigin {
            repository: crate::source::RemoteUrl::parse(&settings.repo)
                .map(|u| u.redacted().to_string())
                .unwrap_or_else(|_| "(unparsable URL)".into()),
            reference: settings.reference.to_string(),
        };
        Arc::new(StatusFeed::new(client.clone(), &settings.namespace, origin))
    });
    if let Some(feed) = &status_page {
        tokio::spawn(feed.clone().follow(shutdown.clone()));
    }
    let mut server_state =
        ServerState::new(metrics.clone(), ready.clone(), wake.clone(), webhook_secret)?;
    if let Some(feed) = &status_page {
        server_state = server_state.with_status_page(feed.clone());
    }
    let server_state = Arc::new(server_state);
    let server = match settings.listen {
        Some(listen) => {
            let (bound, server) = serve(listen, server_state, shutdown.clone())
                .await
                .with_context(|| format!("listening on {listen}"))?;
            info!(listen = %bound, "serving /metrics, /healthz, /readyz and POST /hooks/git");
            if status_page.is_some() {
                info!(listen = %bound, "status page at http://{bound}/");
            }
            Some(server)
        }
        None => None,
    };

    // Two replicas never reconcile at once: wait for the Lease, and stop if it is lost.
    let lost = CancellationToken::new();
    // Renewed until the agent has stopped and written its state, then released.
    let release = CancellationToken::new();
    let mut keeper = None;
    let client = if settings.leader_elect {
        let identity = std::env::var("POD_NAME")
            .unwrap_or_else(|_| format!("stagegate-{}", std::process::id()));
        let lease = LeaderLease::new(client.clone(), &settings.namespace, identity);
        let acquired = startup::retry(
            "acquiring the leader Lease",
            &shutdown,
            startup::is_transient,
            || lease.acquire(&shutdown),
        )
        .await?;
        if !acquired {
            return Ok(ExitCode::SUCCESS);
        }
        // Every write of the agent goes through this client: none leaves a
        // replica that is not sure to hold the Lease.
        let guarded = lease.leadership().guard(client);
        keeper = Some(tokio::spawn(lease.keep(release.clone(), lost.clone())));
        guarded
    } else {
        client
    };
    let stop = CancellationToken::new();
    {
        let (stop, shutdown, lost) = (stop.clone(), shutdown.clone(), lost.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = lost.cancelled() => error!("leader lease lost: stopping so that the new leader reconciles alone"),
            }
            stop.cancel();
        });
    }

    let store = StateStore::new(client.clone(), &settings.namespace);
    let state = startup::retry(
        "reading the state ConfigMap",
        &shutdown,
        |e: &crate::state::StateError| matches!(e, crate::state::StateError::Kube { source, .. } if startup::is_transient(source)),
        || store.load(),
    )
    .await?;
    let events = EventSink::new(client.clone(), std::env::var("POD_NAME").ok());
    let engine = Engine::with_events(
        client,
        EngineSettings {
            stuck_pod_grace: settings.stuck_pod_grace,
            default_timeout: settings.timeout,
            ..EngineSettings::default()
        },
        events.clone(),
    );
    for (name, stage) in &state.stages {
        metrics.set_phase(name, stage.phase);
    }
    let once = settings.once;
    let ctx = Arc::new(AgentContext::new(
        engine, events, settings, store, state, metrics,
    ));
    let mut agent = Agent::new(ctx, wake, ready);
    if let Some(feed) = status_page {
        agent = agent.observe_plans(move |plan| feed.plan_applied(plan));
    }
    let result = agent.run(stop.clone()).await;
    shutdown.cancel();
    if let Some(server) = server {
        let _ = server.await;
    }
    // The Lease is released before the process ends, so a standby takes over at once.
    release.cancel();
    if let Some(keeper) = keeper {
        let _ = keeper.await;
    }
    if lost.is_cancelled() {
        anyhow::bail!("leader lease lost");
    }
    match result {
        Ok(Some(outcome)) => {
            println!("revision {}", outcome.revision);
            for (name, phase, message) in &outcome.stages {
                let first = message.lines().next().unwrap_or_default();
                println!("  {name:<24} {phase:<9} {first}");
                for line in message.lines().skip(1) {
                    println!("  {:<24} {:<9} {line}", "", "");
                }
            }
            let ready = outcome
                .stages
                .iter()
                .filter(|(_, p, _)| *p == Phase::Ready)
                .count();
            println!("{ready}/{} stages Ready", outcome.stages.len());
            Ok(if outcome.all_ready() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Ok(None) => {
            if once {
                Ok(ExitCode::from(1))
            } else {
                info!("stopped");
                Ok(ExitCode::SUCCESS)
            }
        }
        Err(e) => {
            // Logs and the error share stderr: say it once.
            eprintln!("error: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// glibc gives every thread that allocates an arena of its own, up to eight
/// per core; for a long-running agent whose threads come and go (blocking
/// Git and render work), that is resident memory held for nothing. Two
/// arenas are plenty for its two kinds of work.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; it is called before any
    // thread of ours allocates concurrently, and M_ARENA_MAX is a valid option.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// What start-up needs (see [`crate::rbac`]). A GET of namespace X is
/// authorized as a request in X, so a Role in the agent's namespace covers
/// it; `--create-namespace` needs more, and is for development clusters.
pub const PERMISSIONS: &[crate::rbac::Permission] = &[crate::rbac::Permission {
    group: "",
    resource: "namespaces",
    verbs: &["get"],
    cluster_wide: false,
    why: "stagegate run checks at start-up that its own namespace exists",
}];

/// The agent's namespace holds its state and Lease: say clearly when it is
/// missing, or create it when asked to.
async fn ensure_namespace(
    client: &Client,
    name: &str,
    create: bool,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    if startup::retry(
        "reading the agent's namespace",
        shutdown,
        startup::is_transient,
        || api.get_opt(name),
    )
    .await
    .with_context(|| format!("namespace {name}"))?
    .is_some()
    {
        return Ok(());
    }
    if !create {
        anyhow::bail!(
            "namespace {name} does not exist: install stagegate's manifests (kubectl apply -k manifests/), \
             create it (kubectl create namespace {name}), or pass --create-namespace"
        );
    }
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    api.create(&PostParams::default(), &ns)
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    info!(namespace = name, "created the agent's namespace");
    Ok(())
}

/// SIGTERM (Kubernetes stopping the pod) and Ctrl-C end the agent cleanly:
/// waits are cancelled, the state is written, nothing is left half-written.
fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(term) => term,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        shutdown.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        info!("shutting down");
        shutdown.cancel();
    });
}
