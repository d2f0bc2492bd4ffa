//! The `stagegate` command line: wiring only; the work is in the library.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod stage_commands;
use stagegate::agent::web::{Topology, svg};
use stagegate::cli::output::{graph_dot, graph_text, yaml_stream};
use stagegate::cluster::apply::{Engine, EngineSettings};
use stagegate::cluster::state::StateStore;
use stagegate::core::diagnostics::Problems;
use stagegate::core::plan::{Plan, PlanOptions, build_plan_with};

#[derive(Parser)]
#[command(
    name = "stagegate",
    version,
    about = "GitOps for Kubernetes with stages in dependency order and Jobs that run once per change"
)]
struct Cli {
    /// Log output format (logs go to stderr).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "STAGEGATE_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent: poll the repository and apply its stages in dependency order.
    ///
    /// With --once: reconcile the current revision, wait for every stage's
    /// outcome, print a summary and exit 0 only when every stage is Ready.
    Run(Box<stagegate::agent::config::RunArgs>),
    /// Check a repository's stages and manifests; exit 1 listing every problem.
    Validate(RepoArgs),
    /// Print the stages in dependency order.
    Graph {
        #[command(flatten)]
        repo: RepoArgs,
        /// `text`: one stage per line, `name <- dependencies`; `dot`: Graphviz;
        /// `svg`: the status page's drawing.
        #[arg(long, value_enum, default_value_t = GraphFormat::Text)]
        format: GraphFormat,
    },
    /// Print the rendered objects as one YAML stream, stages in dependency order.
    Render {
        #[command(flatten)]
        repo: RepoArgs,
        /// Render only this stage.
        #[arg(long, value_name = "NAME")]
        stage: Option<String>,
    },
    /// Show what applying the repository would change in the cluster; writes nothing.
    ///
    /// Exit 0 when nothing would change, 1 when something would, 2 on error.
    Diff {
        #[command(flatten)]
        repo: RepoArgs,
        /// Only this stage.
        #[arg(long, value_name = "NAME")]
        stage: Option<String>,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Show each stage (in dependency order) with its phase, applied and
    /// attempted revision, age and message, read from the Stage objects;
    /// running Jobs with their pod and attempt.
    Status {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
        /// Print again whenever something changes (Ctrl-C ends).
        #[arg(short = 'w', long)]
        watch: bool,
    },
    /// Ask the agent to run Jobs of a stage again (every Job of the stage without JOB).
    ///
    /// Writes the annotation stagegate.dev/rerun on the Stage object, as
    /// `kubectl annotate stage STAGE stagegate.dev/rerun=JOB --overwrite` does.
    Rerun {
        /// The stage.
        stage: String,
        /// Jobs, as `name` or `namespace/name`.
        jobs: Vec<String>,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Ask the agent to fetch and reconcile now, instead of at its next poll.
    Reconcile {
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Stop applying a stage, whatever Git says, until `stagegate resume`.
    Suspend {
        stage: String,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Undo `stagegate suspend`: the stage follows Git again.
    Resume {
        stage: String,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
}

#[derive(Args)]
struct ClusterArgs {
    /// Kubeconfig file (default: KUBECONFIG, ~/.kube/config, then in-cluster).
    #[arg(long, value_name = "FILE", env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Namespace of the agent and its Stage objects.
    #[arg(
        long,
        short = 'n',
        value_name = "NS",
        default_value = "stagegate-system",
        env = "STAGEGATE_NAMESPACE"
    )]
    namespace: String,
}

impl ClusterArgs {
    /// The Stage objects of the agent's namespace, checking first that the
    /// namespace exists, so that a typo gets a hint rather than an empty list.
    async fn connect(&self) -> anyhow::Result<StateStore> {
        let client = stagegate::cluster::client::client(self.kubeconfig.as_deref()).await?;
        stagegate::cluster::client::require_namespace(&client, &self.namespace).await?;
        Ok(StateStore::new(client, &self.namespace))
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Table,
    Json,
    Yaml,
}

#[derive(Args)]
struct RepoArgs {
    /// A checkout of the repository.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Directory, relative to DIR, holding the stage definitions (default: all of DIR).
    #[arg(long, value_name = "P")]
    path: Option<PathBuf>,
    /// Values for postBuild.substituteFrom sources the repository does not
    /// render (the agent reads them from the cluster): a YAML map of
    /// `KEY: value` or `KEY=value` lines. Without it, the variables they
    /// would give are named as unresolved.
    #[arg(long, value_name = "FILE")]
    substitute_from: Option<PathBuf>,
    /// Take Flux's own bootstrap Kustomization as a stage instead of skipping it.
    #[arg(long, env = "STAGEGATE_APPLY_FLUX_BOOTSTRAP", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    apply_flux_bootstrap: Option<bool>,
    /// The ServiceAccount (in each Kustomization's namespace) Flux stages
    /// without serviceAccountName are applied as, as the agent's flag of the
    /// same name: `diff` then compares as that account.
    #[arg(long, value_name = "NAME", env = "STAGEGATE_DEFAULT_SERVICE_ACCOUNT")]
    default_service_account: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum GraphFormat {
    Text,
    Dot,
    Svg,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match run(cli.command).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(format: LogFormat) {
    match format {
        LogFormat::Text => stagegate::agent::logging::init_text(),
        LogFormat::Json => stagegate::agent::logging::init_json(),
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(args) => stagegate::agent::run::main::run(*args).await,
        Command::Diff {
            repo,
            stage,
            cluster,
        } => diff(repo, stage, cluster).await,
        Command::Status {
            cluster,
            output,
            watch,
        } => stage_commands::status(&cluster.connect().await?, output, watch).await,
        Command::Rerun {
            stage,
            jobs,
            cluster,
        } => stage_commands::rerun(&cluster.connect().await?, &stage, jobs).await,
        Command::Reconcile { cluster } => {
            stage_commands::reconcile(&cluster.connect().await?).await
        }
        Command::Suspend { stage, cluster } => {
            stage_commands::suspend(&cluster.connect().await?, &stage, true).await
        }
        Command::Resume { stage, cluster } => {
            stage_commands::suspend(&cluster.connect().await?, &stage, false).await
        }
        Command::Validate(repo) => {
            let plan = match load(&repo) {
                Ok(plan) => plan,
                Err(code) => return Ok(code),
            };
            if plan.failed().next().is_some() {
                let failed: Vec<&str> = plan.failed().map(|s| s.stage.name.as_str()).collect();
                eprintln!(
                    "{} error(s) in {} stage(s) that fail alone ({}); the other {} stages are valid",
                    plan.errors.errors().count(),
                    failed.len(),
                    failed.join(", "),
                    plan.stages.len() - failed.len()
                );
                return Ok(ExitCode::from(1));
            }
            println!(
                "ok: {} stages, {} objects, {} warnings",
                plan.stages.len(),
                plan.object_count(),
                plan.warnings.iter().count()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Graph { repo, format } => {
            // Nothing could be drawn: exit 2, not validate's "found errors".
            let Ok(plan) = load(&repo) else {
                return Ok(ExitCode::from(2));
            };
            let text = match format {
                GraphFormat::Text => graph_text(&plan),
                GraphFormat::Dot => graph_dot(&plan),
                GraphFormat::Svg => {
                    let stages = svg::stages_of_topology(&Topology::of(&plan));
                    svg::render(&stages, false, true) + "\n"
                }
            };
            print_stdout(&text)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Render { repo, stage } => {
            // Nothing could be rendered: exit 2, not validate's "found errors".
            let Ok(plan) = load(&repo) else {
                return Ok(ExitCode::from(2));
            };
            if let Some(failed) = plan
                .failed()
                .find(|s| stage.as_deref().is_none_or(|n| s.stage.name.as_str() == n))
            {
                eprintln!(
                    "error: stage {} could not be rendered: nothing was rendered{}",
                    failed.stage.name,
                    match &stage {
                        Some(_) => String::new(),
                        None => " (render --stage NAME renders another stage)".to_string(),
                    }
                );
                // Nothing could be rendered: exit 2, not validate's "found errors".
                return Ok(ExitCode::from(2));
            }
            let objects: Vec<_> = match &stage {
                Some(name) => match plan.stage(name) {
                    Some(planned) => planned.objects.iter().collect(),
                    None => {
                        let known: Vec<&str> =
                            plan.stages.iter().map(|s| s.stage.name.as_str()).collect();
                        eprintln!("error: no stage named {name}; stages: {}", known.join(", "));
                        return Ok(ExitCode::from(2));
                    }
                },
                None => plan.stages.iter().flat_map(|s| &s.objects).collect(),
            };
            print_stdout(&yaml_stream(objects)?)?;
            // The process ends here; freeing every rendered object one by
            // one costs a few percent of a large render for nothing.
            std::mem::forget(plan);
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn diff(
    repo: RepoArgs,
    stage: Option<String>,
    cluster: ClusterArgs,
) -> anyhow::Result<ExitCode> {
    let Ok(plan) = load(&repo) else {
        return Ok(ExitCode::from(2));
    };
    if let Some(name) = &stage
        && plan.stage(name).is_none()
    {
        eprintln!("error: no stage named {name}");
        return Ok(ExitCode::from(2));
    }
    let client = stagegate::cluster::client::client(cluster.kubeconfig.as_deref()).await?;
    let state = StateStore::new(client.clone(), &cluster.namespace)
        .read()
        .await?;
    let engine = Engine::new(client, EngineSettings::default());
    let mut changes = false;
    let mut errors = false;
    let mut out = String::new();
    for planned in plan
        .stages
        .iter()
        .filter(|s| stage.as_deref().is_none_or(|n| s.stage.name.as_str() == n))
    {
        if planned.failed().is_some() {
            // Its errors were printed; without its objects, a diff would
            // show every one of them pruned.
            errors = true;
            out.push_str(&format!(
                "stage {}: not compared: it could not be rendered\n",
                planned.stage.name
            ));
            continue;
        }
        let stage_state = state
            .stages
            .get(planned.stage.name.as_str())
            .cloned()
            .unwrap_or_default();
        // A tenant's stage is compared as its ServiceAccount, as it is applied.
        let as_account = match &planned.stage.service_account {
            Some(account) => Some(engine.impersonating(&account.user())?),
            None => None,
        };
        let diff = as_account
            .as_ref()
            .unwrap_or(&engine)
            .diff_stage(planned, "diff", &stage_state)
            .await;
        changes |= diff.has_changes();
        errors |= !diff.errors.is_empty();
        out.push_str(&diff.to_string());
    }
    if stage.is_none() {
        for (name, removed) in state
            .stages
            .iter()
            .filter(|(n, _)| plan.stage(n.as_str()).is_none())
        {
            if removed.prune && !removed.inventory.is_empty() {
                changes = true;
                out.push_str(&format!("stage {name}: removed from the repository\n"));
                for entry in &removed.inventory {
                    out.push_str(&format!("  - prune {}\n", entry.object_ref()));
                }
            }
        }
    }
    print_stdout(&out)?;
    Ok(ExitCode::from(if errors {
        2
    } else if changes {
        1
    } else {
        0
    }))
}

/// Build the plan, printing warnings; on errors print every problem and give
/// the exit code to return.
fn load(repo: &RepoArgs) -> Result<Plan, ExitCode> {
    if !repo.dir.is_dir() {
        eprintln!(
            "error: {} is not a directory: give the checkout of the repository",
            repo.dir.display()
        );
        return Err(ExitCode::from(2));
    }
    let substitution = match &repo.substitute_from {
        Some(file) => match stagegate::agent::config::read_substitute_file(file) {
            Ok(values) => Some(Box::new(stagegate::core::stage::substitute_from::Values {
                values,
                origin: format!("--substitute-from {}", file.display()),
            })
                as Box<dyn stagegate::core::stage::substitute_from::SubstitutionSource>),
            Err(e) => {
                eprintln!("error: {e}");
                return Err(ExitCode::from(2));
            }
        },
        None => None,
    };
    let default_service_account =
        match stagegate::agent::config::service_account(repo.default_service_account.clone()) {
            Ok(name) => name,
            Err(e) => {
                eprintln!("error: {e}");
                return Err(ExitCode::from(2));
            }
        };
    let options = PlanOptions {
        apply_flux_bootstrap: repo.apply_flux_bootstrap.unwrap_or(false),
        default_service_account,
        substitution,
    };
    match build_plan_with(&repo.dir, repo.path.as_deref(), &options) {
        Ok(plan) => {
            print_problems(&plan.errors);
            print_problems(&plan.warnings);
            Ok(plan)
        }
        Err(problems) => {
            print_problems(&problems);
            let errors = problems.errors().count();
            eprintln!("{errors} error(s): nothing was rendered");
            Err(ExitCode::from(1))
        }
    }
}

fn print_problems(problems: &Problems) {
    for problem in problems.sorted() {
        eprintln!("{problem}");
    }
}

/// Write to stdout, treating a closed pipe (`stagegate render | head`) as done.
fn print_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
