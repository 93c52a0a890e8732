//! Fuzzing: no input, however broken, makes the scanner or the fixer panic or overflow its stack;
//! what the fixer writes parses, and a second fix finds nothing to do.
//!
//! Case count: `DOCTOR_FUZZ_CASES` (default 64 per property, a few seconds in a debug build).

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::{ScanOptions, scan_bytes, scan_source};

const FIXTURES: [&[u8]; 8] = [
    include_bytes!("../../tests/fixtures/scan/seed.py"),
    include_bytes!("../../tests/fixtures/scan/nesting_blocks.py"),
    include_bytes!("../../tests/fixtures/scan/transitive_calls.py"),
    include_bytes!("../../tests/fixtures/scan/modern_syntax.py"),
    include_bytes!("../../tests/fixtures/scan/decorator.py"),
    include_bytes!("../../tests/fixtures/scan/latin1_cookie.py"),
    include_bytes!("../../tests/fixtures/scan/cuda_module_level.py"),
    include_bytes!("../../tests/fixtures/scan/trainer_strategy_object.py"),
];

/// Python-ish pieces that reach the rules (random bytes rarely parse).
const TOKENS: [&str; 48] = [
    "import torch.distributed as dist\n",
    "import lightning as L\n",
    "from torch.utils.data import DataLoader\n",
    "fabric = L.Fabric(devices=2)\n",
    "fabric.launch()\n",
    "dist.init_process_group('gloo')\n",
    "DataLoader([], num_workers=2)\n",
    "multiprocessing_context='spawn'",
    "if __name__ == '__main__':\n",
    "if '__main__' != __name__:\n",
    "else:\n",
    "elif x:\n",
    "def f(a=dist.TCPStore()):\n",
    "class C:\n",
    "@f\n",
    "f()\n",
    "C()\n",
    "lambda: f()",
    "    ",
    "\n",
    "(",
    ")",
    "[",
    "]",
    ":",
    ",",
    "try:\n",
    "except:\n",
    "with x as y:\n",
    "for i in x:\n",
    "while True:\n",
    "match x:\n",
    "case 1:\n",
    "return f()\n",
    "torch.cuda.set_device(0)\n",
    "x.cuda()\n",
    "x.to('cuda')\n",
    "(w := L.Fabric())\n",
    "'''",
    "\\\n",
    "x: int = 1\n",
    "exec('')\n",
    "from os import *\n",
    "main = 1\n",
    "def main():\n",
    "\r\n",
    "\t",
    "# note\n",
];

fn runner() -> TestRunner {
    let cases = std::env::var("DOCTOR_FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(64);
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

fn scan_everything(bytes: &[u8]) {
    for opts in [
        ScanOptions::default(),
        ScanOptions {
            platform: super::Platform::Macos,
            ..ScanOptions::default()
        },
    ] {
        let report = scan_bytes("fuzz.py".to_string(), bytes, &opts);
        for d in &report.diagnostics {
            assert!(d.line >= 1 && d.column >= 1, "{d:?}");
            assert!((d.end_line, d.end_column) >= (d.line, d.column), "{d:?}");
        }
    }
    if let Ok(source) = std::str::from_utf8(bytes) {
        check_fix(source);
    }
}

thread_local! {
    /// Sources the fixer rewrote on this thread (the structured property checks that it
    /// reaches the fixer at all).
    static FIXED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn check_fix(source: &str) {
    use super::fix::{Fix, fix_source};
    let outcome = fix_source(source);
    // The fixer's own check failing is a fixer bug: it must refuse, not produce a broken text.
    assert!(
        !matches!(outcome, Fix::Broken(_)),
        "the fixer's own check failed: {outcome:?}\n--- source\n{source}"
    );
    if let Fix::Fixed(out) = outcome {
        FIXED.with(|n| n.set(n.get() + 1));
        assert!(
            ruff_python_parser::parse_module(&out).is_ok(),
            "the fix does not parse:\n--- before\n{source}\n--- after\n{out}"
        );
        assert_eq!(
            fix_source(&out),
            Fix::Unchanged,
            "a second fix changes:\n--- before\n{source}\n--- after\n{out}"
        );
    }
}

#[test]
fn random_bytes_never_panic() {
    runner()
        .run(&proptest::collection::vec(any::<u8>(), 0..2048), |bytes| {
            scan_everything(&bytes);
            Ok(())
        })
        .expect("no panic on random bytes");
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Splice(usize, usize, usize, usize),
    Insert(usize, u8),
}

#[test]
fn mutated_fixtures_never_panic() {
    let mutation = prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (
            any::<usize>(),
            any::<usize>(),
            any::<usize>(),
            any::<usize>()
        )
            .prop_map(|(f, a, b, at)| Mutation::Splice(f, a, b, at)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
    ];
    let strategy = (0..FIXTURES.len(), proptest::collection::vec(mutation, 1..8));
    runner()
        .run(&strategy, |(which, mutations)| {
            let mut bytes = FIXTURES[which].to_vec();
            for m in mutations {
                let len = bytes.len().max(1);
                match m {
                    Mutation::Flip(i, b) => {
                        if let Some(x) = bytes.get_mut(i % len) {
                            *x ^= b;
                        }
                    }
                    Mutation::Truncate(i) => bytes.truncate(i % len),
                    Mutation::Insert(i, b) => bytes.insert((i % len).min(bytes.len()), b),
                    Mutation::Splice(f, a, b, at) => {
                        let other = FIXTURES[f % FIXTURES.len()];
                        let (a, b) = (a % other.len(), b % other.len());
                        let piece = &other[a.min(b)..a.max(b)];
                        let at = (at % len).min(bytes.len());
                        bytes.splice(at..at, piece.iter().copied());
                    }
                }
            }
            scan_everything(&bytes);
            Ok(())
        })
        .expect("no panic on mutated fixtures");
}

#[test]
fn token_soup_never_panics() {
    runner()
        .run(
            &proptest::collection::vec(0..TOKENS.len(), 0..200),
            |picks| {
                let source: String = picks.iter().map(|&i| TOKENS[i]).collect();
                scan_everything(source.as_bytes());
                Ok(())
            },
        )
        .expect("no panic on token soup");
}

#[test]
fn deep_nesting_does_not_overflow_the_stack() {
    let opts = ScanOptions::default();
    let cases = [
        format!("x = {}1{}\n", "(".repeat(100_000), ")".repeat(100_000)),
        format!("x = {}1\n", "1+".repeat(200_000)),
        format!("x = {}{}\n", "[".repeat(50_000), "]".repeat(50_000)),
        format!("x = {}1\n", "not ".repeat(100_000)),
        format!("x = a{}\n", ".b".repeat(200_000)),
        format!("x = {}\n", "f(".repeat(50_000)),
        (0..1000)
            .map(|i| format!("{}if x:\n", " ".repeat(i)))
            .collect::<String>()
            + &" ".repeat(1000)
            + "pass\n",
    ];
    for source in &cases {
        let _ = scan_source("deep.py", source, &opts);
        let _ = super::fix::fix_source(source);
    }
}

/// Whole statements, so that most programs parse and the fixer has something to move.
const SIMPLE: [&str; 16] = [
    "import torch.distributed as dist",
    "import lightning as L",
    "fabric = L.Fabric(devices=2)",
    "fabric.launch()",
    "dist.init_process_group('gloo')",
    "x = 1",
    "y = f(x)  # note",
    "f()",
    "print(x, y)",
    "del x",
    "doc = '''a\n  b\n'''",
    "z = [i for i in range(3) if (k := i)]",
    "main = 2",
    "C().run()",
    "x += 1",
    "assert x",
];

const HEADERS: [&str; 10] = [
    "def f(a=1):",
    "class C:",
    "if __name__ == '__main__':",
    "if x:",
    "for i in range(2):",
    "with open('p') as h:",
    "try:",
    "while False:",
    "def run(self):",
    "@staticmethod\ndef g():",
];

#[test]
fn structured_programs_fix_cleanly() {
    let block = (
        proptest::option::of(0..HEADERS.len()),
        proptest::collection::vec(0..SIMPLE.len(), 1..4),
        0..3usize,
    );
    let before = FIXED.with(|n| n.get());
    let mut runner = runner();
    let cases = runner.config().cases as usize;
    runner
        .run(&proptest::collection::vec(block, 1..12), |blocks| {
            let mut source = String::new();
            for (header, body, blank) in blocks {
                let indent = match header {
                    Some(h) => {
                        source.push_str(HEADERS[h]);
                        source.push('\n');
                        "    "
                    }
                    None => "",
                };
                for &b in &body {
                    for line in SIMPLE[b].split_inclusive('\n') {
                        source.push_str(indent);
                        source.push_str(line);
                    }
                    source.push('\n');
                }
                if header == Some(6) {
                    source.push_str("except Exception as e:\n    pass\n");
                }
                source.push_str(&"\n".repeat(blank));
            }
            check_fix(&source);
            Ok(())
        })
        .expect("fixes parse and are stable");
    let fixed = FIXED.with(|n| n.get()) - before;
    eprintln!("{fixed} of {cases} generated programs were fixed");
    assert!(
        fixed * 10 >= cases,
        "only {fixed} of {cases} programs reached the fixer"
    );
}
