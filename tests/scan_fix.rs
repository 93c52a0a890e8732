//! `doctor scan --fix / --diff` over the fixture corpus: every fixed file compiles, scans clean of
//! S001/S002 and is left alone by a second --fix; the refusals leave files byte for byte.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ddp_doctor::scan::fix::{Fix, fix_source};
use ddp_doctor::scan::{Rule, ScanOptions, scan_file};

fn fixtures(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir)
}

/// Copy every `*.py` of the fixture folders into a temp dir; returns name -> original bytes.
fn corpus(into: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for dir in ["scan", "scan_fix"] {
        for entry in std::fs::read_dir(fixtures(dir)).expect("fixtures") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "py") {
                let bytes = std::fs::read(&path).expect("read fixture");
                let name = format!("{dir}__{}", path.file_name().unwrap().to_string_lossy());
                std::fs::write(into.join(&name), &bytes).expect("copy");
                files.insert(name, bytes);
            }
        }
    }
    files
}

fn launch_codes(path: &Path) -> Vec<String> {
    scan_file(path, &ScanOptions::default())
        .into_iter()
        .filter(|d| matches!(d.code, Rule::S001 | Rule::S002))
        .map(|d| format!("{}:{}", d.code, d.line))
        .collect()
}

/// Compile with the test Python; a file written for a newer Python (PEP 695 syntax) is compiled
/// with python3.13 when its original does not compile with the test Python.
fn py_compile_like(path: &Path, original: &[u8]) -> Result<(), String> {
    let orig = path.with_extension("orig.py");
    std::fs::write(&orig, original).map_err(|e| e.to_string())?;
    let python = if compile_with(&common::python(), &orig).is_ok() {
        common::python()
    } else {
        newer_python()
    };
    compile_with(&python, &orig)
        .map_err(|e| format!("the original does not compile either: {e}"))?;
    std::fs::remove_file(&orig).ok();
    compile_with(&python, path)
}

/// A Python >= 3.12 (PEP 695): $DOCTOR_TEST_PYTHON_NEW, python3.13/3.12 on PATH, or pyenv's.
fn newer_python() -> String {
    let home = std::env::var("HOME").unwrap_or_default();
    let mut candidates: Vec<String> = std::env::var("DOCTOR_TEST_PYTHON_NEW")
        .into_iter()
        .collect();
    for v in ["3.13", "3.12"] {
        candidates.push(format!("python{v}"));
        if let Ok(dirs) = std::fs::read_dir(format!("{home}/.pyenv/versions")) {
            for d in dirs.flatten() {
                if d.file_name().to_string_lossy().starts_with(v) {
                    candidates.push(d.path().join("bin/python3").to_string_lossy().into_owned());
                }
            }
        }
    }
    candidates
        .into_iter()
        .find(|p| {
            Command::new(p)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("a Python >= 3.12 to compile PEP 695 fixtures (set DOCTOR_TEST_PYTHON_NEW)")
}

fn py_compile(path: &Path) -> Result<(), String> {
    compile_with(&common::python(), path)
}

fn compile_with(python: &str, path: &Path) -> Result<(), String> {
    let out = Command::new(python)
        .args(["-m", "py_compile"])
        .arg(path)
        .output()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn fixed_corpus_compiles_scans_clean_and_is_stable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let originals = corpus(dir.path());
    let before: BTreeMap<&String, Vec<String>> = originals
        .keys()
        .map(|n| (n, launch_codes(&dir.path().join(n))))
        .collect();

    let out = common::run(&[
        "scan",
        "--fix",
        "--exit-zero",
        &dir.path().to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);

    let (mut fixed, mut refused) = (0, 0);
    for (name, original) in &originals {
        let path = dir.path().join(name);
        let now = std::fs::read(&path).expect("read back");
        if before[name].is_empty() {
            assert_eq!(&now, original, "{name} had nothing to fix but changed");
            continue;
        }
        if name.contains("refuse_") || stderr.contains(&format!("not fixed {}", path.display())) {
            assert_eq!(&now, original, "{name} was refused but changed");
            assert!(
                stderr.contains(&format!("not fixed {}:", path.display())),
                "{name}: {stderr}"
            );
            refused += 1;
            continue;
        }
        assert_ne!(
            &now, original,
            "{name} has {:?} but was not fixed",
            before[name]
        );
        py_compile_like(&path, original)
            .unwrap_or_else(|e| panic!("{name} does not compile after --fix:\n{e}"));
        assert_eq!(
            launch_codes(&path),
            Vec::<String>::new(),
            "{name} still launches at import"
        );
        fixed += 1;
    }
    assert!(
        fixed >= 30 && refused >= 10,
        "fixed {fixed}, refused {refused}"
    );

    // A second --fix changes nothing.
    let snapshot: Vec<Vec<u8>> = originals
        .keys()
        .map(|n| std::fs::read(dir.path().join(n)).unwrap())
        .collect();
    let again = common::run(&[
        "scan",
        "--fix",
        "--exit-zero",
        &dir.path().to_string_lossy(),
    ]);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("Fixed 0 files."),
        "{again:?}"
    );
    let after: Vec<Vec<u8>> = originals
        .keys()
        .map(|n| std::fs::read(dir.path().join(n)).unwrap())
        .collect();
    assert_eq!(snapshot, after, "the second --fix changed files");
}

#[test]
fn corpus_diffs_snapshot() {
    for dir in ["scan", "scan_fix"] {
        let out = common::doctor()
            .current_dir(fixtures(dir))
            .args(["scan", "--diff", "."])
            .output()
            .expect("doctor runs");
        assert_eq!(out.status.code(), Some(1), "--diff with changes exits 1");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        insta::assert_snapshot!(format!("diff_{dir}"), stdout);
        insta::assert_snapshot!(format!("refusals_{dir}"), stderr);
    }
}

#[test]
fn exit_codes_follow_ruff() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixable = dir.path().join("train.py");
    let src = "import torch.distributed as dist\n\ndist.init_process_group('gloo')\nRANK = dist.get_rank()\n";
    std::fs::write(&fixable, src).unwrap();
    let p = fixable.to_string_lossy().to_string();

    // --diff writes nothing and exits 1 when it would change a file.
    let out = common::run(&["scan", "--diff", &p]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("+def main():"));
    assert_eq!(std::fs::read_to_string(&fixable).unwrap(), src);

    // --fix: nothing left -> 0; then a plain scan is clean.
    assert_eq!(common::run(&["scan", "--fix", &p]).status.code(), Some(0));
    assert_eq!(common::run(&["scan", &p]).status.code(), Some(0));
    assert_eq!(common::run(&["scan", "--diff", &p]).status.code(), Some(0));
    // --exit-zero wins over a diff.
    std::fs::write(&fixable, src).unwrap();
    assert_eq!(
        common::run(&["scan", "--diff", "--exit-zero", &p])
            .status
            .code(),
        Some(0)
    );
    // --fix and --diff together are a usage error.
    assert_eq!(
        common::run(&["scan", "--fix", "--diff", &p]).status.code(),
        Some(2)
    );

    // --fix with a refusal -> 1, file untouched.
    let refused = fixtures("scan_fix").join("refuse_exec.py");
    let copy = dir.path().join("refuse.py");
    std::fs::copy(&refused, &copy).unwrap();
    let out = common::run(&["scan", "--fix", &copy.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("uses `exec()`"));
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        std::fs::read(&refused).unwrap()
    );
}

#[test]
fn crlf_and_latin1_are_kept_on_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let crlf = dir.path().join("crlf.py");
    std::fs::write(
        &crlf,
        "import torch.distributed as dist\r\n\r\ndist.init_process_group('gloo')\r\nX = 1\r\n",
    )
    .unwrap();
    let latin = dir.path().join("latin.py");
    std::fs::copy(fixtures("scan_fix").join("keep_shebang_cookie.py"), &latin).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&latin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = common::run(&[
        "scan",
        "--fix",
        &crlf.to_string_lossy(),
        &latin.to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = std::fs::read_to_string(&crlf).unwrap();
    assert!(text.contains("def main():\r\n    global X\r\n"), "{text:?}");
    assert!(
        !text.replace("\r\n", "").contains('\n'),
        "a bare LF in {text:?}"
    );
    let bytes = std::fs::read(&latin).unwrap();
    assert!(bytes.starts_with(b"#!/usr/bin/env python3\n# -*- coding: latin-1 -*-\n"));
    assert!(
        bytes.windows(4).any(|w| w == b"caf\xe9"),
        "latin-1 byte kept"
    );
    let mode = std::fs::metadata(&latin).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755, "the script stays executable");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
    py_compile(&crlf).unwrap();
    py_compile(&latin).unwrap();
}

#[test]
fn library_refuses_without_touching_anything() {
    let src = std::fs::read_to_string(fixtures("scan_fix").join("refuse_class_body.py")).unwrap();
    assert!(matches!(fix_source(&src), Fix::Refused(why) if why.contains("class `Config`")));
}

/// A file whose name holds an escape sequence and a newline: `--diff`'s headers, the refusal
/// warning and the write errors show it escaped (no raw control character reaches a terminal
/// or a pasted ticket; the diff keeps one header line per file).
#[test]
fn control_characters_in_file_names_are_escaped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixable = dir.path().join("evil\x1b[31m\nname.py");
    std::fs::write(
        &fixable,
        "import torch.distributed as dist\ndist.init_process_group('gloo')\n",
    )
    .unwrap();
    let refused = dir.path().join("ref\x1b[31m\nuse.py");
    std::fs::write(
        &refused,
        "import torch.distributed as dist\ndist.init_process_group('gloo')\nexec('x = 1')\n",
    )
    .unwrap();
    let raw = |b: &[u8]| b.contains(&0x1b);
    let out = common::run(&[
        "scan",
        "--diff",
        &fixable.to_string_lossy(),
        &refused.to_string_lossy(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !raw(&out.stdout) && !raw(&out.stderr),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let headers: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("--- ") || l.starts_with("+++ "))
        .collect();
    assert_eq!(headers.len(), 2, "{stdout}");
    assert!(
        headers
            .iter()
            .all(|h| h.ends_with("evil\\x1b[31m\\nname.py")),
        "{headers:?}"
    );
    assert!(
        !stdout.lines().any(|l| l.starts_with("name.py")),
        "{stdout}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not fixed ") && err.contains("ref\\x1b[31m\\nuse.py"),
        "{err}"
    );
}
