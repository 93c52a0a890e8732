//! The byte prefilter of `doctor scan` (files naming none of scan::NEEDLES are not parsed)
//! changes no result on the installed torch + lightning packages: every file is analysed both
//! ways, in-process, and the diagnostics compared.

use std::path::{Path, PathBuf};

use ddp_doctor::scan::{Rule, ScanOptions, may_report, scan_path, scan_source};

fn corpus() -> Vec<PathBuf> {
    let home = std::env::var_os("HOME").expect("HOME is set");
    let lib = Path::new(&home).join(".cache/ddp-doctor/venv/lib");
    let site = std::fs::read_dir(&lib)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (the managed venv: doctor repro --setup)",
                lib.display()
            )
        })
        .flatten()
        .map(|e| e.path().join("site-packages"))
        .find(|p| p.join("torch").is_dir())
        .expect("torch installed in the managed venv");
    let mut files = Vec::new();
    for dir in [
        "torch",
        "lightning",
        "lightning_fabric",
        "pytorch_lightning",
    ] {
        let root = site.join(dir);
        if !root.is_dir() {
            continue;
        }
        for entry in ignore::WalkBuilder::new(&root)
            .standard_filters(false)
            .build()
            .flatten()
        {
            if entry.path().extension().is_some_and(|x| x == "py") {
                files.push(entry.into_path());
            }
        }
    }
    files
}

#[test]
fn prefilter_changes_no_finding_on_torch_and_lightning() {
    let opts = ScanOptions::default();
    let files = corpus();
    assert!(files.len() > 1000, "only {} files", files.len());
    let (mut parsed, mut counts_full, mut counts_filtered) = (0, [0usize; 4], [0usize; 4]);
    let slot = |code: Rule| {
        [Rule::S001, Rule::S002, Rule::S003, Rule::S900]
            .iter()
            .position(|c| *c == code)
            .unwrap_or(3)
    };
    for path in &files {
        let report = scan_path(path, &opts);
        let Some(source) = &report.source else {
            continue;
        };
        let full = scan_source(&path.display().to_string(), source, &opts);
        for d in &full {
            counts_full[slot(d.code)] += 1;
        }
        for d in &report.diagnostics {
            counts_filtered[slot(d.code)] += 1;
        }
        if may_report(source.as_bytes()) {
            parsed += 1;
            assert_eq!(full.len(), report.diagnostics.len(), "{}", path.display());
        } else {
            let non_syntax: Vec<_> = full.iter().filter(|d| d.code != Rule::S900).collect();
            assert!(
                non_syntax.is_empty(),
                "prefilter skipped {}: {non_syntax:?}",
                path.display()
            );
        }
    }
    eprintln!(
        "{} files, {parsed} parsed after the prefilter; S001/S002/S003/S900 without: {counts_full:?}, with: {counts_filtered:?}",
        files.len()
    );
    assert_eq!(counts_full, counts_filtered);
}
