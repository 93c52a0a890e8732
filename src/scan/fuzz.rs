//! Fuzzing: no input, however broken, makes the scanner panic or overflow its stack.
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
const TOKENS: [&str; 40] = [
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
    }
}
