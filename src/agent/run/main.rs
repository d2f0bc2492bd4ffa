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
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::agent::{Agent, AgentError};
use super::context::AgentContext;
use super::leader::LeaderLease;
use super::scheduler::RevisionOutcome;
use super::startup;
use crate::agent::config::{RunArgs, Settings};
use crate::agent::metrics::Metrics;
use crate::agent::server::{ServerState, serve};
use crate::agent::web::{SourceOrigin, StatusFeed};
use crate::cluster::apply::{Engine, EngineSettings};
use crate::cluster::events::{EventQueue, EventSink};
use crate::cluster::state::{Phase, StateStore};

/// The binary's edge: `anyhow` errors, an exit code.
pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    limit_malloc_arenas();
    let settings = Settings::resolve(args)?;
    let client = crate::cluster::client::limited_client(
        settings.kubeconfig.as_deref(),
        settings.concurrency,
    )
    .await?;
    let server_url = crate::cluster::client::server_url(settings.kubeconfig.as_deref()).await?;
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

    let shared = Shared {
        metrics: Arc::new(Metrics::new()),
        ready: Arc::new(AtomicBool::new(false)),
        wake: Arc::new(Notify::new()),
    };
    let (server, status_page) = start_server(&settings, &client, &shared, &shutdown).await?;
    let Some(leader) = lead(&settings, client, &shutdown).await? else {
        return Ok(ExitCode::SUCCESS);
    };
    let stop = stop_on_shutdown_or_lost(&shutdown, &leader.lost);
    let once = settings.once;
    let ctx = context(leader.client.clone(), settings, shared.metrics, &shutdown).await?;
    let mut agent = Agent::new(ctx, shared.wake, shared.ready);
    if let Some(feed) = status_page {
        agent = agent.observe_plans(move |plan| feed.plan_applied(plan));
    }
    let result = agent.run(stop).await;
    shutdown.cancel();
    if let Some(server) = server {
        let _ = server.await;
    }
    let lost = leader.release().await;
    if lost {
        anyhow::bail!("leader lease lost");
    }
    Ok(exit_code(result, once))
}

/// What the HTTP server and the loop share.
struct Shared {
    metrics: Arc<Metrics>,
    /// Set once the first fetch was attempted: `/readyz`.
    ready: Arc<AtomicBool>,
    /// Notified by the push webhook.
    wake: Arc<Notify>,
}

/// The HTTP server (metrics, probes, webhook, status page) when `--listen`
/// is set, and the status page's feed when it is on.
async fn start_server(
    settings: &Settings,
    client: &Client,
    shared: &Shared,
    shutdown: &CancellationToken,
) -> anyhow::Result<(Option<JoinHandle<()>>, Option<Arc<StatusFeed>>)> {
    let status_page = (settings.status_page && settings.listen.is_some()).then(|| {
        let origin = SourceOrigin {
            repository: crate::agent::source::RemoteUrl::parse(&settings.repo)
                .map(|u| u.redacted().to_string())
                .unwrap_or_else(|_| "(unparsable URL)".into()),
            reference: settings.reference.to_string(),
        };
        Arc::new(StatusFeed::new(client.clone(), &settings.namespace, origin))
    });
    if let Some(feed) = &status_page {
        tokio::spawn(feed.clone().follow(shutdown.clone()));
    }
    let Some(listen) = settings.listen else {
        return Ok((None, status_page));
    };
    let mut state = ServerState::new(
        shared.metrics.clone(),
        shared.ready.clone(),
        shared.wake.clone(),
        settings.webhook_secret()?,
    )?;
    if let Some(feed) = &status_page {
        state = state.with_status_page(feed.clone());
    }
    let (bound, server) = serve(listen, Arc::new(state), shutdown.clone())
        .await
        .with_context(|| format!("listening on {listen}"))?;
    info!(listen = %bound, "serving /metrics, /healthz, /readyz and POST /hooks/git");
    if status_page.is_some() {
        info!(listen = %bound, "status page at http://{bound}/");
    }
    Ok((Some(server), status_page))
}

/// This replica's right to reconcile: the client its writes go through,
/// and the Lease kept until it is released.
struct Leader {
    client: Client,
    /// Cancelled when the Lease is lost.
    lost: CancellationToken,
    /// Renewed until the agent has stopped and written its state, then released.
    release: CancellationToken,
    keeper: Option<JoinHandle<()>>,
}

impl Leader {
    /// Give the Lease up, so a standby takes over at once; true when it had been lost.
    async fn release(self) -> bool {
        self.release.cancel();
        if let Some(keeper) = self.keeper {
            let _ = keeper.await;
        }
        self.lost.is_cancelled()
    }
}

/// Two replicas never reconcile at once: wait for the Lease (when leader
/// election is on). `None` when shut down before it was acquired.
async fn lead(
    settings: &Settings,
    client: Client,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<Leader>> {
    let (lost, release) = (CancellationToken::new(), CancellationToken::new());
    if !settings.leader_elect {
        return Ok(Some(Leader {
            client,
            lost,
            release,
            keeper: None,
        }));
    }
    let identity =
        std::env::var("POD_NAME").unwrap_or_else(|_| format!("stagegate-{}", std::process::id()));
    let lease = LeaderLease::new(client.clone(), &settings.namespace, identity);
    let acquired = startup::retry(
        "acquiring the leader Lease",
        shutdown,
        startup::is_transient,
        || lease.acquire(shutdown),
    )
    .await?;
    if !acquired {
        return Ok(None);
    }
    // Every write of the agent goes through this client: none leaves a
    // replica that is not sure to hold the Lease.
    let client = lease.leadership().guard(client);
    let keeper = tokio::spawn(lease.keep(release.clone(), lost.clone()));
    Ok(Some(Leader {
        client,
        lost,
        release,
        keeper: Some(keeper),
    }))
}

/// The loop stops on a shutdown signal or when the Lease is lost.
fn stop_on_shutdown_or_lost(
    shutdown: &CancellationToken,
    lost: &CancellationToken,
) -> CancellationToken {
    let stop = CancellationToken::new();
    let (stop_, shutdown, lost) = (stop.clone(), shutdown.clone(), lost.clone());
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = lost.cancelled() => error!("leader lease lost: stopping so that the new leader reconciles alone"),
        }
        stop_.cancel();
    });
    stop
}

/// The agent's context: the recorded state read back, the engine, the
/// Event sink.
async fn context(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Arc<AgentContext>> {
    let store = StateStore::new(client.clone(), &settings.namespace);
    let cluster_id = crate::cluster::client::namespace_uid(&client, &settings.namespace).await;
    let state = startup::retry(
        "reading the Stage objects",
        shutdown,
        |e: &crate::cluster::state::StateError| matches!(e, crate::cluster::state::StateError::Kube { source, .. } if startup::is_transient(source)),
        || store.load(),
    )
    .await?;
    let events = EventQueue::start(EventSink::new(
        client.clone(),
        std::env::var("POD_NAME").ok(),
    ));
    let engine = Engine::new(
        client,
        EngineSettings {
            stuck_pod_grace: settings.stuck_pod_grace,
            default_timeout: settings.timeout,
            ..EngineSettings::default()
        },
    );
    for (name, stage) in &state.stages {
        metrics.set_phase(name.as_str(), stage.phase);
    }
    Ok(Arc::new(
        AgentContext::new(engine, events, settings, store, state, metrics)
            .with_cluster_id(cluster_id),
    ))
}

/// `--once` prints the revision's stages and exits 0 when all are Ready.
fn exit_code(result: Result<Option<RevisionOutcome>, AgentError>, once: bool) -> ExitCode {
    match result {
        Ok(Some(outcome)) => {
            print_outcome(&outcome);
            if outcome.all_ready() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Ok(None) if once => ExitCode::from(1),
        Ok(None) => {
            info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            // Logs and the error share stderr: say it once.
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn print_outcome(outcome: &RevisionOutcome) {
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

/// What start-up needs (see [`crate::agent::rbac`]). A GET of namespace X is
/// authorized as a request in X, so a Role in the agent's namespace covers
/// it; `--create-namespace` needs more, and is for development clusters.
pub const PERMISSIONS: &[crate::core::permission::Permission] =
    &[crate::core::permission::Permission {
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
