//! `wasmprobe import blackbox`: a blackbox.yml to probes.toml. The
//! conversion is the library's (`wasmprobe::import`); this file decides
//! where its two outputs go and what the exit status says.
//!
//! Without `--check`: the probes.toml on stdout (or `--output`), the report
//! on stderr, exit 0 (what was not carried over is in the report; the file
//! is still written, since the operator edits from there). With `--check`:
//! only the report, on stdout, and exit 1 when anything was not carried
//! over, so a script can gate a migration on it. A file that cannot be read
//! or parsed, or a bad `--allow` rule, is exit 2.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use wasmprobe::import::{Options, blackbox};

use crate::{Exit, Status, exit};

pub(crate) fn blackbox(
    file: &Path,
    check: bool,
    allow: &[String],
    output: Option<&Path>,
    plugin_dir: &Path,
) -> Result<ExitCode, Exit> {
    // Relative paths in the output are checked from where it will be.
    let target = output.map_or_else(|| PathBuf::from("probes.toml"), Path::to_path_buf);
    let options =
        Options::new(allow, plugin_dir, target).map_err(|e| Exit(Status::BadInput, e.into()))?;
    let imported =
        blackbox::import_file(file, &options).map_err(|e| Exit(Status::BadInput, e.into()))?;
    if check {
        println!("{}", imported.report);
        return Ok(if imported.report.all_carried() {
            Status::Ok
        } else {
            Status::ProbeFailed
        }
        .into());
    }
    match output {
        Some(path) => std::fs::write(path, &imported.toml)
            .with_context(|| format!("cannot write {}", path.display()))
            .map_err(exit(Status::BadInput))?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(imported.toml.as_bytes())
                .and_then(|()| out.flush())
                .context("cannot write the probes to stdout")
                .map_err(exit(Status::Environment))?;
        }
    }
    eprintln!("{}", imported.report);
    Ok(Status::Ok.into())
}
