//! The `cubesat` binary: parse config, init telemetry, bind, run, wait.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use cubesat::Invocation;
use cubesat::config::{Cli, Config};
use cubesat::listen::Listeners;

fn main() -> ExitCode {
    let cli = Cli::parse(); // Exits 2 with a message naming the flag on bad syntax.
    let (mode, flags) = match cubesat::invocation(cli.command, cli.flags) {
        Invocation::Run(mode, flags) => (mode, *flags),
        Invocation::Certs(certs) => return report(write_certs(&certs)),
    };
    let config = match Config::load(mode, flags) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("cubesat: configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    if let Err(error) = cubesat::telemetry::init_logs(&config.log_level) {
        eprintln!("cubesat: configuration error: invalid value for `log-level`: {error}");
        return ExitCode::from(2);
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(serve(config)) {
        // 0, or 3 when spans were dropped at shutdown (see `cubesat::shutdown`).
        Ok(drained) => ExitCode::from(drained.exit_code()),
        // A budget the machine cannot map is a bad `--buffer-bytes`: a configuration error.
        Err(error) if matches!(error.downcast_ref(), Some(cubesat::RunError::Region(_))) => {
            eprintln!("cubesat: configuration error: {error}");
            ExitCode::from(2)
        }
        Err(error) => report(Err(error)),
    }
}

async fn serve(config: Config) -> anyhow::Result<cubesat::shutdown::DrainReport> {
    let metrics = cubesat::install_metrics().context("installing the metrics recorder")?;
    let listeners = Listeners::bind(&config).await?;
    let drained = cubesat::run(config, listeners, metrics, cubesat::shutdown::signal()).await?;
    Ok(drained)
}

fn write_certs(args: &cubesat::config::CertsArgs) -> anyhow::Result<()> {
    let names = ["cacert.pem", "server.pem", "server-key.pem"];
    if args.keep_existing && names.iter().all(|n| args.dir.join(n).exists()) {
        println!("kept the existing certificates in {}", args.dir.display());
        return Ok(());
    }
    let files = cubesat::tls::generate_dev_certs(&args.dir, &args.hosts)?;
    println!(
        "CA certificate (mount as /etc/lightstep/cacert.pem): {}",
        files.ca_cert.display()
    );
    println!(
        "server certificate chain (--tls-cert): {}",
        files.server_cert.display()
    );
    println!(
        "server private key (--tls-key): {}",
        files.server_key.display()
    );
    Ok(())
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cubesat: {error:#}");
            ExitCode::FAILURE
        }
    }
}
