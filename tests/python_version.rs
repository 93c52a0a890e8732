//! The oldest Python a script needs (`scan::version::needed_python`, which picks the interpreter
//! of `doctor repro` and `--verify-fix`), checked against real interpreters: every pyenv version
//! here (3.8 to 3.13 on this image) compiles each source of a corpus (every fixture, and snippets
//! of each kind of new syntax, alone and mixed), and a source compiles on Python X.Y exactly when
//! X.Y is at least the version doctor says it needs. Sources that no interpreter compiles (S900
//! fixtures) are left out; they must be few.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use ddp_doctor::scan::version::needed_python;

/// pyenv's interpreters (`$PYENV_ROOT/versions/X.Y.Z/bin/python3`), Python 3.8 or newer (torch 2
/// needs 3.8; the parser does not see all 3.8 syntax, `f"{x=}"` among it), one per minor
/// version, with their `(major, minor)`.
fn interpreters() -> Vec<((u32, u32), PathBuf)> {
    let root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")))
        .unwrap_or_default();
    let mut out: Vec<((u32, u32), PathBuf)> = Vec::new();
    for e in std::fs::read_dir(root.join("versions"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let mut parts = name.split('.').map(|p| p.parse::<u32>().ok());
        let (Some(Some(major)), Some(Some(minor))) = (parts.next(), parts.next()) else {
            continue;
        };
        let py = e.path().join("bin/python3");
        if (major, minor) >= (3, 8)
            && py.is_file()
            && !out.iter().any(|(v, _)| *v == (major, minor))
        {
            out.push(((major, minor), py));
        }
    }
    out.sort();
    out
}

/// Snippets of each kind of syntax a newer Python added (and mixes of them).
const SNIPPETS: &[&str] = &[
    "x = 1\n",
    "def f(a, /):\n    pass\n",
    "if (n := 1):\n    pass\n",
    "print(f'{1=}')\n",
    "@(lambda f: f)\ndef g():\n    pass\n",
    "with (open('a') as a, open('b') as b):\n    pass\n",
    // One parenthesized item with `as` (numpy's testing utils have one): 3.8 rejects it, and the
    // parser did not date it; its neighbours: parentheses that are the expression's or the target's.
    "with (open('a') as a):\n    pass\n",
    "with (open('a')\n      as a):\n    pass\n",
    "async def f():\n    async with (open('a') as a):\n        pass\n",
    "with (open('a')) as a:\n    pass\n",
    "with open('a') as (a):\n    pass\n",
    "with (open('a')) as (a), (open('b')):\n    pass\n",
    "with ((open('a'))) as a:\n    pass\n",
    "d = {}\nd[x := 1] = 2\n",
    "s = {x := 1, 2}\n",
    "s = {y := x for x in [1]}\n",
    "match 1:\n    case 1:\n        pass\n",
    "try:\n    pass\nexcept* ValueError:\n    pass\n",
    "def f(*args: *tuple[int, ...]):\n    pass\n",
    "x = [1]\ny = x[*x]\n",
    "type V = list[float]\n",
    "class Box[T]:\n    pass\n",
    "def first[T](xs: list[T]) -> T:\n    return xs[0]\n",
    "x = f'{'a'}'\n",
    "x = f'{\"a\"}'\n",
    "x = f'{1:{2}}'\n",
    "def f[T = int](x: T) -> T:\n    return x\n",
    "for x in *[1], 2:\n    pass\n",
    "def g():\n    return *[1], 2\n",
    "async def f():\n    return [x async for x in y]\n",
    "import torch.distributed as dist\nmatch 1:\n    case 1:\n        type V = int\n",
    "if (n := 1):\n    try:\n        pass\n    except* OSError:\n        pass\n",
];

/// Every fixture source (`tests/fixtures/scan*`, sub-folders too) that is UTF-8.
fn fixtures() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    common::scan_fixtures()
        .into_iter()
        .filter_map(|rel| {
            let text = std::fs::read_to_string(root.join(&rel)).ok()?;
            Some((rel, text))
        })
        .collect()
}

/// Which of `sources` `python` compiles (`compile(text, name, "exec")`), in order.
fn compiles(python: &Path, dir: &Path, sources: &[(String, String)]) -> Vec<bool> {
    for (i, (_, text)) in sources.iter().enumerate() {
        std::fs::write(dir.join(format!("{i}.py")), text).expect("write");
    }
    let script = format!(
        "import sys, warnings\nwarnings.simplefilter('ignore')\nfor i in range({n}):\n    \
         src = open(sys.argv[1] + '/%d.py' % i, encoding='utf-8-sig').read()\n    \
         try:\n        compile(src, '%d.py' % i, 'exec')\n        print(1)\n    \
         except (SyntaxError, ValueError):\n        print(0)\n",
        n = sources.len()
    );
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(dir)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l == "1")
        .collect()
}

#[test]
fn needed_python_matches_what_real_interpreters_compile() {
    let pythons = interpreters();
    let Some(_) = common::need(
        (pythons.len() >= 3 && pythons.iter().any(|(v, _)| *v >= (3, 12))).then_some(()),
        &format!(
            "pyenv interpreters of three Python versions, one of them 3.12 or newer (found {:?})",
            pythons.iter().map(|(v, _)| *v).collect::<Vec<_>>()
        ),
    ) else {
        return;
    };
    let mut sources: Vec<(String, String)> = SNIPPETS
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("snippet {i}"), s.to_string()))
        .collect();
    sources.extend(fixtures());
    let dir = tempfile::tempdir().expect("tempdir");
    let table: Vec<((u32, u32), Vec<bool>)> = pythons
        .iter()
        .map(|(v, py)| (*v, compiles(py, dir.path(), &sources)))
        .collect();
    let newest = &table.last().unwrap().1;
    let mut bad = Vec::new();
    let mut checked = 0;
    let mut broken = Vec::new();
    let mut needs_new = 0;
    for (i, (name, text)) in sources.iter().enumerate() {
        if !newest[i] {
            broken.push(name.clone());
            continue;
        }
        checked += 1;
        let needed = needed_python(text).map(|n| n.version);
        if needed.is_some_and(|v| v > (3, 8)) {
            needs_new += 1;
        }
        for (version, ok) in &table {
            let says = needed.is_none_or(|n| *version >= n);
            if ok[i] != says {
                bad.push(format!(
                    "{name}: Python {}.{} {} it, doctor says it needs {needed:?}",
                    version.0,
                    version.1,
                    if ok[i] { "compiles" } else { "rejects" }
                ));
            }
        }
    }
    eprintln!(
        "{checked} sources x {} interpreters ({:?}); {needs_new} need more than 3.8; left out (no interpreter compiles them): {broken:?}",
        table.len(),
        table.iter().map(|(v, _)| *v).collect::<Vec<_>>()
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    assert!(
        needs_new >= 15,
        "only {needs_new} sources need a newer Python"
    );
    assert!(
        broken.len() <= 6,
        "too many sources compile nowhere: {broken:?}"
    );
}
