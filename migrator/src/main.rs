//! The `shardgate-migrator` command line: plan, start, resume, status,
//! verify, cutover, rollback, complete and cancel resharding jobs. Exit
//! status: 0 done, 1 error, 2 the plan is refused or verification found
//! differences.

use clap::{Args, Parser, Subcommand};
use shardgate_migrator::cutover::{self, SwitchBounds, SwitchRequest};
use shardgate_migrator::job::{self, read_config, RunOptions, StartRequest};
use shardgate_migrator::plan::{plan, render_text};
use shardgate_migrator::state::{now_ms, CopyOptions, StateStore};
use shardgate_migrator::status::{current_positions, render};
use shardgate_migrator::verify::{self, VerifyOptions};
use shardgate_migrator::{backend::Backends, MigrateError};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "shardgate-migrator",
    version,
    about = "Online resharding of ShardGate's sharded tables"
)]
struct Cli {
    /// Where job state files live.
    #[arg(long, global = true, default_value = "./migrations")]
    state_dir: String,
    #[command(subcommand)]
    command: Command,
}

/// How a run goes on once the job is ready.
#[derive(Args)]
struct Onward {
    /// Cut over once verified (needs the proxies: --proxy, or the job's).
    #[arg(long)]
    cutover: bool,
    /// Keep the change streams running until SIGINT/SIGTERM (after a
    /// cutover: the reverse stream), saving their positions.
    #[arg(long)]
    follow: bool,
    #[command(flatten)]
    switch: SwitchArgs,
}

#[derive(Args)]
struct SwitchArgs {
    /// A proxy's admin URL, like http://127.0.0.1:9797 or https://host:9797
    /// (repeat for each proxy; stored in the job).
    #[arg(long = "proxy")]
    proxies: Vec<String>,
    /// The bound on the write pause (and on each queued statement's wait).
    #[arg(long, default_value_t = 1000)]
    max_pause_ms: u64,
    /// How long the change streams may take to converge before the write
    /// pause (each catch-up round must end within a quarter of the bound).
    #[arg(long, default_value_t = 120)]
    catch_up_secs: u64,
    /// Further attempts of `cutover` / `rollback` after a switch failed and
    /// was undone (each after 2 s).
    #[arg(long, default_value_t = 2)]
    retries: u32,
}

impl SwitchArgs {
    fn request(&self, follow: bool) -> SwitchRequest {
        SwitchRequest {
            proxies: self.proxies.clone(),
            bounds: SwitchBounds {
                max_pause: Duration::from_millis(self.max_pause_ms.max(1)),
                catch_up: Duration::from_secs(self.catch_up_secs),
            },
            follow,
            retries: self.retries,
        }
    }
}

impl Onward {
    fn run_options(&self) -> RunOptions {
        RunOptions {
            cutover: self.cutover.then(|| self.switch.request(self.follow)),
            follow: self.follow,
            verify: VerifyOptions::default(),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// What moving to the new configuration takes (or why it cannot be done).
    Plan {
        /// The proxy's config file as it serves now.
        #[arg(long)]
        from: String,
        /// The config file to move to (its new data sources declared and
        /// running).
        #[arg(long)]
        to: String,
        /// Only this logical table (default: every table whose layout changes).
        #[arg(long)]
        table: Option<String>,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create a job for one table and run it: create the new tables, copy
    /// while catching up, verify: `ready` (then cut over with --cutover).
    Start {
        /// The proxy's config file as it serves now.
        #[arg(long)]
        from: String,
        /// The config file to move to (its new data sources declared and
        /// running).
        #[arg(long)]
        to: String,
        /// The logical table to move (one job per table).
        #[arg(long)]
        table: String,
        /// Rows copied per batch (each batch one short transaction; its
        /// rows are locked while it runs, tens of milliseconds).
        #[arg(long, default_value_t = 4000)]
        batch_size: usize,
        /// Source tables copied at once.
        #[arg(long, default_value_t = 4)]
        parallelism: usize,
        /// Pause copying from a data source while a replica lags more.
        #[arg(long, default_value_t = 5)]
        max_replica_lag_secs: u64,
        /// Sleep after each batch (lightens the load on busy sources).
        #[arg(long, default_value_t = 0)]
        pause_ms: u64,
        #[command(flatten)]
        onward: Onward,
    },
    /// Continue a job after a crash or kill (after cutover: bring the
    /// reverse stream up to date).
    Resume {
        job: String,
        #[command(flatten)]
        onward: Onward,
    },
    /// Switch the proxies to the new layout (a job in phase ready).
    Cutover {
        job: String,
        /// Keep the reverse stream running afterwards until SIGINT/SIGTERM.
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        switch: SwitchArgs,
    },
    /// Switch the proxies back to the old layout after a cutover.
    Rollback {
        job: String,
        #[command(flatten)]
        switch: SwitchArgs,
    },
    /// After cutover, drop the old layout's tables (after a rollback: the
    /// new layout's).
    Complete { job: String },
    /// Phase, progress, rate, ETA and catch-up lag of a job (or of all).
    Status {
        job: Option<String>,
        /// Print the job's whole state as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Compare the new layout with the old one, chunk by chunk.
    Verify {
        job: String,
        /// Rows per checksum chunk (key ranges compared at once).
        #[arg(long, default_value_t = 1000)]
        chunk_rows: usize,
        /// Times differing rows are compared again before they count: locked
        /// on the source side once the change streams applied every earlier
        /// change (0: what the scan found counts).
        #[arg(long, default_value_t = 1)]
        rechecks: u32,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Drop the tables the job created and mark it cancelled (before cutover;
    /// after a rollback, `complete` does that).
    Cancel { job: String },
}

fn main() -> ExitCode {
    // Colours only on a terminal: a log file gets plain text.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(MigrateError::Refused(reasons)) => {
            eprintln!("refused:\n{reasons}");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(1)
        }
    }
}

/// Exit status 2 when verification found differences.
fn finished<T>(result: Result<T, MigrateError>) -> Result<ExitCode, MigrateError> {
    match result {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(MigrateError::Differences(job)) => {
            eprintln!("{job}: verification found differences; `resume` verifies again");
            Ok(ExitCode::from(2))
        }
        Err(error) => Err(error),
    }
}

async fn run(cli: Cli) -> Result<ExitCode, MigrateError> {
    let store = || StateStore::open(&cli.state_dir).map_err(MigrateError::from);
    match cli.command {
        Command::Plan {
            from,
            to,
            table,
            json,
        } => {
            let (_, from_config) = read_config(&from)?;
            let (_, to_config) = read_config(&to)?;
            let backends = Backends::new(&from_config, &to_config, 2);
            let report = plan(
                &from_config,
                &to_config,
                &from,
                &to,
                table.as_deref(),
                &backends,
            )
            .await;
            backends.disconnect().await;
            let report = report?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                print!("{}", render_text(&report));
            }
            let refused = report.plans.iter().any(|p| p.mode.is_none());
            Ok(if refused {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Start {
            from,
            to,
            table,
            batch_size,
            parallelism,
            max_replica_lag_secs,
            pause_ms,
            onward,
        } => {
            let request = StartRequest {
                from_path: from,
                to_path: to,
                table,
                options: CopyOptions {
                    batch_size,
                    parallelism,
                    max_replica_lag_secs,
                    pause_ms,
                },
                proxies: onward.switch.proxies.clone(),
            };
            finished(job::start(&store()?, request, &onward.run_options()).await)
        }
        Command::Resume { job, onward } => {
            finished(job::resume(&store()?, &job, &onward.run_options()).await)
        }
        Command::Cutover {
            job,
            follow,
            switch,
        } => {
            cutover::cutover(&store()?, &job, &switch.request(follow)).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Rollback { job, switch } => {
            cutover::rollback(&store()?, &job, &switch.request(false)).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Complete { job } => {
            cutover::complete(&store()?, &job).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { job, json } => {
            let store = store()?;
            let jobs = match job {
                Some(job) => vec![store.load(&job)?],
                None => store.list()?,
            };
            if jobs.is_empty() {
                println!("no jobs in {}", store.dir().display());
            }
            for state in jobs {
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&state).unwrap_or_default()
                    );
                } else {
                    print!(
                        "{}",
                        render(&state, &current_positions(&state).await, now_ms())
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify {
            job,
            chunk_rows,
            rechecks,
            json,
        } => {
            let options = VerifyOptions {
                chunk_rows,
                rechecks,
            };
            let report = job::verify_ready(&store()?, &job, &options).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                print!("{}", verify::render_text(&job, &report));
            }
            Ok(if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
        Command::Cancel { job } => {
            job::cancel(&store()?, &job).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// `--help` describes every option of every command.
    #[test]
    fn every_option_has_help() {
        let cli = Cli::command();
        cli.clone().debug_assert();
        for command in cli.get_subcommands() {
            for arg in command.get_arguments() {
                let name = arg.get_id().as_str();
                if arg.is_positional() || matches!(name, "help" | "version") {
                    continue;
                }
                assert!(
                    arg.get_help().is_some(),
                    "{} --{name} has no help text",
                    command.get_name()
                );
            }
        }
    }
}
