//! `doctor snapshot`: write the observed state for later analysis (`ports`/`tree --from FILE`).

use std::path::PathBuf;

use anyhow::Context;

use crate::render::{self, DocFormat, permission_note};
use crate::sys::observe;

#[derive(clap::Args)]
pub struct SnapshotArgs {
    /// Write to FILE instead of stdout (format from the extension: .json, else YAML)
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Default: from the -o extension (.json: JSON), else YAML
    #[arg(long, value_enum, alias = "output-format")]
    format: Option<DocFormat>,
}

pub fn snapshot(args: SnapshotArgs) -> anyhow::Result<i32> {
    if let Some(path) = &args.output {
        crate::sys::output::check_writable(path)?;
    }
    let format = match (args.format, &args.output) {
        (Some(f), _) => f,
        (None, Some(p)) => DocFormat::of_path(p),
        (None, None) => DocFormat::Yaml,
    };
    let mut snap = observe::snapshot();
    // As every command judges it: the processes of this network namespace (`load_or_observe`).
    observe::same_netns_only(&mut snap);
    if !render::settings().show_secrets {
        render::redact::redact_snapshot(&mut snap);
    }
    let text = render::document(&snap, format.format())?;
    match args.output {
        Some(path) => {
            crate::sys::output::write_atomic(&path, text.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            render::note(&format!(
                "wrote {} ({} processes, {} sockets); analyse it with `doctor ports --from {}`",
                path.display(),
                snap.processes.len(),
                snap.sockets.len(),
                path.display()
            ));
        }
        None => render::print(&text),
    }
    permission_note(&snap);
    Ok(0)
}
