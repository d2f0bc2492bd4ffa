//! The `stagegate` command line: wiring only; the work is in the library.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use stagegate::diagnostics::Problems;
use stagegate::output::{graph_dot, graph_text, yaml_stream};
use stagegate::plan::{Plan, build_plan};

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
    /// Check a repository's stages and manifests; exit 1 listing every problem.
    Validate(RepoArgs),
    /// Print the stages in dependency order.
    Graph {
        #[command(flatten)]
        repo: RepoArgs,
        /// `text`: one stage per line, `name <- dependencies`; `dot`: Graphviz.
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
}

#[derive(Args)]
struct RepoArgs {
    /// A checkout of the repository.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Directory, relative to DIR, holding the stage definitions (default: all of DIR).
    #[arg(long, value_name = "P")]
    path: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum GraphFormat {
    Text,
    Dot,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STAGEGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Validate(repo) => {
            let plan = match load(&repo) {
                Ok(plan) => plan,
                Err(code) => return Ok(code),
            };
            println!(
                "ok: {} stages, {} objects, {} warnings",
                plan.stages.len(),
                plan.object_count(),
                plan.warnings.iter().count()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Graph { repo, format } => {
            let plan = match load(&repo) {
                Ok(plan) => plan,
                Err(code) => return Ok(code),
            };
            let text = match format {
                GraphFormat::Text => graph_text(&plan),
                GraphFormat::Dot => graph_dot(&plan),
            };
            print_stdout(&text)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Render { repo, stage } => {
            let plan = match load(&repo) {
                Ok(plan) => plan,
                Err(code) => return Ok(code),
            };
            let objects: Vec<_> = match &stage {
                Some(name) => match plan.stage(name) {
                    Some(planned) => planned.objects.iter().collect(),
                    None => {
                        let known: Vec<&str> =
                            plan.stages.iter().map(|s| s.stage.name.as_str()).collect();
                        eprintln!("error: no stage named {name}; stages: {}", known.join(", "));
                        return Ok(ExitCode::from(1));
                    }
                },
                None => plan.stages.iter().flat_map(|s| &s.objects).collect(),
            };
            print_stdout(&yaml_stream(objects)?)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Build the plan, printing warnings; on errors print every problem and give
/// the exit code to return.
fn load(repo: &RepoArgs) -> Result<Plan, ExitCode> {
    match build_plan(&repo.dir, repo.path.as_deref()) {
        Ok(plan) => {
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
