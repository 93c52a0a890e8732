//! `doctor snapshot`: write the observed state for later analysis (`ports`/`tree --from FILE`).

use std::path::PathBuf;

use anyhow::Context;

use crate::error::user_error;
use crate::render::{self, Format, permission_note};
use crate::sys::observe;

#[derive(clap::Args)]
pub struct SnapshotArgs {
    /// Write to FILE instead of stdout (format from the extension: .json, else YAML)
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// json or yaml (table is not a snapshot format)
    #[arg(long, value_enum)]
    format: Option<Format>,
}

pub fn snapshot(args: SnapshotArgs) -> anyhow::Result<i32> {
    let format = match (args.format, &args.output) {
        (Some(Format::Table), _) => {
            return Err(user_error(
                "a snapshot is written as yaml or json",
                "use --format yaml or --format json",
            ));
        }
        (Some(f), _) => f,
        (None, Some(p)) if p.extension().is_some_and(|e| e == "json") => Format::Json,
        _ => Format::Yaml,
    };
    let snap = observe::snapshot();
    let text = render::document(&snap, format)?;
    match args.output {
        Some(path) => {
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "wrote {} ({} processes, {} sockets); analyse it with `doctor ports --from {}`",
                path.display(),
                snap.processes.len(),
                snap.sockets.len(),
                path.display()
            );
        }
        None => render::print(&text),
    }
    permission_note(&snap);
    Ok(0)
}
