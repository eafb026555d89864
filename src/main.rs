//! The `tickgate` binary: configuration and telemetry, then the server; plus
//! the `token` and `generate` helper commands. The only place `anyhow` is used.

use std::{net::IpAddr, path::PathBuf, process::ExitCode};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use tickgate::{Config, config::DEV_JWT_SECRET, gateway::Gateway, rest, spec};

#[derive(Parser)]
#[command(
    name = "tickgate",
    version,
    about = "A spec-first real-time market-data gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

/// Flags of the server (the default command). Each overrides the file and
/// the environment.
#[derive(clap::Args)]
struct RunArgs {
    /// TOML configuration file.
    #[arg(long, short, env = "TICKGATE_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Address to bind.
    #[arg(long)]
    host: Option<IpAddr>,
    /// Port of the v1 listener.
    #[arg(long)]
    port: Option<u16>,
    /// Seed of the simulator (reproducible data).
    #[arg(long)]
    seed: Option<u64>,
    /// Simulator load mode: ticks per second over all symbols.
    #[arg(long)]
    sim_rate: Option<u32>,
    /// Log format: text or json.
    #[arg(long)]
    log_format: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Mint a development JWT (HS256) signed with the configured secret.
    Token {
        /// The user (`sub` claim).
        #[arg(long)]
        sub: String,
        /// A scope to include; repeat for several.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
    /// Measure storage ingest: write N ticks through the batched writer into
    /// the configured store (`DATABASE_URL`, or a SQLite file under
    /// `store.data_dir`) and print one JSON line with ticks/s.
    BenchStore {
        /// Ticks to write.
        #[arg(long, default_value_t = 200_000)]
        rows: usize,
        /// Rows per batch (overrides `store.batch_rows`).
        #[arg(long)]
        batch: Option<usize>,
    },
    /// Load tool: N WebSocket clients against a gateway on loopback, the
    /// loopback limit, idle memory and churn; one JSON line each (see
    /// docs/benchmarks.md).
    #[command(subcommand)]
    Bench(tickgate::bench::BenchCommand),
    /// Regenerate generated/schemas/ and the OpenAPI documents (openapi.yaml,
    /// openapi.rt-orchestrator.yaml, openapi.enhanced.yaml) from the specs and code.
    Generate {
        /// Only check: exit 1 and list the files that are stale.
        #[arg(long)]
        check: bool,
    },
}

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("tickgate: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<ExitCode> {
    let cli = Cli::parse();
    let mut config = Config::load(cli.run.config.as_deref())?;
    match cli.command {
        Some(Command::Token { sub, scopes, ttl }) => {
            if config.auth.public_key_file.is_some() {
                bail!(
                    "auth uses a public key ({}); mint tokens with the matching private key",
                    config.auth.algorithm
                );
            }
            if config.auth.jwt_secret == DEV_JWT_SECRET {
                eprintln!(
                    "note: signed with the development secret; set TICKGATE_JWT_SECRET to match your gateway"
                );
            }
            println!(
                "{}",
                tickgate::auth::mint(&config.auth.jwt_secret, &sub, scopes, ttl)?
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Generate { check }) => generate(check),
        Some(Command::Bench(command)) => {
            // Logs (connect failures at debug) go to stderr, beside the
            // progress lines; stdout holds only the JSON result.
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .init();
            tickgate::bench::main(command)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::BenchStore { rows, batch }) => {
            if let Some(batch) = batch {
                config.store.batch_rows = batch;
            }
            config.store.buffer_rows = config.store.buffer_rows.max(rows);
            config.validate()?;
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(bench_store(&config.store, rows))?;
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let run = cli.run;
            if let Some(host) = run.host {
                config.server.host = host;
            }
            if let Some(port) = run.port {
                config.server.port = port;
            }
            if let Some(seed) = run.seed {
                config.simulator.seed = seed;
            }
            if let Some(rate) = run.sim_rate {
                config.simulator.ticks_per_second = rate;
            }
            if let Some(format) = run.log_format {
                config.log.format = format;
            }
            config.validate()?;
            init_tracing(&config)?;
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(tickgate::run(config, std::env::vars().collect()))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn init_tracing(config: &Config) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log.filter))
        .with_context(|| format!("invalid log filter {:?}", config.log.filter))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match config.log.format.as_str() {
        "json" => builder.json().init(),
        "text" => builder.init(),
        other => bail!("log format {other:?} is not text or json"),
    }
    Ok(())
}

/// Writes `rows` ticks through a writer and reports the rate. The buffer
/// holds every row, so the number measures the database, not the bound.
async fn bench_store(config: &tickgate::config::StoreConfig, rows: usize) -> Result<()> {
    use tickgate::store::{Store, TickRow, Writer, WriterLimits};
    let store = Store::open(config)?;
    let writer = Writer::new(
        store,
        WriterLimits {
            batch_rows: config.batch_rows,
            buffer_rows: config.buffer_rows,
            flush: std::time::Duration::from_millis(config.flush_ms),
            ticks: true,
        },
    );
    writer.ensure_migrated().await?;
    let symbol: tickgate::event::Symbol = format!("BENCH{}", std::process::id()).into();
    let source: std::sync::Arc<str> = "bench".into();
    let start = jiff::Timestamp::now();
    let before = writer.store().count("realtime_market_data").await?;
    let task = tokio::spawn(writer.clone().run(std::time::Duration::from_secs(60)));
    let started = std::time::Instant::now();
    for i in 0..rows {
        let price = 100.0 + (i % 1000) as f64 / 100.0;
        writer.tick(TickRow {
            symbol: symbol.clone(),
            time: start + jiff::SignedDuration::from_micros(i as i64),
            bid: price - 0.01,
            ask: price + 0.01,
            last: price,
            volume: i as i64,
            source: source.clone(),
        });
    }
    writer.close();
    task.await?;
    let seconds = started.elapsed().as_secs_f64();
    let stored = writer.store().count("realtime_market_data").await? - before;
    let stats = writer.stats();
    println!(
        "{}",
        serde_json::json!({
            "store": writer.store().kind(),
            "rows": rows,
            "stored": stored,
            "dropped": stats.dropped("realtime_market_data"),
            "batch_rows": config.batch_rows,
            "batches": stats.batches(),
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "ticks_per_second": (stored as f64 / seconds).round(),
        })
    );
    writer.store().close().await;
    if stored != rows as i64 {
        bail!("{stored} of {rows} rows stored");
    }
    Ok(())
}

/// The files `generate` owns, with their expected contents.
fn generated_files() -> Result<Vec<(PathBuf, String)>> {
    let mut files = Vec::new();
    for (name, schema) in spec::message_schemas() {
        let text = serde_json::to_string_pretty(&schema)? + "\n";
        files.push((
            PathBuf::from(format!("generated/schemas/{name}.json")),
            text,
        ));
    }
    // The document only needs the routes: an in-memory store that is never
    // opened, inside a runtime because sqlx's pool wants one.
    let mut config = Config::default();
    config.store.url = Some("sqlite::memory:".into());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let gateway = runtime.block_on(async { Gateway::new(config) })?;
    files.push((
        PathBuf::from("openapi.yaml"),
        rest::openapi_yaml(gateway.clone()),
    ));
    files.push((
        PathBuf::from("openapi.rt-orchestrator.yaml"),
        tickgate::dialects::rt_orchestrator::openapi_yaml(gateway.clone()),
    ));
    files.push((
        PathBuf::from("openapi.enhanced.yaml"),
        tickgate::dialects::enhanced::openapi_yaml(gateway),
    ));
    Ok(files)
}

fn generate(check: bool) -> Result<ExitCode> {
    let files = generated_files()?;
    let wanted: Vec<&PathBuf> = files.iter().map(|(path, _)| path).collect();
    let mut stale = Vec::new();
    for (path, text) in &files {
        if std::fs::read_to_string(path).ok().as_deref() != Some(text.as_str()) {
            stale.push(path.display().to_string());
        }
    }
    // A schema file of a message that no longer exists is stale too.
    if let Ok(entries) = std::fs::read_dir("generated/schemas") {
        for entry in entries.flatten() {
            let path = entry.path();
            if !wanted.iter().any(|w| w.file_name() == path.file_name()) {
                stale.push(path.display().to_string());
                if !check {
                    std::fs::remove_file(&path)?;
                }
            }
        }
    }
    if check {
        if stale.is_empty() {
            println!("generated files are up to date");
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!("stale generated files (run `cargo run -- generate`):");
        for path in stale {
            eprintln!("  {path}");
        }
        return Ok(ExitCode::FAILURE);
    }
    std::fs::create_dir_all("generated/schemas")?;
    for (path, text) in files {
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("regenerated {} files", stale.len());
    Ok(ExitCode::SUCCESS)
}
