//! The `wasmprobe` command: the only place errors become exit codes.
//!
//! Exit codes: 0 success; 1 the probe run by `wasmprobe probe` failed;
//! 2 the config (or a plugin it names) is invalid; 3 the engine could not
//! start (listener, runtime, cache).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

use wasmprobe::app::{self, App};
use wasmprobe::config::{self, Config, ConfigError, Diagnostics};
use wasmprobe::exposition::{Exposition, Format};
use wasmprobe::hostcalls::icmp::IcmpService;
use wasmprobe::hostcalls::tape::Tape;
use wasmprobe::reload::Reloader;
use wasmprobe::runtime::WasmEngine;
use wasmprobe::server;
use wasmprobe::shard::Shard;

/// A probe engine whose probes are sandboxed WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "wasmprobe", version, about)]
struct Cli {
    /// Log filter, e.g. `info` or `wasmprobe=debug` (env: WASMPROBE_LOG).
    /// Defaults to `info` for `run`, `warn` for the other commands.
    #[arg(long, global = true, env = "WASMPROBE_LOG")]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every scheduled probe and serve /metrics.
    Run(RunArgs),
    /// Validate a config and its plugins without running any probe.
    Check {
        #[arg(long, short, default_value = "probes.toml")]
        config: PathBuf,
    },
    /// Run one probe once and print its metrics.
    Probe {
        #[arg(long, short, default_value = "probes.toml")]
        config: PathBuf,
        /// The probe to run.
        #[arg(long)]
        probe: String,
        /// Target instead of the configured one (must be allowed).
        #[arg(long)]
        target: Option<String>,
        /// Print OpenMetrics instead of the classic text format.
        #[arg(long)]
        openmetrics: bool,
        /// Store the run's network calls (HTTP, ICMP) and their answers in
        /// FILE (JSON; secrets the run read are written as `[redacted]`).
        #[arg(long, value_name = "FILE", conflicts_with = "replay")]
        record: Option<PathBuf>,
        /// Answer the run's network calls from FILE instead of the network;
        /// fails when the plugin's calls differ from the recording.
        #[arg(long, value_name = "FILE")]
        replay: Option<PathBuf>,
    },
    /// Create something new from a template.
    #[command(subcommand)]
    New(NewCommand),
}

#[derive(Debug, Subcommand)]
enum NewCommand {
    /// A plugin that builds to a .wasm with one command: a Rust crate
    /// (`cargo build --release --target wasm32-wasip2`), or a Python or
    /// JavaScript file with its `./build.sh`.
    Plugin {
        /// The plugin's name (lowercase letters, digits, `-`, `_`).
        name: String,
        /// The language to write it in.
        #[arg(long, value_enum, default_value_t)]
        lang: wasmprobe::scaffold::Lang,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The wasmprobe SDK (`plugins/sdk` of a wasmprobe checkout);
        /// defaults to the one this binary was built from.
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The probes file.
    #[arg(long, short, default_value = "probes.toml")]
    config: PathBuf,
    /// Listen address, overriding `server.listen`.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Longest wait for runs in flight at shutdown.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    drain: Duration,
    /// Also start the demo simulators on loopback: a treaty partner on
    /// 127.0.0.1:9471 and an anchoring ledger on 127.0.0.1:9472 (its
    /// token: WASMPROBE_DEMO_LEDGER_TOKEN, default `demo-ledger-token`).
    #[arg(long)]
    demo: bool,
    /// Web security: TLS, client certificates and basic auth for the
    /// endpoint (TOML, like Prometheus exporter-toolkit's web config).
    /// Reloaded on SIGHUP.
    #[arg(long, value_name = "FILE", env = "WASMPROBE_WEB_CONFIG")]
    web_config: Option<PathBuf>,
    /// Run only this replica's share of the scheduled probes: INDEX/COUNT
    /// (0-based), or ordinal/COUNT to take INDEX from the host name's
    /// trailing number (StatefulSet pods). Probes are assigned by
    /// rendezvous hashing of their names.
    #[arg(long, value_name = "INDEX/COUNT", env = "WASMPROBE_SHARD")]
    shard: Option<Shard>,
}

/// A failure with its exit code.
struct Exit(u8, anyhow::Error);

fn exit(code: u8) -> impl FnOnce(anyhow::Error) -> Exit {
    move |e| Exit(code, e)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default = match cli.command {
        Command::Run(_) => "info",
        _ => "warn",
    };
    let filter = EnvFilter::try_new(cli.log.as_deref().unwrap_or(default))
        .unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let result = match cli.command {
        Command::Run(args) => run(&args),
        Command::Check { config } => check(&config),
        Command::Probe {
            config,
            probe,
            target,
            openmetrics,
            record,
            replay,
        } => {
            let tape = match (record, replay) {
                (Some(path), _) => Some(TapeMode::Record(path)),
                (None, Some(path)) => Some(TapeMode::Replay(path)),
                (None, None) => None,
            };
            probe_once(&config, &probe, target.as_deref(), openmetrics, tape)
        }
        Command::New(NewCommand::Plugin {
            name,
            lang,
            dir,
            sdk,
        }) => new_plugin(&name, lang, dir, sdk),
    };
    match result {
        Ok(code) => code,
        Err(Exit(code, e)) => {
            eprintln!("wasmprobe: {e:#}");
            ExitCode::from(code)
        }
    }
}

fn load_config(path: &std::path::Path) -> Result<Config, Exit> {
    config::load(path).map_err(|e| match e {
        ConfigError::Invalid(d) => Exit(2, anyhow::Error::new(d)),
        other => Exit(2, anyhow::Error::new(other)),
    })
}

fn engine_for(config: &Config) -> Result<Arc<WasmEngine>, Exit> {
    let cache = match &config.engine.cache_dir {
        Some(d) => Some(
            std::path::absolute(d)
                .context("cannot resolve cache directory")
                .map_err(exit(3))?,
        ),
        None => None,
    };
    let engine =
        WasmEngine::new(app::pool_size(config), cache.as_deref()).map_err(|e| Exit(3, e.into()))?;
    Ok(Arc::new(engine))
}

/// Finds the ICMP sockets this process may open, and says so.
fn icmp_service(exposition: &Exposition) -> Arc<IcmpService> {
    let icmp = IcmpService::detect();
    tracing::info!(
        ipv4 = icmp.v4.as_str(),
        ipv6 = icmp.v6.as_str(),
        "ICMP sockets"
    );
    exposition.global.icmp_sockets_detected(icmp.v4, icmp.v6);
    Arc::new(icmp)
}

fn probe_runtime(threads: usize) -> Result<tokio::runtime::Runtime, Exit> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("wasmprobe-probe")
        .enable_all()
        .build()
        .context("cannot start the probe runtime")
        .map_err(exit(3))
}

/// Starts the demo simulators, clearly labelled in the log.
async fn start_demo() -> Result<(), Exit> {
    use wasmprobe::demo;
    let token =
        std::env::var("WASMPROBE_DEMO_LEDGER_TOKEN").unwrap_or_else(|_| "demo-ledger-token".into());
    let partner_addr = SocketAddr::from(([127, 0, 0, 1], 9471));
    let ledger_addr = SocketAddr::from(([127, 0, 0, 1], 9472));
    let partner = demo::bind(partner_addr)
        .await
        .with_context(|| format!("demo partner cannot listen on {partner_addr}"))
        .map_err(exit(3))?;
    let ledger = demo::bind(ledger_addr)
        .await
        .with_context(|| format!("demo ledger cannot listen on {ledger_addr}"))
        .map_err(exit(3))?;
    let partner_config = demo::partner::PartnerConfig::default();
    tracing::info!(
        addr = %partner_addr,
        fill_rate = partner_config.fill_rate,
        latency_ms = partner_config.latency.as_secs_f64() * 1000.0,
        bad_signature_share = partner_config.bad_signature_share,
        public_key = %partner_config.public_key(),
        "DEMO simulator: treaty partner (not a real service)"
    );
    tracing::info!(addr = %ledger_addr, "DEMO simulator: anchoring ledger (not a real service)");
    tokio::spawn(demo::serve(partner, demo::partner::router(partner_config)));
    tokio::spawn(demo::serve(
        ledger,
        demo::ledger::router(demo::ledger::LedgerConfig {
            token,
            failure_share: 0.1,
        }),
    ));
    Ok(())
}

fn run(args: &RunArgs) -> Result<ExitCode, Exit> {
    let RunArgs {
        config: path,
        listen,
        drain,
        demo,
        web_config,
        shard,
    } = args;
    let (listen, drain, demo, shard) = (*listen, *drain, *demo, *shard);
    let started = Instant::now();
    let mut config = load_config(path)?;
    if let Some(shard) = shard {
        let all = config.probes.len();
        config.keep_shard(shard);
        tracing::info!(
            shard = %shard,
            kept = config.probes.len(),
            of = all,
            "running this shard's probes"
        );
    }
    let web = match web_config {
        Some(p) => Some(Arc::new(load_web_config(p)?)),
        None => None,
    };
    if let Some(l) = listen {
        config.server.listen = l;
    }
    let engine = engine_for(&config)?;
    let probe_rt = probe_runtime(config.engine.worker_threads)?;
    let exposition = Arc::new(Exposition::new());
    if let Some(shard) = shard {
        exposition.global.shard_assigned(shard.to_string());
    }
    let icmp = icmp_service(&exposition);
    // Listen for SIGTERM before compiling plugins: as PID 1 in a container
    // an unhandled SIGTERM would be ignored during a long first compile.
    let mut stop_signal = probe_rt.block_on(async { StopSignal::new() });
    let prepared = probe_rt.block_on(async {
        tokio::select! {
            set = app::prepare(&config, &engine, &icmp, &exposition, None) => Some(set),
            _ = stop_signal.recv() => None,
        }
    });
    let Some(set) = prepared else {
        tracing::info!("stopped while starting");
        return Ok(ExitCode::SUCCESS);
    };
    let set = set.map_err(|d| Exit(2, anyhow::Error::new(d)))?;
    let app = App::new(
        &config,
        engine,
        exposition.clone(),
        probe_rt.handle().clone(),
    );
    let probes = set.probes.len();

    let server_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the server runtime")
        .map_err(exit(3))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    server_rt.block_on(async {
        if demo {
            start_demo().await?;
        }
        let max_connections = config.server.max_connections;
        let listener = server::bind(config.server.listen)
            .await
            .map_err(|e| Exit(3, e.into()))?;
        let addr = listener
            .local_addr()
            .context("cannot read listen address")
            .map_err(exit(3))?;
        let reloader = Reloader::start(
            app.clone(),
            icmp.clone(),
            path.to_path_buf(),
            listen,
            shard,
            // Moved, not cloned: with 100,000 probes every copy of the
            // config costs hundreds of MiB.
            config,
            set,
        );
        let _watcher = reloader.watch();
        #[cfg(unix)]
        {
            let reloader = reloader.clone();
            let web = web.clone();
            if let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            {
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        let _ = reloader.reload("sighup").await;
                        if let Some(web) = &web {
                            reload_web_config(web.clone()).await;
                        }
                    }
                });
            }
        }
        app.ready.store(true, Ordering::Relaxed);
        tracing::info!(
            addr = %addr,
            probes,
            startup_ms = started.elapsed().as_millis() as u64,
            "listening"
        );
        let serve = tokio::spawn(server::serve(
            listener,
            server::router(app.clone(), Some(reloader.clone()), web.clone()),
            max_connections,
            stop_rx.clone(),
            web.clone(),
        ));
        stop_signal.recv().await;
        // Readiness goes false first and the endpoint keeps serving while
        // runs drain, so load balancers and Prometheus see the shutdown.
        app.ready.store(false, Ordering::Relaxed);
        reloader.stop().await;
        let in_flight = || app.exposition.global.runs_in_flight();
        tracing::info!(
            in_flight = in_flight(),
            drain_ms = drain.as_millis() as u64,
            "shutting down: scheduling stopped, draining runs"
        );
        let drain_started = Instant::now();
        let deadline = drain_started + drain;
        while in_flight() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = in_flight();
        if left > 0 {
            tracing::warn!(
                cancelled = left,
                "drain time over; cancelling runs still in flight"
            );
        } else {
            tracing::info!(
                drained_ms = drain_started.elapsed().as_millis() as u64,
                "runs drained"
            );
        }
        let _ = stop_tx.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(2), serve).await;
        Ok::<_, Exit>(())
    })?;
    probe_rt.shutdown_timeout(Duration::from_secs(1));
    Ok(ExitCode::SUCCESS)
}

/// Loads `--web-config`; a broken one stops the start (exit 2) with the
/// file and the problem named.
fn load_web_config(path: &std::path::Path) -> Result<server::WebState, Exit> {
    let web = server::WebState::load(path).map_err(|e| Exit(2, e.into()))?;
    let current = web.current();
    tracing::info!(
        path = %path.display(),
        tls = current.tls().is_some(),
        basic_auth_users = current.basic_auth_users(),
        "web config loaded"
    );
    Ok(web)
}

/// Reloads the web config off the server's thread (it reads files and
/// computes a bcrypt hash); on any error the running one stays.
async fn reload_web_config(web: Arc<server::WebState>) {
    let path = web.path().display().to_string();
    match tokio::task::spawn_blocking(move || web.reload()).await {
        Ok(Ok(())) => tracing::info!(path, "web config reloaded"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "web config reload refused; the running one stays")
        }
        Err(e) => {
            tracing::warn!(path, error = %e, "web config reload failed; the running one stays")
        }
    }
}

/// SIGTERM or Ctrl-C, registered once at start.
struct StopSignal {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl StopSignal {
    /// Must run inside a runtime.
    fn new() -> StopSignal {
        StopSignal {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok(),
        }
    }

    async fn recv(&mut self) {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        if let Some(term) = &mut self.term {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = ctrl_c.await;
    }
}

fn check(path: &std::path::Path) -> Result<ExitCode, Exit> {
    let (config, mut problems) = config::load_partial(path).map_err(|e| Exit(2, e.into()))?;
    let engine = engine_for(&config)?;
    let rt = probe_runtime(1)?;
    let exposition = Exposition::new();
    let icmp = icmp_service(&exposition);
    let prepared = rt.block_on(app::prepare(&config, &engine, &icmp, &exposition, None));
    for package in &config.packages {
        if let Some(refused) = &package.refused {
            problems.extend(refused.0.iter().cloned());
        }
    }
    let set = match prepared {
        Ok(set) if problems.is_empty() => set,
        Ok(_) => return Err(Exit(2, Diagnostics(problems).into())),
        Err(more) => {
            problems.extend(more.0);
            problems.sort_by_key(|d| (d.location.line, d.location.column));
            return Err(Exit(2, Diagnostics(problems).into()));
        }
    };
    println!(
        "{}: ok ({} probes, {} plugins, {} packages)",
        path.display(),
        set.probes.len(),
        set.plugins.len(),
        config.packages.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn new_plugin(
    name: &str,
    lang: wasmprobe::scaffold::Lang,
    dir: Option<PathBuf>,
    sdk: Option<PathBuf>,
) -> Result<ExitCode, Exit> {
    use wasmprobe::scaffold::Lang;
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    let sdk = sdk.unwrap_or_else(wasmprobe::scaffold::default_sdk);
    let files =
        wasmprobe::scaffold::new_plugin(name, lang, &dir, &sdk).map_err(|e| Exit(2, e.into()))?;
    for f in &files {
        println!("created {}", f.display());
    }
    let dir = dir.display();
    match lang {
        Lang::Rust => {
            let crate_name = name.replace('-', "_");
            println!(
                "\nnext:\n  cd {dir}\n  cargo build --release --target wasm32-wasip2\n  cp target/wasm32-wasip2/release/{crate_name}.wasm <a plugin dir>/{name}.wasm"
            );
        }
        Lang::Python | Lang::Js => println!(
            "\nnext:\n  cd {dir}\n  ./build.sh\n  cp {name}.wasm <a plugin dir>/{name}.wasm"
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `wasmprobe probe --record` / `--replay`.
enum TapeMode {
    Record(PathBuf),
    Replay(PathBuf),
}

fn probe_once(
    path: &std::path::Path,
    name: &str,
    target: Option<&str>,
    openmetrics: bool,
    tape_mode: Option<TapeMode>,
) -> Result<ExitCode, Exit> {
    let (tape, recorded_target) = match &tape_mode {
        None => (None, None),
        Some(TapeMode::Record(_)) => (Some(Arc::new(Tape::recorder())), None),
        Some(TapeMode::Replay(file)) => {
            let (tape, recording) = Tape::player(file).map_err(|e| Exit(2, e.into()))?;
            if recording.probe != name {
                tracing::warn!(
                    recorded = recording.probe,
                    probe = name,
                    "replaying a recording made with another probe"
                );
            }
            (Some(Arc::new(tape)), Some(recording.target))
        }
    };
    let target = target.or(recorded_target.as_deref());
    let mut config = load_config(path)?;
    let known: Vec<String> = config.probes.keys().map(ToString::to_string).collect();
    config.probes.retain(|k, _| k.as_str() == name);
    if config.probes.is_empty() {
        return Err(Exit(
            2,
            anyhow::anyhow!(
                "no probe {name:?} in {} (known: {})",
                path.display(),
                known.join(", ")
            ),
        ));
    }
    let engine = engine_for(&config)?;
    let rt = probe_runtime(1)?;
    let exposition = Exposition::new();
    let icmp = icmp_service(&exposition);
    let set = rt
        .block_on(app::prepare(&config, &engine, &icmp, &exposition, None))
        .map_err(|d| Exit(2, anyhow::Error::new(d)))?;
    let probe = set
        .probes
        .values()
        .next()
        .cloned()
        .context("probe was not prepared")
        .map_err(exit(2))?;
    let target = match target.or(probe.config.target.as_deref()) {
        Some(t) => t.to_string(),
        None => {
            return Err(Exit(
                2,
                anyhow::anyhow!("probe {name:?} has no target; pass --target"),
            ));
        }
    };
    probe
        .config
        .allow
        .check_target(&target)
        .map_err(|e| Exit(2, anyhow::anyhow!("probe {name:?}: {e}")))?;
    let mut record = rt.block_on(probe.run_taped(&engine, &target, false, tape.clone()));
    let mut tape_problems = Vec::new();
    match (&tape_mode, &tape) {
        (Some(TapeMode::Record(file)), Some(tape)) => {
            let n = tape
                .save(file, name, &target)
                .map_err(|e| Exit(3, e.into()))?;
            eprintln!("recorded {n} call(s) to {}", file.display());
        }
        (Some(TapeMode::Replay(file)), Some(tape)) => {
            tape_problems = tape.problems();
            for p in &tape_problems {
                eprintln!("replay of {}: {p}", file.display());
            }
        }
        _ => {}
    }
    let staged = record.staged.take();
    let format = if openmetrics {
        Format::OpenMetrics
    } else {
        Format::Classic
    };
    {
        use std::io::Write;
        let text =
            exposition.encode_single(probe.slot.host_labels(), &record, staged.as_ref(), format);
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
    let rejected = staged.as_ref().map_or(0, |s| s.rejected_total());
    eprintln!(
        "probe {name}: {}{} in {:.1} ms{}{}",
        record.result.as_str(),
        record
            .trap
            .map(|t| format!(" ({})", t.as_str()))
            .unwrap_or_default(),
        record.duration.as_secs_f64() * 1000.0,
        if rejected > 0 {
            format!(", {rejected} samples rejected")
        } else {
            String::new()
        },
        record.message.map(|m| format!(": {m}")).unwrap_or_default(),
    );
    Ok(if record.success && tape_problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
