//! The `shardgate` binary: loads the config, starts the proxy, runs until
//! interrupted.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use shardgate_rules::config::Config;
use tracing_subscriber::EnvFilter;

/// A sharding proxy for MySQL/MariaDB.
#[derive(Debug, Parser)]
#[command(name = "shardgate", version)]
struct Args {
    /// The configuration file (TOML), e.g. examples/wework.toml.
    #[arg(short, long)]
    config: PathBuf,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let text = match std::fs::read_to_string(&args.config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot read {}: {e}", args.config.display());
            return ExitCode::from(2);
        }
    };
    let config = match Config::from_toml_str(&text) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("invalid config {}: {e}", args.config.display());
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let database = config.server.database.clone();
        let proxy = match shardgate_proxy::start(config).await {
            Ok(p) => p,
            Err(e) => {
                eprintln!("cannot start: {e}");
                return ExitCode::FAILURE;
            }
        };
        let addr = proxy.mysql_addr();
        println!(
            "ShardGate is serving MySQL clients on {addr} (admin HTTP on {}); connect with: mysql -h{} -P{} -uroot {database}",
            proxy.admin_addr(),
            addr.ip(),
            addr.port()
        );
        wait_for_shutdown().await;
        proxy.stop();
        ExitCode::SUCCESS
    })
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
