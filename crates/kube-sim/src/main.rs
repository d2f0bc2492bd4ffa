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
    if let Some(path) = &args.kubeconfig_out {
        // Written only now: the listener is bound and serving.
        if let Err(e) = sim.write_kubeconfig(path) {
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
