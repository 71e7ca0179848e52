use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use k8s_openapi::jiff::Timestamp;
use prism::exit::EXIT_CODES;
use prism_api::strategy::Duration;
use prism_ops::Error;
use prism_ops::connection::Connection;
use prism_ops::status::Status;
use serde::Deserialize;
use serde::de::IntoDeserializer;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Print the RBAC rules the controller and the HTTP server need in the management cluster, as
    /// the Helm chart holds them (deploy/helm/prism/files/rbac.yaml).
    Rbac,
    /// Run the controllers against the cluster of the current kubeconfig (logs: RUST_LOG).
    Controller {
        /// Watch this namespace only. Default: every namespace.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// Deploy only to the Clusters with these labels, e.g. `fleet=eu`. Default: every
        /// Cluster; with none, the management cluster alone (as "local").
        #[arg(long, value_name = "SELECTOR")]
        cluster_selector: Option<String>,
        /// A RolloutBlock in this namespace stops every Application.
        #[arg(long, value_name = "NAMESPACE", default_value = prism_controller::DEFAULT_GLOBAL_NAMESPACE)]
        global_namespace: String,
        /// The Prometheus server of the metric checks that give no prometheus.address, e.g.
        /// http://prometheus.monitoring:9090.
        #[arg(long, value_name = "URL")]
        prometheus_url: Option<String>,
        /// Serve /metrics, /healthz and /readyz here, e.g. 0.0.0.0:8080. Default: not served.
        #[arg(long, value_name = "ADDRESS")]
        metrics_address: Option<std::net::SocketAddr>,
        /// The helm binary that renders charts (spec.template.chart); the image has /helm.
        #[arg(long, value_name = "PATH", default_value = "helm")]
        helm: std::path::PathBuf,
        /// How log lines are written: text, or one JSON object per line.
        #[arg(long, value_enum, default_value_t)]
        log_format: prism::controller::LogFormat,
        #[command(flatten)]
        election: prism::controller::ElectionArgs,
    },
    /// Serve the HTTP API and the web UI over the whole fleet to many people: each request
    /// carries a bearer token (TokenReview) and is allowed what its user may do (SubjectAccessReview).
    Serve {
        /// Where to listen.
        #[arg(long, value_name = "ADDRESS", default_value = "0.0.0.0:8080")]
        address: std::net::SocketAddr,
        /// Show only this namespace's applications. Default: every namespace.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// Show only the Clusters with these labels, e.g. `fleet=eu`, as the controller's
        /// --cluster-selector. Default: every Cluster.
        #[arg(long, value_name = "SELECTOR")]
        cluster_selector: Option<String>,
        /// How log lines are written: text, or one JSON object per line.
        #[arg(long, value_enum, default_value_t)]
        log_format: prism::controller::LogFormat,
    },
    /// Open the web UI for yourself: served on loopback with the kubeconfig's identity, like
    /// `kubectl argo rollouts dashboard`. Prints its URL.
    Dashboard {
        /// Where to listen; loopback only.
        #[arg(long, value_name = "ADDRESS", default_value = "127.0.0.1:3100")]
        address: std::net::SocketAddr,
        /// Show only this namespace's applications, for rights that end at one namespace.
        /// Default: every namespace.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// Show only the Clusters with these labels. Default: every Cluster.
        #[arg(long, value_name = "SELECTOR")]
        cluster_selector: Option<String>,
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
        /// The helm binary that renders a chart template (spec.template.chart), with its
        /// inline values.
        #[arg(long, value_name = "PATH", default_value = "helm")]
        helm: PathBuf,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Where an Application's rollout is: the contender's step and what it waits for, then each
    /// live version in each cluster (ready/desired replicas, traffic weight, step, state).
    #[command(after_help = EXIT_CODES)]
    Status {
        /// The Application's name.
        app: String,
        /// The Application's namespace. Default: the kubeconfig context's.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// With --watch, json prints one line of JSON per change.
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
        /// Redraw on every change until the newest Release is complete (exit 0) or rolled back
        /// (exit 5).
        #[arg(short = 'w', long)]
        watch: bool,
        /// How long --watch waits at most (exit 6), e.g. 90s, 10m, 1h30m.
        #[arg(long, value_name = "DURATION", requires = "watch", value_parser = duration)]
        timeout: Option<Duration>,
    },
    /// Let the contender leave its current step now, whatever the step's gate (pause, analysis,
    /// approval) says.
    #[command(after_help = EXIT_CODES)]
    Promote {
        /// The Application's name.
        app: String,
        /// The Application's namespace. Default: the kubeconfig context's.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// Skip every remaining gate, the last step's too: the contender completes as fast as its
        /// clusters get ready.
        #[arg(long)]
        full: bool,
        /// Under a RolloutBlock, record the promotion anyway: the step moves when the block is
        /// lifted or passed. Without it, a block refuses the promotion (exit 4).
        #[arg(long)]
        when_unblocked: bool,
    },
    /// Roll the contender back: the incumbent gets its capacity, then its traffic, back. Final.
    #[command(after_help = EXIT_CODES)]
    Abort {
        /// The Application's name.
        app: String,
        /// The Application's namespace. Default: the kubeconfig context's.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    /// Make the Application's template that of an earlier Release again; the controller rolls it
    /// out as a new revision under the Application's strategy. A revision still live (a
    /// rainbow's retained version) takes the default route back at once instead: the live
    /// Releases newer than it are aborted, and no pod is made.
    #[command(after_help = EXIT_CODES)]
    Rollback {
        /// The Application's name.
        app: String,
        /// The Application's namespace. Default: the kubeconfig context's.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// The revision to go back to (see `prism history`). Default: the newest complete
        /// Release older than the incumbent.
        #[arg(long, value_name = "REVISION")]
        to: Option<u32>,
        /// Under a RolloutBlock, change the template anyway: its new revision is made when the
        /// block is lifted or passed. Without it, a block refuses the rollback (exit 4).
        #[arg(long)]
        when_unblocked: bool,
    },
    /// List an Application's Releases, oldest first: revision, phase, step, images, age, role.
    #[command(after_help = EXIT_CODES)]
    History {
        /// The Application's name.
        app: String,
        /// The Application's namespace. Default: the kubeconfig context's.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Every version of an Application that still runs: its role (contender, default,
    /// retained, draining, drained), routes as URLs, age, TTL left, ready/desired per cluster, pin.
    #[command(after_help = EXIT_CODES)]
    Versions {
        /// The Application's name.
        app: String,
        /// The Application's namespace. Default: the kubeconfig context's.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Keep a version live whatever versions.max and versions.ttl say.
    #[command(after_help = EXIT_CODES)]
    Pin {
        /// The Application's name.
        app: String,
        /// The version: its Release's name (web-3) or the name it goes by in its routes (v3).
        version: String,
        /// The Application's namespace. Default: the kubeconfig context's.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    /// Let versions.max and versions.ttl retire a pinned version again.
    #[command(after_help = EXIT_CODES)]
    Unpin {
        /// The Application's name.
        app: String,
        /// The version: its Release's name (web-3) or the name it goes by in its routes (v3).
        version: String,
        /// The Application's namespace. Default: the kubeconfig context's.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    /// Retire a retained version now: its routes leave, it drains, it is scaled to 0, its
    /// objects go (see docs/rainbow.md).
    #[command(after_help = EXIT_CODES)]
    Retire {
        /// The Application's name.
        app: String,
        /// The version: its Release's name (web-3) or the name it goes by in its routes (v3).
        version: String,
        /// The Application's namespace. Default: the kubeconfig context's.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    /// The fleet's application clusters: join one, list them, cordon, drain, uncordon.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Give Prism least-privilege access to an application cluster (a ServiceAccount and a
    /// ClusterRole there) and register it as a Cluster in the management cluster (that of the
    /// current kubeconfig). Running it again changes nothing unless a flag did.
    #[command(after_help = prism::cluster::EXIT_CODES)]
    Join(prism::cluster::join::JoinOptions),
    /// Each cluster's region, state, weight, and what runs there: applications, versions,
    /// ready/desired replicas.
    #[command(after_help = prism::cluster::EXIT_CODES)]
    List {
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Schedule no new Release to the cluster; what runs there stays.
    #[command(after_help = prism::cluster::EXIT_CODES)]
    Cordon {
        /// The Cluster's name.
        name: String,
    },
    /// Let new Releases be scheduled to the cluster again.
    #[command(after_help = prism::cluster::EXIT_CODES)]
    Uncordon {
        /// The Cluster's name.
        name: String,
    },
    /// Cordon the cluster, then move every application off it: each gets a new Release without
    /// the cluster, rolled out under its own strategy. Shows the progress until nothing runs
    /// there.
    #[command(after_help = prism::cluster::EXIT_CODES)]
    Drain {
        /// The Cluster's name.
        name: String,
        /// How long to wait at most (exit 6), e.g. 90s, 10m, 1h30m.
        #[arg(long, value_name = "DURATION", value_parser = duration)]
        timeout: Option<Duration>,
    },
}

/// A duration as the strategy language writes one: `30s`, `5m`, `1h30m`.
fn duration(text: &str) -> Result<Duration, String> {
    Duration::deserialize(text.into_deserializer())
        .map_err(|error: serde::de::value::Error| error.to_string())
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
}

fn main() -> ExitCode {
    let mut command = Cli::command();
    if invoked_as_kubectl_plugin() {
        command = command.bin_name("kubectl prism");
    }
    let cli = Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|error| error.exit());
    match cli.command {
        Command::Crds => match prism::crds::render() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(error) => fail(1, error),
        },
        Command::Rbac => match prism::rbac::render() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(error) => fail(1, error),
        },
        Command::Controller {
            namespace,
            cluster_selector,
            global_namespace,
            prometheus_url,
            metrics_address,
            helm,
            log_format,
            election,
        } => match prism::controller::run(
            prism_controller::Options {
                namespace,
                cluster_selector,
                global_namespace: Some(global_namespace),
                prometheus_url,
                metrics_address,
                leader_election: election.resolve(),
                helm: Some(helm),
            },
            log_format,
        ) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => fail(1, error),
        },
        Command::Serve {
            address,
            namespace,
            cluster_selector,
            log_format,
        } => match prism::serve::run(
            prism_server::Options {
                mode: prism_server::Mode::Serve,
                namespace,
                cluster_selector,
            },
            address,
            log_format,
        ) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => fail(1, error),
        },
        Command::Dashboard {
            address,
            namespace,
            cluster_selector,
        } => match prism::serve::run(
            prism_server::Options {
                mode: prism_server::Mode::Dashboard,
                namespace,
                cluster_selector,
            },
            address,
            prism::controller::LogFormat::Text,
        ) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => fail(1, error),
        },
        Command::Plan {
            file,
            clusters,
            fail_at,
            helm,
            output,
        } => {
            let text = match std::fs::read_to_string(&file) {
                Ok(text) => text,
                Err(error) => return fail(1, format!("cannot read {}: {error}", file.display())),
            };
            let helm = prism_chart::Helm::new(helm);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(error) => return fail(1, format!("starting tokio: {error}")),
            };
            match runtime.block_on(prism::plan::plan(
                &text,
                clusters,
                fail_at.as_deref(),
                &helm,
            )) {
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
        Command::Status {
            app,
            namespace,
            output,
            watch,
            timeout,
        } => {
            let result = if watch {
                let terminal = std::io::stdout().is_terminal();
                let mut first = true;
                block_on(async {
                    let connection = Connection::new(namespace).await?;
                    prism_ops::status::watch(&connection, &app, timeout, |status| {
                        draw(status, output, terminal, first);
                        first = false;
                    })
                    .await
                })
            } else {
                block_on(async {
                    let connection = Connection::new(namespace).await?;
                    let status = prism_ops::status::read(&connection, &app).await?;
                    match output {
                        Output::Table => {
                            print!("{}", prism_ops::status::render(&status, Timestamp::now()))
                        }
                        Output::Json => println!("{}", json(&status, true)?),
                    }
                    Ok(())
                })
            };
            exit(result)
        }
        Command::Promote {
            app,
            namespace,
            full,
            when_unblocked,
        } => say(block_on(async {
            let connection = Connection::new(namespace).await?;
            prism_ops::promote::promote(&connection, &app, full, when_unblocked).await
        })),
        Command::Abort { app, namespace } => say(block_on(async {
            let connection = Connection::new(namespace).await?;
            prism_ops::abort::abort(&connection, &app).await
        })),
        Command::Rollback {
            app,
            namespace,
            to,
            when_unblocked,
        } => say(block_on(async {
            let connection = Connection::new(namespace).await?;
            prism_ops::rollback::rollback(&connection, &app, to, when_unblocked).await
        })),
        Command::History {
            app,
            namespace,
            output,
        } => exit(block_on(async {
            let connection = Connection::new(namespace).await?;
            let rows = prism_ops::history::read(&connection, &app).await?;
            show(output, &rows, prism_ops::history::table)
        })),
        Command::Versions {
            app,
            namespace,
            output,
        } => exit(block_on(async {
            let connection = Connection::new(namespace).await?;
            let rows = prism_ops::versions::read(&connection, &app).await?;
            show(output, &rows, prism_ops::versions::table)
        })),
        Command::Pin {
            app,
            version,
            namespace,
        } => say(block_on(async {
            let connection = Connection::new(namespace).await?;
            prism_ops::versions::pin(&connection, &app, &version, true).await
        })),
        Command::Unpin {
            app,
            version,
            namespace,
        } => say(block_on(async {
            let connection = Connection::new(namespace).await?;
            prism_ops::versions::pin(&connection, &app, &version, false).await
        })),
        Command::Retire {
            app,
            version,
            namespace,
        } => say(block_on(async {
            let connection = Connection::new(namespace).await?;
            prism_ops::versions::retire(&connection, &app, &version).await
        })),
        Command::Cluster { command } => cluster(command),
    }
}

fn cluster(command: ClusterCommand) -> ExitCode {
    use prism::cluster;
    use prism_ops::cluster::{self as clusters, Management};
    match command {
        ClusterCommand::Join(options) => exit(block_on(cluster::join::join(&options, |line| {
            println!("{line}")
        }))),
        ClusterCommand::List { output } => exit(block_on(async {
            let rows = clusters::list::read(&Management::new().await?).await?;
            show(output, &rows, clusters::list::table)
        })),
        ClusterCommand::Cordon { name } => say(block_on(async {
            clusters::set_unschedulable(&Management::new().await?, &name, true).await
        })),
        ClusterCommand::Uncordon { name } => say(block_on(async {
            clusters::set_unschedulable(&Management::new().await?, &name, false).await
        })),
        ClusterCommand::Drain { name, timeout } => {
            let terminal = std::io::stdout().is_terminal();
            exit(block_on(async {
                let management = Management::new().await?;
                cluster::drain::drain(&management, &name, timeout, terminal, |text| {
                    print!("{text}");
                    let _ = std::io::Write::flush(&mut std::io::stdout());
                })
                .await
            }))
        }
    }
}

/// Whether the binary runs as `kubectl-prism`, the name kubectl finds plugins by: its usage
/// lines then read `kubectl prism ...`, as people type them.
fn invoked_as_kubectl_plugin() -> bool {
    std::env::args_os()
        .next()
        .is_some_and(|arg0| Path::new(&arg0).file_stem() == Some("kubectl-prism".as_ref()))
}

/// Runs a command that talks to the cluster.
fn block_on<T>(command: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
    tokio::runtime::Runtime::new()
        .map_err(|e| Error::Api(format!("starting tokio: {e}")))?
        .block_on(command)
}

/// Rows as the table people read, or as JSON.
fn show<R: serde::Serialize>(
    output: Output,
    rows: &[R],
    table: fn(&[R]) -> String,
) -> Result<(), Error> {
    match output {
        Output::Table => print!("{}", table(rows)),
        Output::Json => println!("{}", json(&rows, true)?),
    }
    Ok(())
}

fn json(value: &impl serde::Serialize, pretty: bool) -> Result<String, Error> {
    let text = if pretty {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    };
    text.map_err(|e| Error::Api(format!("writing JSON: {e}")))
}

/// One frame of `status --watch`: on a terminal the screen is redrawn; elsewhere (a pipe, a CI
/// log) each change is appended, as a block or as one line of JSON.
fn draw(status: &Status, output: Output, terminal: bool, first: bool) {
    match output {
        Output::Json => match json(status, false) {
            Ok(line) => println!("{line}"),
            Err(error) => eprintln!("prism: {error}"),
        },
        Output::Table => {
            let text = prism_ops::status::render(status, Timestamp::now());
            if terminal {
                print!("\x1b[H\x1b[2J{text}");
            } else if first {
                print!("{text}");
            } else {
                print!("\n{text}");
            }
        }
    }
}

fn exit(result: Result<(), Error>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(prism::exit::code(&error), error),
    }
}

/// Prints what a command did, or why it failed.
fn say(result: Result<String, Error>) -> ExitCode {
    exit(result.map(|message| println!("{message}")))
}

fn fail(code: u8, error: impl std::fmt::Display) -> ExitCode {
    eprintln!("prism: {error}");
    ExitCode::from(code)
}
