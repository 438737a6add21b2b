//! The `wasmprobe` command: the only place errors become exit codes.
//!
//! Exit codes: 0 success; 1 the probe run by `wasmprobe probe` failed, or
//! a `wasmprobe test` did, or `wasmprobe import --check` found options not
//! carried over;
//! 2 the config (or a plugin it names) is invalid; 3 the engine could not
//! start (listener, runtime, cache).

mod check;
mod import;
mod new;
mod probe;
mod registry;
mod run;
mod setup;
mod test;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use wasmprobe::shard::Shard;

use crate::probe::TapeMode;

/// A probe engine whose probes are sandboxed WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "wasmprobe", version, about)]
struct Cli {
    /// Log filter, e.g. `info` or `wasmprobe=debug` (env: WASMPROBE_LOG).
    /// Defaults to `info` for `run`, `warn` for the other commands.
    /// `--log.level` is accepted too, as the Prometheus exporters spell it.
    #[arg(long, global = true, env = "WASMPROBE_LOG", alias = "log.level")]
    log: Option<String>,
    /// How log lines are written: `text` (for people), `logfmt` or `json`
    /// (for log pipelines; `--log.format` too, as the Prometheus
    /// exporters spell it).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = LogFormat::Text,
        env = "WASMPROBE_LOG_FORMAT",
        alias = "log.format"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every scheduled probe and serve /metrics.
    Run(RunArgs),
    /// Validate a config and its plugins without running any probe.
    Check {
        #[arg(long, short, default_value = "probes.toml", alias = "config.file")]
        config: PathBuf,
    },
    /// Check a config and fill the compile cache with its plugins, as
    /// `wasmtime compile` does, so that the next start loads them
    /// compiled (an image runs this at build time). A cache made by
    /// another wasmtime or for another CPU is never used: it is rebuilt.
    Compile {
        #[arg(long, short, default_value = "probes.toml", alias = "config.file")]
        config: PathBuf,
    },
    /// Compile the plugin read from standard input into the compile cache
    /// at `--cache`: `run` starts this for its background optimizing
    /// compiles, so that their memory ends with the child.
    #[command(name = wasmprobe::runtime::compiler_process::SUBCOMMAND, hide = true)]
    CompilePlugin {
        /// The engine's process id: the child ends with it.
        #[arg(long)]
        parent: u32,
        #[arg(long)]
        cache: PathBuf,
        /// The engine's pool: the settings the code is compiled for.
        #[arg(long)]
        instances: u32,
        #[arg(long)]
        max_memory: u64,
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
    /// Replay tapes against the built plugins and compare each run with
    /// the expectation file beside its tape (`tests/x.json` →
    /// `tests/x.expect.toml`). Exits 1 when a test fails.
    Test {
        #[arg(long, short, default_value = "probes.toml", alias = "config.file")]
        config: PathBuf,
        /// Write each expectation file from its run instead of comparing
        /// (ranges the run still meets are kept).
        #[arg(long)]
        update: bool,
        /// Tapes to replay (default: tests/*.json).
        tapes: Vec<PathBuf>,
    },
    /// Push a plugin (.wasm) or a probe package (.tar.gz) to an OCI
    /// registry; prints the reference to pin (`...@sha256:...`).
    Push {
        /// The plugin or package archive.
        file: PathBuf,
        /// Where to: `registry[:port]/name:tag`.
        reference: String,
        /// A config whose `[registries]` holds the credentials (default:
        /// ./probes.toml when present; else WASMPROBE_REGISTRY_USERNAME
        /// and WASMPROBE_REGISTRY_PASSWORD).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Pull a plugin or package into the cache, verified; prints the
    /// pinned reference to write in probes.toml.
    Pull {
        /// `registry[:port]/name:tag`, or pinned `...@sha256:...`.
        reference: String,
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Also copy the verified content to FILE.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        /// The reference is a probe package, not a plugin.
        #[arg(long)]
        package: bool,
    },
    /// Create something new from a template.
    #[command(subcommand)]
    New(NewCommand),
    /// Convert another prober's config into probes.toml.
    Import {
        #[command(subcommand)]
        from: ImportCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ImportCommand {
    /// A blackbox_exporter blackbox.yml: each module becomes a probe run
    /// through /probe. Prints probes.toml, and on stderr a report of every
    /// option not carried over, with its line.
    Blackbox {
        /// The blackbox.yml.
        file: PathBuf,
        /// Only print the report (on stdout); exit 1 when something is not
        /// carried over.
        #[arg(long, conflicts_with = "output")]
        check: bool,
        /// An allow-list rule (`scheme://host[:port]`) for the probes whose
        /// plugin speaks its scheme; repeatable. Without any, every probe
        /// gets `allow = []` and /probe refuses every target.
        #[arg(long, value_name = "RULE")]
        allow: Vec<String>,
        /// Write the probes.toml to FILE instead of stdout.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        /// The plugin directory the probes.toml names.
        #[arg(long, value_name = "DIR", default_value = wasmprobe::import::DEFAULT_PLUGIN_DIR)]
        plugin_dir: PathBuf,
    },
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
        /// defaults to the one this binary was built from, or the copy it
        /// carries when that checkout is not here.
        #[arg(long, conflicts_with = "carry_sdk")]
        sdk: Option<PathBuf>,
        /// Write the SDK this binary carries into the plugin's `vendor/`
        /// folder, so the plugin builds anywhere (a Rust plugin only).
        #[arg(long)]
        carry_sdk: bool,
    },
}

#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// The probes file (`--config.file` too, as blackbox_exporter spells it).
    #[arg(long, short, default_value = "probes.toml", alias = "config.file")]
    config: PathBuf,
    /// Listen address, overriding `server.listen` (`--web.listen-address`
    /// too, as the Prometheus exporters spell it).
    #[arg(long, alias = "web.listen-address")]
    listen: Option<SocketAddr>,
    /// Longest wait for runs in flight at shutdown.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    drain: Duration,
    /// Also start the demo simulators on loopback: a treaty partner on
    /// 127.0.0.1:9471, an anchoring ledger on 127.0.0.1:9472 (its token:
    /// WASMPROBE_DEMO_LEDGER_TOKEN, default `demo-ledger-token`) and three
    /// replicas of a field service on 127.0.0.1:9473-9475, one drifting.
    #[arg(long)]
    demo: bool,
    /// Web security: TLS, client certificates and basic auth for the
    /// endpoint: Prometheus exporter-toolkit's web config, as YAML
    /// (`.yml`, `.yaml`) or the same keys in TOML. Reloaded on SIGHUP.
    /// `--web.config.file` too, as the Prometheus exporters spell it.
    #[arg(
        long,
        value_name = "FILE",
        env = "WASMPROBE_WEB_CONFIG",
        alias = "web.config.file"
    )]
    web_config: Option<PathBuf>,
    /// Run only this replica's share of the scheduled probes: INDEX/COUNT
    /// (0-based), or ordinal/COUNT to take INDEX from the host name's
    /// trailing number (StatefulSet pods). Probes are assigned by
    /// rendezvous hashing of their names.
    #[arg(long, value_name = "INDEX/COUNT", env = "WASMPROBE_SHARD")]
    shard: Option<Shard>,
}

/// The shape of log lines on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Logfmt,
    Json,
}

fn init_logging(filter: EnvFilter, format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(false),
            )
            .init(),
        LogFormat::Logfmt => registry
            .with(
                tracing_logfmt::builder()
                    .layer()
                    .with_writer(std::io::stderr),
            )
            .init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .init(),
    }
}

/// How the process ends; scripts and CI rely on these numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok = 0,
    /// `probe`: the probe failed, or a replay did not match its recording;
    /// `test`: a test failed; `import --check`: something was not carried
    /// over.
    ProbeFailed = 1,
    /// The input is wrong: config, plugin, arguments, recording.
    BadInput = 2,
    /// The environment is: a port, a thread, a cache directory.
    Environment = 3,
}

impl From<Status> for ExitCode {
    fn from(status: Status) -> ExitCode {
        ExitCode::from(status as u8)
    }
}

/// A failure with its exit status.
struct Exit(Status, anyhow::Error);

fn exit(status: Status) -> impl FnOnce(anyhow::Error) -> Exit {
    move |e| Exit(status, e)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default = match cli.command {
        Command::Run(_) => "info",
        // The plugin's own log lines are what an author runs `probe` for.
        Command::Probe { .. } => "warn,wasmprobe::hostcalls::log=info,wasmprobe::progress=info",
        // Progress lines while a large plugin compiles the first time.
        _ => "warn,wasmprobe::progress=info",
    };
    let filter = EnvFilter::try_new(cli.log.as_deref().unwrap_or(default))
        .unwrap_or_else(|_| EnvFilter::new(default));
    init_logging(filter, cli.log_format);
    let result = match cli.command {
        Command::Run(args) => run::run(&args),
        Command::Check { config } => check::check(&config, false),
        Command::Compile { config } => check::check(&config, true),
        Command::CompilePlugin {
            parent,
            cache,
            instances,
            max_memory,
        } => compile_plugin(parent, &cache, instances, max_memory),
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
            probe::probe_once(&config, &probe, target.as_deref(), openmetrics, tape)
        }
        Command::Test {
            config,
            update,
            tapes,
        } => test::test(&config, tapes, update),
        Command::Push {
            file,
            reference,
            config,
        } => registry::push(&file, &reference, config.as_deref()),
        Command::Pull {
            reference,
            config,
            output,
            package,
        } => registry::pull(&reference, config.as_deref(), output.as_deref(), package),
        Command::New(NewCommand::Plugin {
            name,
            lang,
            dir,
            sdk,
            carry_sdk,
        }) => new::new_plugin(&name, lang, dir, sdk, carry_sdk),
        Command::Import {
            from:
                ImportCommand::Blackbox {
                    file,
                    check,
                    allow,
                    output,
                    plugin_dir,
                },
        } => import::blackbox(&file, check, &allow, output.as_deref(), &plugin_dir),
    };
    match result {
        Ok(code) => code,
        Err(Exit(status, e)) => {
            eprintln!("wasmprobe: {}", describe(&e));
            status.into()
        }
    }
}

/// `compile-plugin`: the engine's background compile, confined first.
fn compile_plugin(
    parent: u32,
    cache: &std::path::Path,
    instances: u32,
    max_memory: u64,
) -> Result<ExitCode, Exit> {
    use wasmprobe::runtime::compiler_process::{confine_child, serve};
    let pool = wasmprobe::runtime::engine::PoolSize {
        instances,
        max_memory,
    };
    confine_child(parent)
        .and_then(|()| serve(pool, cache, std::io::stdin().lock()))
        .map(|()| ExitCode::SUCCESS)
        .map_err(|e| {
            // The engine tells a cache it could not write from a compile
            // that failed by this status.
            let status = if e.is_not_stored() {
                Status::Environment
            } else {
                Status::BadInput
            };
            Exit(status, e.into())
        })
}

/// An error and its causes on one line, each cause said once: many of the
/// library's messages already end with their cause's text.
fn describe(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let said = cause.to_string();
        if text.is_empty() {
            text = said;
        } else if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The engine reads this status as "compiled, not stored".
    #[test]
    fn compile_plugin_says_not_stored_with_the_status_the_engine_expects() {
        assert_eq!(
            Status::Environment as i32,
            wasmprobe::runtime::compiler_process::NOT_STORED_STATUS
        );
    }

    /// An operator's blackbox_exporter flags keep working.
    #[test]
    fn blackbox_style_flags_are_accepted() {
        let cli = Cli::try_parse_from([
            "wasmprobe",
            "--log.level=debug",
            "run",
            "--config.file=blackbox-probes.toml",
            "--web.listen-address=127.0.0.1:9115",
        ]);
        let Ok(cli) = cli else {
            panic!("{cli:?}");
        };
        assert_eq!(cli.log.as_deref(), Some("debug"));
        let Command::Run(run) = cli.command else {
            panic!("not run");
        };
        assert_eq!(run.config, PathBuf::from("blackbox-probes.toml"));
        assert_eq!(run.listen.map(|a| a.port()), Some(9115));
    }
}
