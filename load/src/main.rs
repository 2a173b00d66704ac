//! `cubesat-load`: `run` sends load, `sink` counts what arrives, `ghz-body` writes a request
//! for `ghz --binary-file`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use cubesat_load::body::{self, BodySpec, Protocol, Sidecar};
use cubesat_load::run::{LoadConfig, Stop};
use cubesat_load::sink::Sink;

/// Load tests for cubesat: a fleet of Envoy-like sidecars, and a counting upstream.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send Envoy-shaped span reports to TARGET and print a ghz-like summary.
    Run(RunArgs),
    /// Serve the counting upstream (gRPC Report/Export, HTTP /v1/traces, /api/v2/reports).
    Sink(SinkArgs),
    /// Write one encoded request message for `ghz --binary-file`.
    GhzBody(GhzBodyArgs),
}

#[derive(clap::Args)]
struct Shape {
    /// Protocol (and with it the message and the route).
    #[arg(long, value_enum, default_value = "lightstep-grpc")]
    protocol: Protocol,
    /// Spans per request.
    #[arg(long, default_value_t = 100)]
    spans: usize,
    /// String tags on each span (Envoy's tags in order, then tag.N).
    #[arg(long, default_value_t = 10)]
    tags: usize,
    /// Access token (Lightstep body `auth.access_token`; `lightstep-access-token` header).
    #[arg(long, env = "LIGHTSTEP_ACCESS_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(clap::Args)]
struct RunArgs {
    /// host:port (plaintext), http://host:port or https://host:port (TLS, with --cacert).
    target: String,
    #[command(flatten)]
    shape: Shape,
    /// Distinct sidecars (reporter ids, service.instance.id), one body each, sent in turn.
    #[arg(long, default_value_t = 1)]
    reporters: usize,
    /// Requests in flight at most (workers).
    #[arg(short = 'c', long, default_value_t = 8)]
    concurrency: usize,
    /// HTTP/2 connections shared by the workers (HTTP/1.1 protocols: one per worker).
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Run for this long (default 10s unless --requests is given).
    #[arg(short = 'z', long, value_parser = humantime::parse_duration, conflicts_with = "requests")]
    duration: Option<Duration>,
    /// Send this many requests.
    #[arg(short = 'n', long)]
    requests: Option<u64>,
    /// Open loop: requests per second (latency counted from each request's due time).
    #[arg(long, alias = "rps")]
    rate: Option<f64>,
    /// PEM CA bundle trusted for an https:// target.
    #[arg(long)]
    cacert: Option<PathBuf>,
    /// gzip every body (compressed before the run).
    #[arg(long)]
    gzip: bool,
    /// Per-request timeout.
    #[arg(short = 't', long, value_parser = humantime::parse_duration, default_value = "20s")]
    timeout: Duration,
    /// Summary format.
    #[arg(long, value_enum, default_value = "summary")]
    format: Format,
    /// No progress lines on stderr.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Summary,
    Json,
}

#[derive(clap::Args)]
struct SinkArgs {
    /// Address to listen on (gRPC h2c and HTTP/1.1 on one port).
    #[arg(long, default_value = "127.0.0.1:4317")]
    listen: String,
}

#[derive(clap::Args)]
struct GhzBodyArgs {
    #[command(flatten)]
    shape: Shape,
    /// Which sidecar of the fleet sends it.
    #[arg(long, default_value_t = 0)]
    reporter: u64,
    /// Output file.
    #[arg(short, long)]
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Run(args) => runtime.block_on(run(args)),
        Command::Sink(args) => runtime.block_on(sink(args)),
        Command::GhzBody(args) => ghz_body(args),
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let stop = match (args.requests, args.duration) {
        (Some(n), _) => Stop::Requests(n),
        (None, Some(d)) => Stop::Duration(d),
        (None, None) => Stop::Duration(Duration::from_secs(10)),
    };
    let long = !matches!(stop, Stop::Duration(d) if d < Duration::from_secs(10));
    let config = LoadConfig {
        target: args.target,
        body: BodySpec {
            protocol: args.shape.protocol,
            spans: args.shape.spans,
            tags: args.shape.tags,
            reporters: args.reporters,
            token: args.shape.token,
            gzip: args.gzip,
        },
        concurrency: args.concurrency,
        connections: args.connections,
        stop,
        rate: args.rate,
        ca: args.cacert,
        timeout: args.timeout,
        progress: (!args.quiet && long).then_some(Duration::from_secs(2)),
    };
    let summary = cubesat_load::run::run(config).await?;
    match args.format {
        Format::Summary => print!("{}", summary.text()),
        Format::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
    }
    Ok(())
}

async fn sink(args: SinkArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("--listen {}", args.listen))?;
    let sink = Sink::serve(listener)?;
    println!(
        "cubesat-load sink listening: {} (stats: http://{}/stats)",
        sink.addr, sink.addr
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    println!("{}", serde_json::to_string(&sink.counts.snapshot())?);
    Ok(())
}

fn ghz_body(args: GhzBodyArgs) -> anyhow::Result<()> {
    let spec = BodySpec {
        protocol: args.shape.protocol,
        spans: args.shape.spans,
        tags: args.shape.tags,
        reporters: 1,
        token: args.shape.token,
        gzip: false,
    };
    let message = body::message(&spec, &Sidecar::new(args.reporter));
    std::fs::write(&args.out, &message)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!(
        "wrote {} ({} bytes, {} spans) for {}",
        args.out.display(),
        message.len(),
        spec.spans,
        spec.protocol.path().trim_start_matches('/')
    );
    Ok(())
}
