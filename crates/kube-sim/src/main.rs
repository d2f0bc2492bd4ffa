//! `kube-sim --port P --kubeconfig-out FILE`: a simulated Kubernetes API server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use kube_sim::{KubeSim, SimConfig};

/// A simulated Kubernetes API server on 127.0.0.1, for tests and demos.
///
/// kubectl and kube-rs talk to it as to a real cluster; Jobs run as the
/// `sim.stagegate.dev/*` annotations say (see the crate README).
#[derive(Debug, Parser)]
#[command(name = "kube-sim", version)]
struct Args {
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: std::net::IpAddr,
    /// Write a kubeconfig pointing at the server here, once it accepts connections.
    #[arg(long)]
    kubeconfig_out: Option<PathBuf>,
    /// How long a Job pod runs by default.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    job_duration: Duration,
    /// How long after a change a Deployment/StatefulSet/DaemonSet is rolled out.
    #[arg(long, default_value = "300ms", value_parser = humantime::parse_duration)]
    rollout_delay: Duration,
    /// Base delay before a failed Job pod is replaced (doubling per failure).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    job_backoff: Duration,
    /// Events kept for watches resuming from a resourceVersion.
    #[arg(long, default_value_t = 10_000)]
    watch_history: usize,
    /// Also write a kubeconfig for a named user: `NAME[:GROUP,...]=FILE`
    /// (repeatable). RBAC decides what the user may do.
    #[arg(long, value_name = "NAME[:GROUPS]=FILE", value_parser = parse_user_kubeconfig)]
    user_kubeconfig: Vec<UserKubeconfig>,
    /// Also write a kubeconfig for a ServiceAccount: `NAMESPACE/NAME=FILE`
    /// (repeatable); it authenticates once the ServiceAccount exists.
    #[arg(long, value_name = "NAMESPACE/NAME=FILE", value_parser = parse_sa_kubeconfig)]
    service_account_kubeconfig: Vec<ServiceAccountKubeconfig>,
}

#[derive(Debug, Clone)]
struct UserKubeconfig {
    name: String,
    groups: Vec<String>,
    file: PathBuf,
}

#[derive(Debug, Clone)]
struct ServiceAccountKubeconfig {
    namespace: String,
    name: String,
    file: PathBuf,
}

fn parse_user_kubeconfig(s: &str) -> Result<UserKubeconfig, String> {
    let (who, file) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME[:GROUP,...]=FILE, got {s:?}"))?;
    let (name, groups) = who.split_once(':').unwrap_or((who, ""));
    if name.is_empty() || file.is_empty() {
        return Err(format!("expected NAME[:GROUP,...]=FILE, got {s:?}"));
    }
    Ok(UserKubeconfig {
        name: name.to_string(),
        groups: groups
            .split(',')
            .filter(|g| !g.is_empty())
            .map(str::to_string)
            .collect(),
        file: PathBuf::from(file),
    })
}

fn parse_sa_kubeconfig(s: &str) -> Result<ServiceAccountKubeconfig, String> {
    let bad = || format!("expected NAMESPACE/NAME=FILE, got {s:?}");
    let (who, file) = s.split_once('=').ok_or_else(bad)?;
    let (namespace, name) = who.split_once('/').ok_or_else(bad)?;
    if namespace.is_empty() || name.is_empty() || file.is_empty() {
        return Err(bad());
    }
    Ok(ServiceAccountKubeconfig {
        namespace: namespace.to_string(),
        name: name.to_string(),
        file: PathBuf::from(file),
    })
}

/// Every kubeconfig the flags ask for: (file, content).
fn kubeconfigs(sim: &KubeSim, args: &Args) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    if let Some(path) = &args.kubeconfig_out {
        out.push((path.clone(), sim.kubeconfig_yaml()));
    }
    for u in &args.user_kubeconfig {
        let groups: Vec<&str> = u.groups.iter().map(String::as_str).collect();
        out.push((u.file.clone(), sim.user_kubeconfig(&u.name, &groups)));
    }
    for sa in &args.service_account_kubeconfig {
        out.push((
            sa.file.clone(),
            sim.service_account_kubeconfig(&sa.namespace, &sa.name),
        ));
    }
    out
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = SimConfig {
        job_duration: args.job_duration,
        rollout_delay: args.rollout_delay,
        watch_history: args.watch_history,
        job_backoff: args.job_backoff,
        ..SimConfig::default()
    };
    let sim = match KubeSim::start_on(SocketAddr::new(args.bind, args.port), config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kube-sim: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // Written only now: the listener is bound and serving.
    for (path, content) in kubeconfigs(&sim, &args) {
        if let Err(e) = std::fs::write(&path, content) {
            eprintln!("kube-sim: cannot write {}: {e}", path.display());
            sim.shutdown().await;
            return std::process::ExitCode::FAILURE;
        }
    }
    println!("{}", sim.url());
    tracing::info!(url = %sim.url(), "kube-sim serving");
    let _ = tokio::signal::ctrl_c().await;
    sim.shutdown().await;
    std::process::ExitCode::SUCCESS
}
