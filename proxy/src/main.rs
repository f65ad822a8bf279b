//! The `shardgate` binary: loads the config, starts the proxy, runs until
//! interrupted.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use shardgate_proxy::StartError;
use tracing_subscriber::EnvFilter;

/// A sharding proxy for MySQL/MariaDB.
#[derive(Debug, Parser)]
#[command(name = "shardgate", version)]
struct Args {
    /// The configuration file (TOML), e.g. examples/wework.toml.
    #[arg(short, long)]
    config: PathBuf,
    /// How log lines are written (to standard output): `text` for people,
    /// `json` (one object per line) for log shippers.
    #[arg(long, value_enum, env = "SHARDGATE_LOG_FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Logs go to standard output, filtered by `RUST_LOG` (default `info`).
fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    match format {
        // Colours only when standard output, where the lines go, is a
        // terminal: a file, a pipe or a journal gets plain text.
        LogFormat::Text => logs.with_ansi(std::io::stdout().is_terminal()).init(),
        LogFormat::Json => logs.json().with_ansi(false).init(),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logs(args.log_format);
    // Read before the runtime is built: it says how many threads to run.
    let config = match shardgate_proxy::read_config_file(&args.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // One worker: a single-threaded runtime, as an event loop like
    // HAProxy's (no cross-thread wake-ups or work stealing to pay for).
    let mut builder = match config.server.worker_threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        threads => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if let Some(threads) = threads {
                builder.worker_threads(threads);
            }
            builder
        }
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let proxy = match shardgate_proxy::start_from_read_file(config, &args.config).await {
            Ok(p) => p,
            Err(e @ StartError::Config(_)) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
            Err(e) => {
                eprintln!("cannot start: {e}");
                return ExitCode::FAILURE;
            }
        };
        let database = proxy.proxy().current().config.server.database.clone();
        reload_on_sighup(proxy.proxy().clone());
        let addr = proxy.mysql_addr();
        // A line for people; in JSON every line is a log event, and the
        // start's "ShardGate listening" event has both addresses.
        if args.log_format == LogFormat::Text {
            println!(
                "ShardGate is serving MySQL clients on {addr} (admin HTTP on {}); connect with: mysql -h{} -P{} -uroot {database}",
                proxy.admin_addr(),
                addr.ip(),
                addr.port()
            );
        }
        wait_for_shutdown().await;
        proxy.stop();
        ExitCode::SUCCESS
    })
}

/// SIGHUP re-reads the configuration file, as POST /api/reload does.
fn reload_on_sighup(proxy: std::sync::Arc<shardgate_proxy::Proxy>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::hangup()) {
            Ok(mut hup) => {
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        // The outcome is logged by reload itself.
                        let _ = proxy.reload().await;
                    }
                });
            }
            Err(e) => tracing::warn!("cannot watch SIGHUP; reload with POST /api/reload: {e}"),
        }
    }
    #[cfg(not(unix))]
    drop(proxy);
}

async fn wait_for_shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
