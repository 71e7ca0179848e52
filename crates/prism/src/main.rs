use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Progressive delivery for Kubernetes fleets.
#[derive(Parser)]
#[command(name = "prism", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print every CRD as YAML, for `kubectl apply -f -`.
    Crds,
    /// Run the controllers against the cluster of the current kubeconfig (logs: RUST_LOG).
    Controller {
        /// Watch this namespace only. Default: every namespace.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    /// Simulate an application's rollout on an idealised fleet and print the timeline.
    Plan {
        /// The application file: an Application, and the Strategy or ClusterStrategy it names.
        #[arg(short = 'f', long = "filename", value_name = "APP.yaml")]
        file: PathBuf,
        /// How many clusters: c1..cN, the first half in region eu, the rest in us.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
        clusters: u32,
        /// Fail the analysis (or webhook) of this step, to see the rollback.
        #[arg(long, value_name = "STEP")]
        fail_at: Option<String>,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// List an Application's Releases, oldest first: revision, phase, step, images, age, role.
    #[command(after_help = HISTORY_EXIT_CODES)]
    History {
        /// The Application's name.
        app: String,
        /// The Application's namespace. Default: the kubeconfig context's.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

const HISTORY_EXIT_CODES: &str = "Exit codes:
  0  listed
  1  no kubeconfig, the cluster cannot be reached, access denied, or Prism's CRDs are not installed
  3  the Application does not exist in the namespace";

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Crds => match prism::crds::render() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(error) => fail(1, error),
        },
        Command::Controller { namespace } => match prism::controller::run(namespace) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => fail(1, error),
        },
        Command::Plan {
            file,
            clusters,
            fail_at,
            output,
        } => {
            let text = match std::fs::read_to_string(&file) {
                Ok(text) => text,
                Err(error) => return fail(1, format!("cannot read {}: {error}", file.display())),
            };
            match prism::plan::plan(&text, clusters, fail_at.as_deref()) {
                Ok(timeline) => {
                    match output {
                        Output::Table => print!("{}", prism::plan::table(&timeline)),
                        Output::Json => match serde_json::to_string_pretty(&timeline) {
                            Ok(json) => println!("{json}"),
                            Err(error) => return fail(1, error),
                        },
                    }
                    ExitCode::SUCCESS
                }
                Err(error @ prism::plan::PlanError::Invalid(_)) => fail(
                    error.exit_code(),
                    format!("{} is invalid:\n{error}", file.display()),
                ),
                Err(error) => fail(error.exit_code(), error),
            }
        }
        Command::History {
            app,
            namespace,
            output,
        } => {
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(error) => return fail(1, format!("starting tokio: {error}")),
            };
            match runtime.block_on(prism::history::read(&app, namespace)) {
                Ok(rows) => {
                    match output {
                        Output::Table => print!("{}", prism::history::table(&rows)),
                        Output::Json => match serde_json::to_string_pretty(&rows) {
                            Ok(json) => println!("{json}"),
                            Err(error) => return fail(1, error),
                        },
                    }
                    ExitCode::SUCCESS
                }
                Err(error) => fail(error.exit_code(), error),
            }
        }
    }
}

fn fail(code: u8, error: impl std::fmt::Display) -> ExitCode {
    eprintln!("prism: {error}");
    ExitCode::from(code)
}
