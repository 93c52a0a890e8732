//! `doctor scan`: finds, in Python source, the distributed launch that spawn/forkserver children
//! re-run on import (S001-S003), without running anything.
//!
//! Library entry points for other commands: [`scan_source`], [`scan_file`], [`scan_path`].

pub mod diagnostic;

mod decode;
pub mod fix;
mod noqa;
mod reach;
pub mod render;
mod rules;
mod symbols;
pub mod version;
mod walk;

#[cfg(test)]
mod fuzz;

use std::path::{Path, PathBuf};

use crate::sys::source::Input;

use anyhow::Context;
use rayon::prelude::*;
use serde::Serialize;

#[allow(unused_imports)] // part of the library surface `doctor run` will use
pub use diagnostic::{Diagnostic, Related, Rule, Severity};

/// The operating system whose default multiprocessing start method is assumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Linux,
    Macos,
    Windows,
}

impl Platform {
    pub fn current() -> Self {
        if cfg!(target_os = "macos") {
            Platform::Macos
        } else if cfg!(windows) {
            Platform::Windows
        } else {
            Platform::Linux
        }
    }
}

/// What the analysis assumes and which rules it reports.
#[derive(Clone, Debug)]
pub struct ScanOptions {
    /// Python (major, minor): 3.14+ on Linux makes forkserver the default start method.
    pub python_version: (u32, u32),
    pub platform: Platform,
    /// Codes or code prefixes to report (empty: all).
    pub select: Vec<String>,
    /// Codes or code prefixes not to report.
    pub ignore: Vec<String>,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            python_version: (3, 11),
            platform: Platform::Linux,
            select: Vec::new(),
            ignore: Vec::new(),
        }
    }
}

impl ScanOptions {
    fn wants(&self, rule: Rule) -> bool {
        let code = rule.code();
        (self.select.is_empty() || self.select.iter().any(|s| code.starts_with(s.as_str())))
            && !self.ignore.iter().any(|s| code.starts_with(s.as_str()))
    }
}

/// Stack for parsing and walking: deeply nested source (`((((...` 100k deep) needs more than the
/// 2 MiB a thread gets by default. Only reserved address space; pages are touched as used.
const BIG_STACK: usize = 256 << 20;

thread_local! {
    /// Whether this thread was started with [`BIG_STACK`].
    static ON_BIG_STACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Source this short cannot nest deep enough to exhaust a default stack.
const SMALL_SOURCE: usize = 2048;

/// Diagnostics for one source text (`path` is only used in the diagnostics). Never panics, and
/// never overflows the stack: long sources are analysed on a thread with a big stack.
pub fn scan_source(path: &str, source: &str, opts: &ScanOptions) -> Vec<Diagnostic> {
    on_big_stack(source.len(), || scan_source_here(path, source, opts))
}

/// Run `work` (over a source of `len` bytes) on a thread with [`BIG_STACK`] unless the source is
/// short or this thread already has one.
pub(crate) fn on_big_stack<R: Send>(len: usize, work: impl FnOnce() -> R + Send + Copy) -> R {
    if len <= SMALL_SOURCE || ON_BIG_STACK.with(|b| b.get()) {
        return work();
    }
    let spawned = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .stack_size(BIG_STACK)
            .spawn_scoped(scope, work)
            .ok()
            .map(|h| h.join())
    });
    match spawned {
        Some(Ok(out)) => out,
        Some(Err(panic)) => std::panic::resume_unwind(panic),
        // No thread could be started: try on this one.
        None => work(),
    }
}

fn scan_source_here(path: &str, source: &str, opts: &ScanOptions) -> Vec<Diagnostic> {
    let mut diags = match ruff_python_parser::parse_module(source) {
        Ok(parsed) => match rules::rejected_future(parsed.syntax(), source, path)
            .or_else(|| rules::rejected_nesting(parsed.tokens(), source, path))
        {
            Some(d) => vec![d],
            None => {
                let imported = star_imported(Path::new(path), &parsed.syntax().body);
                let mut found = rules::check(parsed.syntax(), source, path, opts, &imported);
                found.extend(rules::too_deep(parsed.syntax(), source, path));
                found
            }
        },
        Err(error) => vec![rules::parse_error(path, source, &error)],
    };
    // S002 is S001 with spawn children: with S002 not selected, the launch is still an S001.
    for d in &mut diags {
        if d.code == Rule::S002 && !opts.wants(Rule::S002) && opts.wants(Rule::S001) {
            d.code = Rule::S001;
        }
    }
    diags.retain(|d| opts.wants(d.code));
    // `# noqa` / `# noqa: S001` on the finding's line, as in ruff (S900 cannot be silenced).
    // A launch line's one finding is silenced by either of its codes, S001 or S002.
    let lines: Vec<&str> = source.lines().collect();
    diags.retain(|d| {
        let Some(line) = lines.get(d.line.wrapping_sub(1)) else {
            return true;
        };
        match d.code {
            Rule::S900 => true,
            Rule::S001 | Rule::S002 => {
                !noqa::suppresses(line, Rule::S001) && !noqa::suppresses(line, Rule::S002)
            }
            code => !noqa::suppresses(line, code),
        }
    });
    diags.sort_by_key(|d| (d.line, d.column, d.code));
    diags
}

/// What `from X import *` brings into a file at `path` from sibling modules (`X.py` or
/// `X/__init__.py` beside it, relative imports too): the imports of those modules (name ->
/// qualified name), following their own star imports three levels deep. Names starting with
/// `_` are not exported by a star import and are left out.
pub fn star_imported(
    path: &Path,
    body: &[ruff_python_ast::Stmt],
) -> std::collections::HashMap<String, String> {
    let mut out = std::collections::HashMap::new();
    let Some(dir) = path.parent().filter(|_| crate::sys::source::is_file(path)) else {
        return out;
    };
    let mut seen = std::collections::HashSet::new();
    star_from(dir, body, 0, &mut seen, &mut out);
    out
}

fn star_from(
    dir: &Path,
    body: &[ruff_python_ast::Stmt],
    depth: usize,
    seen: &mut std::collections::HashSet<PathBuf>,
    out: &mut std::collections::HashMap<String, String>,
) {
    use ruff_python_ast::Stmt;
    if depth > 3 {
        return;
    }
    for stmt in body {
        let Stmt::ImportFrom(f) = stmt else { continue };
        if !f.names.iter().any(|a| a.name.as_str() == "*") || f.level > 1 {
            continue;
        }
        let module = f.module.as_ref().map_or("", |m| m.as_str());
        if module.is_empty() {
            continue;
        }
        let rel = module.replace('.', "/");
        let candidates = [
            dir.join(format!("{rel}.py")),
            dir.join(&rel).join("__init__.py"),
        ];
        let Some(file) = candidates
            .into_iter()
            .find(|c| crate::sys::source::is_small_file(c, decode::MAX_FILE_BYTES))
        else {
            continue;
        };
        if !seen.insert(file.clone()) {
            continue;
        }
        let Ok(bytes) = crate::sys::source::read_regular(&file, decode::MAX_FILE_BYTES) else {
            continue;
        };
        let Ok(text) = decode::decode(&bytes) else {
            continue;
        };
        let Ok(parsed) = ruff_python_parser::parse_module(&text) else {
            continue;
        };
        let sibling = &parsed.syntax().body;
        let sym = symbols::Symbols::collect(sibling);
        for (name, q) in &sym.aliases {
            if !name.starts_with('_') {
                out.entry(name.clone()).or_insert_with(|| q.clone());
            }
        }
        let next = file.parent().unwrap_or(dir).to_path_buf();
        star_from(&next, sibling, depth + 1, seen, out);
    }
}

/// Diagnostics for one file; a file that cannot be read or decoded yields none (see [`scan_path`]).
pub fn scan_file(path: &Path, opts: &ScanOptions) -> Vec<Diagnostic> {
    scan_path(path, opts).diagnostics
}

/// The outcome for one input: diagnostics, or the reason it was skipped.
#[derive(Debug, Default)]
pub struct FileReport {
    pub path: String,
    pub diagnostics: Vec<Diagnostic>,
    /// Why the file was not scanned (unreadable, binary, undecodable, too large).
    pub skipped: Option<String>,
    /// The decoded text, for snippets.
    pub source: Option<String>,
}

/// Read, decode (PEP 263) and scan one file.
pub fn scan_path(path: &Path, opts: &ScanOptions) -> FileReport {
    let shown = path.display().to_string();
    match crate::sys::source::read_regular(path, decode::MAX_FILE_BYTES) {
        Ok(bytes) => scan_bytes(shown, &bytes, opts),
        Err(reason) => skipped(shown, reason),
    }
}

fn scan_bytes(path: String, bytes: &[u8], opts: &ScanOptions) -> FileReport {
    if bytes.len() as u64 > decode::MAX_FILE_BYTES {
        return skipped(
            path,
            format!("larger than {} MiB", decode::MAX_FILE_BYTES >> 20),
        );
    }
    match decode::decode(bytes) {
        Ok(source) => {
            let diagnostics = if may_report(source.as_bytes()) {
                scan_source(&path, &source, opts)
            } else {
                Vec::new()
            };
            FileReport {
                path,
                diagnostics,
                skipped: None,
                source: Some(source),
            }
        }
        Err(reason) => skipped(path, reason),
    }
}

/// Names of which a file must contain at least one for S001-S003 to report anything: the callees
/// and classes that `symbols.rs` classifies as a launch or CUDA work (qualified names need them
/// spelled out in the file, an alias still imports them by name). A file with none of them is not
/// parsed (so it gets no S900 either). Keep in step with `Symbols::launch_label` and `cuda_label`.
pub const NEEDLES: &[&str] = &[
    "init_process_group",
    "TCPStore",
    "spawn",
    "start_processes",
    "elastic_launch",
    "Accelerator",
    "notebook_launcher",
    "deepspeed",
    "LightningCLI",
    "Fabric",
    "Trainer",
    "cuda",
    // Entry points of launch_label (symbols.rs) that contain none of the names above.
    "init_device_mesh",
    "DeviceMesh",
    "init_rpc",
    "launch_agent",
    "PartialState",
    "debug_launcher",
    "distributed.run",
    "distributed.launch",
    "distributed import run",
    "distributed import launch",
];

static PREFILTER: std::sync::LazyLock<aho_corasick::AhoCorasick> = std::sync::LazyLock::new(|| {
    aho_corasick::AhoCorasick::new(NEEDLES).expect("static needles build an automaton")
});

/// One pass over the bytes: could any rule but S900 report something in this source?
pub fn may_report(source: &[u8]) -> bool {
    PREFILTER.is_match(source)
}

fn skipped(path: String, reason: String) -> FileReport {
    FileReport {
        path,
        skipped: Some(reason),
        ..FileReport::default()
    }
}

pub fn parse_version(s: &str) -> Result<(u32, u32), String> {
    let mut it = s.trim().split('.');
    let major = it.next().and_then(|m| m.parse().ok());
    let minor = it.next().and_then(|m| m.parse().ok());
    match (major, minor) {
        (Some(ma), Some(mi)) => Ok((ma, mi)),
        _ => Err(format!("expected X.Y (like 3.11), got '{s}'")),
    }
}

/// `python3 --version` of this machine, or 3.11 when there is none.
pub fn local_python_version() -> (u32, u32) {
    python_version_of("python3")
}

/// `PYTHON --version`, or 3.11 when it cannot be run.
pub fn python_version_of(python: &str) -> (u32, u32) {
    crate::sys::source::python_version_text(python)
        .and_then(|text| parse_version(text.trim().strip_prefix("Python ")?).ok())
        .unwrap_or((3, 11))
}

/// The start method a program gets when it chooses none, under `opts`.
pub fn default_start_method(opts: &ScanOptions) -> &'static str {
    symbols::spawnlike_default(opts.platform, opts.python_version).unwrap_or("fork")
}

/// Scan files, directories (walked) and `-` (stdin) in parallel; reports sorted by path.
pub fn scan_paths(paths: &[String], opts: &ScanOptions) -> anyhow::Result<Vec<FileReport>> {
    let crate::sys::source::Inputs { inputs, unreadable } =
        crate::sys::source::python_inputs(paths).map_err(|bad| {
            crate::error::user_error(
                format!("cannot scan '{}': {}", bad.arg, bad.error),
                "give Python files, directories, or `-` to read the source from stdin",
            )
        })?;
    let mut walk_skips: Vec<FileReport> = unreadable
        .into_iter()
        .map(|(p, reason)| skipped(p, reason))
        .collect();

    let pool = rayon::ThreadPoolBuilder::new()
        .stack_size(BIG_STACK)
        .start_handler(|_| ON_BIG_STACK.with(|b| b.set(true)))
        .build()
        .context("cannot start the scanning threads")?;
    let stdin_bytes = if inputs.iter().any(|i| matches!(i, Input::Stdin)) {
        Some(crate::sys::source::read_stdin().context("cannot read stdin")?)
    } else {
        None
    };
    let mut reports: Vec<FileReport> = pool.install(|| {
        inputs
            .par_iter()
            .map(|input| match input {
                Input::Stdin => scan_bytes(
                    "<stdin>".to_string(),
                    stdin_bytes.as_deref().unwrap_or_default(),
                    opts,
                ),
                Input::File(p) => scan_path(p, opts),
            })
            .collect()
    });
    reports.append(&mut walk_skips);
    reports.sort_by(|a, b| a.path.cmp(&b.path));

    Ok(reports)
}

/// The options `doctor scan` uses without flags: this machine's python3 and platform.
pub fn default_options() -> ScanOptions {
    ScanOptions {
        python_version: local_python_version(),
        platform: Platform::current(),
        ..ScanOptions::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = include_str!("../../tests/fixtures/scan/seed.py");

    #[test]
    fn library_api_reports_the_seed() {
        let diags = scan_source("train.py", SEED, &ScanOptions::default());
        let got: Vec<(Rule, usize, Severity)> =
            diags.iter().map(|d| (d.code, d.line, d.severity)).collect();
        assert_eq!(got, [(Rule::S002, 6, Severity::Error)]);
        let s002 = &diags[0];
        assert_eq!((s002.column, s002.end_line, s002.end_column), (1, 6, 16));
        assert_eq!(s002.related[0].line, 10);
        assert!(s002.fix.contains("if __name__ == \"__main__\":"));
        assert_eq!(diags[0].path, "train.py");
    }

    #[test]
    fn without_spawn_evidence_s001_is_a_warning() {
        let src = SEED.replace(
            "multiprocessing_context=\"spawn\"",
            "multiprocessing_context=\"fork\"",
        );
        let diags = scan_source("train.py", &src, &ScanOptions::default());
        assert_eq!(diags.len(), 1);
        assert_eq!(
            (diags[0].code, diags[0].severity),
            (Rule::S001, Severity::Warning)
        );
        // On macOS the default start method is spawn, but this program chose fork explicitly.
        let mac = ScanOptions {
            platform: Platform::Macos,
            ..ScanOptions::default()
        };
        assert_eq!(scan_source("train.py", &src, &mac).len(), 1);
    }

    #[test]
    fn scan_file_reads_and_decodes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.py");
        std::fs::write(
            &path,
            b"# coding: latin-1\nimport torch\n# caf\xe9\ntorch.cuda.set_device(0)\n",
        )
        .expect("write");
        let diags = scan_file(&path, &ScanOptions::default());
        assert_eq!(
            diags.iter().map(|d| (d.code, d.line)).collect::<Vec<_>>(),
            [(Rule::S003, 4)]
        );
        std::fs::write(&path, b"x = '\xe9'\n").expect("write");
        let report = scan_path(&path, &ScanOptions::default());
        assert!(
            report
                .skipped
                .is_some_and(|r| r.contains("not valid UTF-8"))
        );
    }

    #[test]
    fn every_fixture_with_a_finding_passes_the_prefilter() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut checked = 0;
        for sub in ["scan", "scan_fix"] {
            for entry in std::fs::read_dir(dir.join(sub)).expect("fixtures") {
                let path = entry.expect("entry").path();
                let Ok(source) = std::fs::read_to_string(&path) else {
                    continue;
                };
                let found = scan_source("f.py", &source, &ScanOptions::default());
                if found.iter().any(|d| d.code != Rule::S900) {
                    assert!(may_report(source.as_bytes()), "{}", path.display());
                    checked += 1;
                }
            }
        }
        assert!(checked >= 40, "{checked}");
        assert!(!may_report(b"import torch\nx = torch.zeros(3)\n"));
    }

    /// Every launch entry point of `symbols::launch_label`, written the way scripts import it: the
    /// scan finds the launch, and the prefilter does not skip the file.
    #[test]
    fn every_launch_entry_point_passes_the_prefilter() {
        let sources = [
            "import torch.distributed as dist\ndist.init_process_group('gloo')\n",
            "from torch.distributed.device_mesh import init_device_mesh\nm = init_device_mesh('cpu', (2,))\n",
            "from torch.distributed.device_mesh import DeviceMesh\nm = DeviceMesh('cpu', [0, 1])\n",
            "import torch.distributed.rpc as rpc\nrpc.init_rpc('w', rank=0, world_size=2)\n",
            "from torch.distributed.launcher.api import launch_agent\nlaunch_agent(c, f, [])\n",
            "from torch.distributed.launcher.api import elastic_launch\nelastic_launch(c, f)()\n",
            "from torch.distributed import TCPStore\ns = TCPStore('127.0.0.1', 29500, 2, True)\n",
            "import torch.multiprocessing as mp\nmp.spawn(f, nprocs=2)\n",
            "from torch.distributed.elastic.multiprocessing import start_processes\nstart_processes('x', f, {}, {})\n",
            "from torch.distributed.run import main\nmain(['--nproc-per-node', '2', 't.py'])\n",
            "from torch.distributed import run\nrun.main(['t.py'])\n",
            "import torch.distributed.launch as launch\nlaunch.main()\n",
            "from accelerate import Accelerator\na = Accelerator()\n",
            "from accelerate import PartialState\ns = PartialState()\n",
            "from accelerate.state import AcceleratorState\ns = AcceleratorState()\n",
            "from accelerate import notebook_launcher\nnotebook_launcher(f, num_processes=2)\n",
            "from accelerate import debug_launcher\ndebug_launcher(f)\n",
            "import deepspeed\ndeepspeed.init_distributed()\n",
            "from deepspeed import zero\nwith zero.Init():\n    pass\n",
            "from lightning.pytorch.cli import LightningCLI\nLightningCLI(M)\n",
            "from lightning.fabric import Fabric\nfabric = Fabric(devices=2)\nfabric.launch()\n",
        ];
        for src in sources {
            let found = scan_source("t.py", src, &ScanOptions::default());
            assert!(
                found
                    .iter()
                    .any(|d| d.code == Rule::S001 || d.code == Rule::S002),
                "no S001/S002 for:\n{src}"
            );
            assert!(may_report(src.as_bytes()), "prefilter skips:\n{src}");
        }
    }

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("3.14"), Ok((3, 14)));
        assert_eq!(parse_version("3.11.7"), Ok((3, 11)));
        assert!(parse_version("three").is_err());
    }
}
