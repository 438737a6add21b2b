//! `wasmprobe test`: replay tapes against the built plugins and compare
//! each run with the expectation file beside its tape.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use wasmprobe::app::Probe;
use wasmprobe::expectation::{self, Expectation, ExpectationError, Observed};
use wasmprobe::exposition::{Exposition, Format};
use wasmprobe::hostcalls::tape::Tape;

use crate::setup::{Prepared, load_config, prepare};
use crate::{Exit, Status};

/// Where `wasmprobe test` looks for tapes when given none.
const TAPES: &str = "tests/*.json";

pub(crate) fn test(
    config_path: &Path,
    tapes: Vec<PathBuf>,
    update: bool,
) -> Result<ExitCode, Exit> {
    let tapes = if tapes.is_empty() {
        find_tapes()?
    } else {
        tapes
    };
    // Which probes the tapes name, so only their plugins are compiled.
    let mut names = BTreeSet::new();
    for tape in &tapes {
        let (_, recording) = Tape::player(tape).map_err(|e| Exit(Status::BadInput, e.into()))?;
        names.insert(recording.probe);
    }
    let mut config = load_config(config_path)?;
    let known: Vec<String> = config.probes.keys().map(ToString::to_string).collect();
    if let Some(missing) = names.iter().find(|n| !known.contains(n)) {
        return Err(Exit(
            Status::BadInput,
            anyhow::anyhow!(
                "a tape replays probe {missing:?}, which {} does not define (known: {})",
                config_path.display(),
                known.join(", ")
            ),
        ));
    }
    config.probes.retain(|k, _| names.contains(k.as_str()));
    // The engine is held to the end: its ticker ends runs at their
    // deadlines.
    let Prepared {
        engine: _engine,
        rt,
        exposition,
        set,
    } = prepare(&config)?;

    let (mut passed, mut failed) = (0, 0);
    for tape in &tapes {
        let (_, recording) = Tape::player(tape).map_err(|e| Exit(Status::BadInput, e.into()))?;
        let Some(probe) = set
            .probes
            .iter()
            .find(|(k, _)| k.as_str() == recording.probe)
            .map(|(_, p)| p.clone())
        else {
            continue;
        };
        let case = Case {
            tape,
            probe: &probe,
            exposition: &exposition,
        };
        let outcome = rt.block_on(case.run(update));
        let head = format!("test {} (probe {})", tape.display(), recording.probe);
        match outcome {
            Outcome::Passed => {
                passed += 1;
                println!("{head} ... ok");
            }
            Outcome::Updated(path) => {
                passed += 1;
                println!("{head} ... updated {}", path.display());
            }
            Outcome::Failed(lines) => {
                failed += 1;
                println!("{head} ... FAILED");
                for line in lines {
                    println!("    {line}");
                }
            }
        }
    }
    println!(
        "\n{} test(s): {passed} passed, {failed} failed",
        passed + failed
    );
    Ok(if failed == 0 {
        Status::Ok.into()
    } else {
        Status::ProbeFailed.into()
    })
}

fn find_tapes() -> Result<Vec<PathBuf>, Exit> {
    let mut tapes: Vec<PathBuf> = glob::glob(TAPES)
        .map_err(|e| Exit(Status::BadInput, e.into()))?
        .filter_map(Result::ok)
        .collect();
    tapes.sort();
    if tapes.is_empty() {
        return Err(Exit(
            Status::BadInput,
            anyhow::anyhow!(
                "no tapes in {TAPES}: record one with `wasmprobe probe --probe NAME --record tests/NAME.json`, or name tapes on the command line"
            ),
        ));
    }
    Ok(tapes)
}

enum Outcome {
    Passed,
    Updated(PathBuf),
    Failed(Vec<String>),
}

/// One tape replayed against its probe.
struct Case<'a> {
    tape: &'a Path,
    probe: &'a Arc<Probe>,
    exposition: &'a Exposition,
}

impl Case<'_> {
    async fn run(&self, update: bool) -> Outcome {
        let first = match self.replay().await {
            Ok(run) => run,
            Err(lines) => return Outcome::Failed(lines),
        };
        let path = expectation::path_for(self.tape);
        if update {
            // A second replay tells which values move from run to run
            // (a duration the plugin measures itself): those get a range.
            let unstable: Vec<_> = match self.replay().await {
                Ok(second) => first
                    .samples
                    .iter()
                    .filter(|s| {
                        !second
                            .samples
                            .iter()
                            .any(|t| t.name == s.name && t.labels == s.labels && t.value == s.value)
                    })
                    .map(|s| (s.name.clone(), s.labels.clone()))
                    .collect(),
                Err(lines) => return Outcome::Failed(lines),
            };
            let previous = match Expectation::load(&path) {
                Ok(e) => Some(e),
                Err(ExpectationError::Missing(_)) => None,
                Err(e) => {
                    eprintln!("replacing an unreadable expectation: {e}");
                    None
                }
            };
            let next = Expectation::from_run(&first, previous.as_ref(), &unstable);
            return match next.save(&path, self.tape) {
                Ok(()) if first.rejected.is_empty() => Outcome::Updated(path),
                Ok(()) => Outcome::Failed(
                    first
                        .rejected
                        .iter()
                        .map(|r| format!("! rejected sample {r}"))
                        .collect(),
                ),
                Err(e) => Outcome::Failed(vec![e.to_string()]),
            };
        }
        match Expectation::load(&path) {
            Ok(expected) => {
                let differences = expected.differences(&first);
                if differences.is_empty() {
                    Outcome::Passed
                } else {
                    Outcome::Failed(differences)
                }
            }
            Err(e) => Outcome::Failed(vec![e.to_string()]),
        }
    }

    /// One replay of the tape; the replay's own problems (a call that
    /// differs from the recording, calls never made) fail the case.
    async fn replay(&self) -> Result<Observed, Vec<String>> {
        let (tape, recording) = Tape::player(self.tape).map_err(|e| vec![e.to_string()])?;
        let tape = Arc::new(tape);
        let target = self
            .probe
            .on_demand_target(Some(&recording.target))
            .map_err(|e| vec![e.to_string()])?;
        let done = self
            .probe
            .run_on_demand(
                self.exposition,
                &target,
                wasmprobe::app::OnDemandRun {
                    tape: Some(tape.clone()),
                    format: Format::Classic,
                    ..Default::default()
                },
            )
            .await;
        let problems = tape.problems();
        if !problems.is_empty() {
            let mut lines: Vec<String> = problems
                .into_iter()
                .map(|p| format!("! replay: {p}"))
                .collect();
            lines.push(format!(
                "  the plugin's calls no longer match the tape: record it again (`wasmprobe probe --probe {} --record {}`)",
                recording.probe,
                self.tape.display()
            ));
            return Err(lines);
        }
        Ok(Observed {
            success: done.record.success,
            message: done.record.message.clone(),
            samples: done.samples,
            rejected: done.rejected_samples,
        })
    }
}
