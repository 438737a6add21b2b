//! blackbox_exporter's `blackbox.yml` to probes.toml.
//!
//! Each module becomes a probe without a schedule, named as the module
//! (renamed when the name is not a valid probe name), on the plugin that
//! is its prober's counterpart: `http` → http-health, `tcp` → tcp, `icmp`
//! → icmp, `dns` → dns, `grpc` → grpc. The module's `timeout` is the
//! probe's; its prober options become the plugin's `config` keys (one file
//! per prober here, each naming the plugin config it writes), and every
//! `tls_config` becomes the probe's `tls` table.
//!
//! An option whose value is the plugin's default is not written. Every key
//! is accounted for: carried over, reported as not carried over (with why),
//! or reported as unknown. blackbox_exporter lets `/probe` reach any target;
//! wasmprobe reaches only what `allow` lists, so the probes get the
//! operator's `--allow` rules or an empty list, and the report says which.

mod credentials;
mod dns;
mod grpc;
mod http;
mod icmp;
mod output;
mod read;
mod tcp;
mod tls;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use yaml_serde::Value;

use self::output::{Probe, Tls, Written};
use self::read::Ctx;
use super::lines::{KeyPath, YamlLines};
use super::report::{Kind, Report};
use super::{ImportError, Imported, Options, scheme_of, validate};
use crate::config::ProbeName;

/// wasmprobe's default run timeout (`[limits] timeout`), what a module
/// without `timeout` gets.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads and imports the blackbox.yml at `path`.
pub fn import_file(path: &Path, options: &Options) -> Result<Imported, ImportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ImportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    import(path, &text, options)
}

/// Imports blackbox.yml `text`, read from `source` (the name the report
/// and the output's header give it).
pub fn import(source: &Path, text: &str, options: &Options) -> Result<Imported, ImportError> {
    let mut value: Value = yaml_serde::from_str(text).map_err(|e| ImportError::Yaml {
        path: source.to_path_buf(),
        source: e,
    })?;
    // Go's YAML decoder applies `<<: *anchor` merges; serde's leaves them
    // as keys.
    value.apply_merge().map_err(|e| ImportError::Merge {
        path: source.to_path_buf(),
        source: e,
    })?;
    let lines = YamlLines::scan(text);
    let shown = source.display().to_string();
    let mut ctx = Ctx::new(&lines, Report::new(shown.clone()));

    let root = KeyPath::root();
    let mut modules = None;
    if value.is_mapping() {
        for (key, path, v) in ctx.entries(&root, &value) {
            if key == "modules" {
                modules = Some((path, v));
            } else {
                ctx.unknown(&path);
            }
        }
    }
    let Some((modules_path, modules)) = modules else {
        return Err(ImportError::NoModules {
            path: source.to_path_buf(),
        });
    };
    let entries = ctx.entries(&modules_path, modules);
    if entries.is_empty() {
        return Err(ImportError::NoModules {
            path: source.to_path_buf(),
        });
    }

    // Valid module names keep theirs; a renamed module must not take one.
    let mut taken: BTreeSet<String> = entries
        .iter()
        .map(|(name, _, _)| name.clone())
        .filter(|name| ProbeName::try_from(name.clone()).is_ok())
        .collect();
    let mut written = Vec::new();
    let mut icmp_sources = Vec::new();
    for (module, path, v) in entries {
        ctx.report.modules += 1;
        let Some(converted) = convert_module(&mut ctx, &path, v) else {
            continue;
        };
        let name = if ProbeName::try_from(module.clone()).is_ok() {
            module.clone()
        } else {
            let name = probe_name(&module, &taken);
            taken.insert(name.clone());
            ctx.push(&path, Kind::Renamed(name.clone()));
            name
        };
        let mut allow = allow_rules(&mut ctx, &path, converted.plugin, options);
        // The proxy is a destination like any other.
        if let Some(proxy) = &converted.section.proxy_url
            && !allow.contains(proxy)
        {
            allow.push(proxy.clone());
        }
        if let Some(source) = &converted.section.icmp_source
            && !icmp_sources.contains(source)
        {
            icmp_sources.push(source.clone());
        }
        let tls = converted.section.tls;
        written.push(Written {
            name,
            module,
            line: ctx.line(&path),
            probe: Probe {
                plugin: converted.plugin.name(),
                timeout: converted.timeout.map(show_duration),
                proxy_url: converted.section.proxy_url,
                allow,
                tls: (!tls.is_empty()).then_some(tls),
                config: converted.section.config,
                secrets: converted.section.secrets,
            },
        });
    }
    ctx.report.probes = written.len();
    if options.allow.is_empty() && !written.is_empty() {
        ctx.report.push(
            None,
            "",
            Kind::Note(
                "every probe has allow = []: /probe refuses every target until you list what each module may reach (--allow RULE, or allow = [...] on each probe)".into(),
            ),
        );
    }

    let toml = output::document(&shown, &options.plugin_dir, &icmp_sources, &written)?;
    for note in validate(&toml, &options.output)? {
        let module = note
            .probe
            .as_ref()
            .and_then(|p| written.iter().find(|w| w.name == *p));
        let what = format!("on this machine: {}", note.message);
        match module {
            Some(w) => ctx.note(&modules_path.key(&w.module), what),
            None => ctx.report.push(None, "", Kind::Note(what)),
        }
    }
    Ok(Imported {
        toml,
        report: ctx.report,
    })
}

/// The `--allow` rules of the schemes `plugin` speaks; when there are
/// rules but none fits, the module's line says so.
fn allow_rules(
    ctx: &mut Ctx<'_>,
    path: &KeyPath,
    plugin: Plugin,
    options: &Options,
) -> Vec<String> {
    let schemes = plugin.schemes();
    let allow: Vec<String> = options
        .allow
        .iter()
        .filter(|rule| schemes.contains(&scheme_of(rule).as_str()))
        .map(ToString::to_string)
        .collect();
    if !options.allow.is_empty() && allow.is_empty() {
        let wanted: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
        ctx.note(
            path,
            format!(
                "no --allow rule is {}: allow = [] refuses every target of this probe",
                wanted.join(" or ")
            ),
        );
    }
    allow
}

/// The plugin a prober becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plugin {
    HttpHealth,
    Tcp,
    Icmp,
    Dns,
    Grpc,
}

impl Plugin {
    fn of(prober: &str) -> Option<Plugin> {
        Some(match prober {
            "http" => Plugin::HttpHealth,
            "tcp" => Plugin::Tcp,
            "icmp" => Plugin::Icmp,
            "dns" => Plugin::Dns,
            "grpc" => Plugin::Grpc,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Plugin::HttpHealth => "http-health",
            Plugin::Tcp => "tcp",
            Plugin::Icmp => "icmp",
            Plugin::Dns => "dns",
            Plugin::Grpc => "grpc",
        }
    }

    /// The allow-list schemes its host calls are checked under.
    fn schemes(self) -> &'static [&'static str] {
        match self {
            Plugin::HttpHealth | Plugin::Grpc => &["http", "https"],
            Plugin::Tcp => &["tcp"],
            Plugin::Icmp => &["icmp"],
            Plugin::Dns => &["dns"],
        }
    }
}

/// What a prober section becomes.
#[derive(Debug, Default)]
struct Section {
    config: toml::Table,
    tls: Tls,
    /// The probe's `secrets`: credentials from files (as blackbox's
    /// `*_file` keys name them) or environment variables.
    secrets: toml::Table,
    /// An ICMP source address, for `[engine] icmp_sources`.
    icmp_source: Option<String>,
    /// The `proxy_url` origin, `http://host:port`.
    proxy_url: Option<String>,
}

struct Converted {
    plugin: Plugin,
    timeout: Option<Duration>,
    section: Section,
}

const PROBERS: [&str; 5] = ["http", "tcp", "icmp", "dns", "grpc"];

/// One module; `None` when it cannot be imported (reported).
fn convert_module(ctx: &mut Ctx<'_>, path: &KeyPath, value: &Value) -> Option<Converted> {
    if !value.is_mapping() {
        ctx.push(
            path,
            Kind::Skipped("a module is a mapping with a `prober`".into()),
        );
        return None;
    }
    let entries = ctx.entries(path, value);
    let Some(prober) = entries
        .iter()
        .find(|(k, _, _)| k == "prober")
        .and_then(|(_, _, v)| read::scalar_text(v))
    else {
        ctx.push(path, Kind::Skipped("it has no `prober`".into()));
        return None;
    };
    let Some(plugin) = Plugin::of(&prober) else {
        ctx.push(
            &path.key("prober"),
            Kind::Skipped(format!(
                "prober {prober:?} is not one of {}",
                PROBERS.join(", ")
            )),
        );
        return None;
    };
    let mut timeout = None;
    let mut section = (path.key(&prober), &Value::Null);
    for (key, p, v) in entries {
        match key.as_str() {
            "prober" => {}
            "timeout" => timeout = module_timeout(ctx, &p, v),
            k if k == prober => section = (p, v),
            k if PROBERS.contains(&k) => ctx.note(
                &p,
                format!("ignored: the module's prober is {prober}, and blackbox_exporter ignores this section too"),
            ),
            _ => ctx.unknown(&p),
        }
    }
    let (p, v) = section;
    let section = match plugin {
        Plugin::HttpHealth => http::convert(ctx, &p, v),
        Plugin::Tcp => tcp::convert(ctx, &p, v),
        Plugin::Icmp => icmp::convert(ctx, &p, v, timeout.unwrap_or(DEFAULT_TIMEOUT)),
        Plugin::Grpc => grpc::convert(ctx, &p, v),
        Plugin::Dns => match dns::convert(ctx, &p, v) {
            Ok(s) => s,
            Err(why) => {
                ctx.push(path, Kind::Skipped(why));
                return None;
            }
        },
    };
    Some(Converted {
        plugin,
        timeout,
        section,
    })
}

/// The module's `timeout`; zero (blackbox_exporter's "use the scrape
/// timeout") is left to wasmprobe's default, which the scrape timeout caps
/// the same way.
fn module_timeout(ctx: &mut Ctx<'_>, path: &KeyPath, value: &Value) -> Option<Duration> {
    let text = ctx.string(path, value)?;
    match prometheus_duration(&text) {
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d),
        None => {
            ctx.not_carried(
                path,
                format!("{text:?} is not a duration (e.g. 5s, 1m30s, 500ms)"),
            );
            None
        }
    }
}

/// A Prometheus duration (`5s`, `1m30s`, `1500ms`, `1d`; `0`), as
/// blackbox_exporter reads `timeout`.
fn prometheus_duration(text: &str) -> Option<Duration> {
    const UNITS: [(&str, u64); 7] = [
        ("ms", 1),
        ("s", 1_000),
        ("m", 60_000),
        ("h", 3_600_000),
        ("d", 86_400_000),
        ("w", 7 * 86_400_000),
        ("y", 365 * 86_400_000),
    ];
    if text == "0" {
        return Some(Duration::ZERO);
    }
    if text.is_empty() {
        return None;
    }
    let mut rest = text;
    let mut millis: u64 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: u64 = rest.get(..digits)?.parse().ok()?;
        rest = rest.get(digits..)?;
        let (unit, per) = UNITS.iter().find(|(u, _)| rest.starts_with(u))?;
        millis = millis.checked_add(n.checked_mul(*per)?)?;
        rest = rest.get(unit.len()..)?;
    }
    Some(Duration::from_millis(millis))
}

/// A duration as probes.toml writes it.
fn show_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// A valid probe name for module `name`, not in `taken`: every character a
/// probe name cannot hold becomes `_`, leading ones that cannot start it
/// are dropped, and `_2`, `_3`, ... keeps it unique.
fn probe_name(name: &str, taken: &BTreeSet<String>) -> String {
    let mapped: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut base = mapped
        .trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string();
    if base.is_empty() {
        base = "module".into();
    }
    // Room for a suffix within the 128 characters.
    base.truncate(120);
    let mut candidate = base.clone();
    let mut n = 2;
    while taken.contains(&candidate) {
        candidate = format!("{base}_{n}");
        n += 1;
    }
    candidate
}

/// `preferred_ip_protocol` as blackbox_exporter reads it: `ip6` (also
/// when empty) or anything else, which it takes as `ip4`.
fn ip_protocol(ctx: &mut Ctx<'_>, path: &KeyPath, value: &Value, config: &mut toml::Table) {
    let Some(text) = ctx.string(path, value) else {
        return;
    };
    if text == "ip6" || text.is_empty() {
        return;
    }
    if text != "ip4" {
        ctx.note(
            path,
            format!("{text:?} written as \"ip4\", as blackbox_exporter reads anything but ip6"),
        );
    }
    config.insert("preferred_ip_protocol".into(), "ip4".into());
}

/// A boolean option written only when it differs from `default`.
fn flag(
    ctx: &mut Ctx<'_>,
    path: &KeyPath,
    value: &Value,
    key: &str,
    default: bool,
    config: &mut toml::Table,
) {
    if let Some(b) = ctx.boolean(path, value)
        && b != default
    {
        config.insert(key.into(), b.into());
    }
}

/// Strings as a TOML array.
fn array(items: Vec<String>) -> toml::Value {
    toml::Value::Array(items.into_iter().map(toml::Value::String).collect())
}

#[cfg(test)]
mod tests;
