//! `doctor explain CODE` and the finding pages: one source (the doc comments of the `rules!`
//! table in src/model/rule.rs), docs/findings/*.md generated from it and failing here when stale
//! (`DOCTOR_BLESS=1 cargo test --test explain` regenerates them), every code explained by the
//! binary exactly as its page says, and bad codes refused with `error:` + `hint:`, exit 2.

mod common;

use std::path::PathBuf;

use common::*;
use ddp_doctor::model::rule::{DOCS_URL, Rule};
use ddp_doctor::render::explain::{GENERATED, generated_index, generated_page};

fn findings_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/findings")
}

/// Every generated file: a page per code and the index.
fn generated() -> Vec<(PathBuf, String)> {
    let dir = findings_dir();
    let mut files: Vec<(PathBuf, String)> = Rule::ALL
        .iter()
        .map(|r| (dir.join(format!("{}.md", r.code())), generated_page(*r)))
        .collect();
    files.push((dir.join("README.md"), generated_index()));
    files
}

#[test]
fn finding_pages_are_generated_from_the_source() {
    let bless = std::env::var_os("DOCTOR_BLESS").is_some();
    let files = generated();
    let mut stale = Vec::new();
    for (path, want) in &files {
        if bless {
            std::fs::write(path, want).unwrap();
        }
        if std::fs::read_to_string(path).ok().as_deref() != Some(want.as_str()) {
            stale.push(path.display().to_string());
        }
    }
    // A page of a code that is no more (or any hand-written file) is stale too.
    for entry in std::fs::read_dir(findings_dir()).unwrap() {
        let path = entry.unwrap().path();
        if !files.iter().any(|(p, _)| *p == path) {
            if bless {
                std::fs::remove_file(&path).unwrap();
            } else {
                stale.push(format!("{} (no such code)", path.display()));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "stale finding pages (edit the doc comments in src/model/rule.rs, then \
         DOCTOR_BLESS=1 cargo test --test explain): {stale:#?}"
    );
}

/// A hand edit of a generated page is found: the check above is not vacuous.
#[test]
fn a_hand_edited_page_is_stale() {
    for r in Rule::ALL {
        let page = generated_page(*r);
        assert!(page.starts_with(GENERATED), "{r}");
        let edited = page.replacen("**", "*", 1);
        assert_ne!(edited, page, "{r}: the page has no bold heading to edit");
    }
}

#[test]
fn explain_prints_every_page() {
    for r in Rule::ALL {
        for spelling in [r.code().to_string(), r.code().to_lowercase()] {
            let out = run(&["explain", &spelling]);
            assert_eq!(out.status.code(), Some(0), "{r}: {out:?}");
            let text = String::from_utf8(out.stdout).unwrap();
            assert_eq!(text, r.page(), "{r}");
            assert!(out.stderr.is_empty(), "{r}: stderr {:?}", out.stderr);
            let generated =
                std::fs::read_to_string(findings_dir().join(format!("{r}.md"))).unwrap_or_default();
            assert!(
                generated.ends_with(&text),
                "{r}: `doctor explain` and docs/findings differ"
            );
        }
        // What, why, fix, example: every page has all four.
        let page = r.page().to_lowercase();
        for part in ["what", "why", "fix", "example"] {
            assert!(page.contains(part), "{r}: the page has no '{part}'");
        }
        let (doc, code) = json(&["explain", r.code(), "--format", "json"]);
        assert_eq!(code, 0);
        assert_eq!(doc["kind"], "doctor-explain");
        assert_eq!(doc["code"], r.code());
        assert_eq!(doc["name"], r.name());
        assert_eq!(doc["page"], r.page());
        assert_eq!(doc["url"], format!("{DOCS_URL}{r}"));
    }
}

#[test]
fn the_list_names_every_code() {
    for args in [&["explain"][..], &["explain", "--list"]] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(0));
        let text = String::from_utf8(out.stdout).unwrap();
        for r in Rule::ALL {
            let line = text
                .lines()
                .find(|l| l.split_whitespace().next() == Some(r.code()))
                .unwrap_or_else(|| panic!("{r} not listed:\n{text}"));
            assert!(line.contains(r.name()), "{line}");
            assert!(line.contains(r.severity().as_str()), "{line}");
        }
    }
    let (doc, _) = json(&["explain", "--list", "--format", "json"]);
    let codes: Vec<&str> = doc["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap())
        .collect();
    let all: Vec<&str> = Rule::ALL.iter().map(|r| r.code()).collect();
    assert_eq!(codes, all);
}

/// Unknown codes, the neighbours of real ones, names shared by two codes, control characters:
/// `error:` + `hint:` naming the codes, exit 2, nothing on stdout.
#[test]
fn bad_codes_are_refused_with_a_hint() {
    let mut words: Vec<String> = vec![
        "D000".into(),
        "D010".into(),
        "M011".into(),
        "S004".into(),
        "S901".into(),
        "X001".into(),
        "D1".into(),
        "".into(),
        "D001x".into(),
        "port-held-by-other-job".into(),
        "\x1b[31mD001".into(),
        "ü".into(),
    ];
    for r in Rule::ALL {
        words.push(format!("{}0", r.code()));
        words.push(format!("{} {}", r.code(), r.code()));
    }
    for w in &words {
        let out = run(&["explain", w]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{w:?}: {err}");
        assert!(out.stdout.is_empty(), "{w:?}");
        let lines: Vec<&str> = err.lines().collect();
        assert!(lines[0].starts_with("error: "), "{w:?}: {err}");
        assert!(
            lines.iter().any(|l| l.starts_with("hint: ")),
            "{w:?}: {err}"
        );
        assert!(
            !err.contains('\x1b'),
            "{w:?}: raw escape on stderr: {err:?}"
        );
        assert!(!err.contains("panicked"), "{w:?}: {err}");
    }
    let out = run(&["explain", "D010"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("D001-D009, M001-M010, S001-S003, S900"),
        "the hint lists the codes: {err}"
    );
}

/// One `$ doctor ...` example in a page: the command line and the lines the page shows after it
/// (up to the next `$ ` line or the end of the block).
struct Example {
    command: String,
    shown: Vec<String>,
    /// The `$ echo $?` line's value, when the page shows one.
    exit: Option<i32>,
}

fn examples(page: &str) -> Vec<Example> {
    let mut out: Vec<Example> = Vec::new();
    let mut in_block = false;
    let mut current: Option<Example> = None;
    let mut exit_next = false;
    for line in page.lines() {
        if line.starts_with("```") {
            in_block = !in_block;
            out.extend(current.take());
            continue;
        }
        if !in_block {
            continue;
        }
        if let Some(cmd) = line.strip_prefix("$ doctor ") {
            out.extend(current.take());
            current = Some(Example {
                command: cmd.to_string(),
                shown: Vec::new(),
                exit: None,
            });
        } else if line == "$ echo $?" {
            exit_next = true;
        } else if exit_next {
            exit_next = false;
            if let Some(e) = current.as_mut() {
                e.exit = line.trim().parse().ok();
            }
        } else if let Some(e) = current.as_mut() {
            e.shown.push(line.to_string());
        }
    }
    out
}

/// The arguments of an example that runs on files of this repository alone (`scan`, or `merge`
/// of the fixture reports; a glob `*` in the last path part expanded), else None.
fn runnable(command: &str) -> Option<Vec<String>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut args = Vec::new();
    for word in command.split_whitespace() {
        if word.starts_with('#') {
            return None;
        }
        if word.ends_with(".yaml") || word.ends_with(".py") {
            // A file: a path of this repository, else the example needs more than it.
            let (dir, pat) = word.rsplit_once('/')?;
            if let Some((pre, post)) = pat.split_once('*') {
                let mut names: Vec<String> = std::fs::read_dir(root.join(dir))
                    .ok()?
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(pre) && n.ends_with(post))
                    .collect();
                names.sort();
                args.extend(names.into_iter().map(|n| format!("{dir}/{n}")));
                continue;
            }
            if !root.join(word).exists() {
                return None;
            }
        }
        args.push(word.to_string());
    }
    matches!(args.first().map(String::as_str), Some("scan" | "merge")).then_some(args)
}

/// The examples that need nothing but this repository (scan of the fixtures, merge of the
/// fixture reports) are run: the page shows what the binary prints now (stdout, then stderr, as
/// a terminal shows them), and the exit code where the page shows one. With DOCTOR_BLESS=1 the
/// doc comments in src/model/rule.rs are rewritten to the real output.
#[test]
fn runnable_examples_show_the_real_output() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let source_path = root.join("src/model/rule.rs");
    let mut source = std::fs::read_to_string(&source_path).unwrap();
    let bless = std::env::var_os("DOCTOR_BLESS").is_some();
    let mut ran = 0;
    let mut stale = Vec::new();
    for r in Rule::ALL {
        for ex in examples(&r.page()) {
            let Some(args) = runnable(&ex.command) else {
                continue;
            };
            ran += 1;
            let out = doctor().current_dir(&root).args(&args).output().unwrap();
            let mut real = String::from_utf8_lossy(&out.stdout).into_owned();
            real.push_str(&String::from_utf8_lossy(&out.stderr));
            let real: Vec<String> = real.trim_end().lines().map(str::to_string).collect();
            let shown: Vec<String> = {
                let mut s = ex.shown.clone();
                while s.last().is_some_and(|l| l.is_empty()) {
                    s.pop();
                }
                s
            };
            let exit_ok = ex.exit.is_none() || ex.exit == out.status.code();
            if real != shown || !exit_ok {
                stale.push(format!("{r}: doctor {}", ex.command));
                if bless && !shown.is_empty() {
                    let as_doc = |lines: &[String]| {
                        lines
                            .iter()
                            .map(|l| format!("    /// {l}").trim_end().to_string() + "\n")
                            .collect::<String>()
                    };
                    let cmd_line = format!("    /// $ doctor {}\n", ex.command);
                    let old = format!("{cmd_line}{}", as_doc(&shown));
                    let new = format!("{cmd_line}{}", as_doc(&real));
                    assert!(
                        source.contains(&old),
                        "{r}: example not found in the source"
                    );
                    source = source.replacen(&old, &new, 1);
                }
            }
        }
    }
    if bless {
        std::fs::write(&source_path, &source).unwrap();
        return;
    }
    assert!(ran >= 8, "only {ran} runnable examples");
    assert!(
        stale.is_empty(),
        "examples that no longer show the real output (DOCTOR_BLESS=1 cargo test --test explain \
         rewrites them in src/model/rule.rs, then again to regenerate docs/findings): {stale:#?}"
    );
}

/// The examples that need live processes (ports, tree, run) show the output's current shape: the
/// table header `doctor ports` prints now (from a real listener) and `= fix:` lines.
#[test]
fn live_examples_have_the_current_shape() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let out = run(&["ports", "--port", &port]);
    let table = String::from_utf8_lossy(&out.stdout);
    let header = table.lines().next().unwrap().trim_end().to_string();
    assert!(
        header.contains("PID") && header.contains("COMMAND"),
        "{table}"
    );
    let header_words: Vec<&str> = header.split_whitespace().collect();
    let mut bad = Vec::new();
    for r in Rule::ALL {
        let page = r.page();
        let mut in_block = false;
        let mut after_ports = false;
        for line in page.lines() {
            if line.starts_with("```") {
                in_block = !in_block;
                continue;
            }
            if !in_block {
                continue;
            }
            if line.starts_with("  fix: ") {
                bad.push(format!("{r}: `fix:` where doctor prints `= fix:`: {line}"));
            }
            if after_ports {
                let words: Vec<&str> = line.split_whitespace().collect();
                if words != header_words {
                    bad.push(format!("{r}: an old table header: {line}"));
                }
            }
            after_ports = line.starts_with("$ doctor ports") && !line.contains("--format");
        }
    }
    drop(listener);
    assert!(bad.is_empty(), "{bad:#?}");
}

/// A line of finding text as far as its wording goes: interpreter paths, the helpers' folder and
/// every number (pids, ports, ages, job names) masked.
fn wording(line: &str) -> String {
    let py = regex::Regex::new(r"\S*/python[\d.]*").unwrap();
    let helpers = regex::Regex::new(r"\S*tests/helpers/").unwrap();
    let digits = regex::Regex::new(r"\d+").unwrap();
    let s = py.replace_all(line, "PY");
    let s = helpers.replace_all(&s, "");
    digits.replace_all(&s, "N").trim_end().to_string()
}

/// A port for a situation in the same range as the page's `port`: inside the ephemeral range
/// when the page's is (D004 is about that), else below it.
fn port_like(port: u16) -> u16 {
    let lo: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    if port < lo {
        return free_low_port();
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `doctor ports` examples of the runtime pages and of README.md that a helper of this
/// repository sets up (`situations.py MODE PORT`, `verdicts.py MODE PORT`: stdlib only) are set
/// up again on a free port of the same range, and every finding line the page shows
/// (`error[...]`, `= fix:`, `see:`) must be what the binary prints now, numbers and paths
/// aside: a page whose message or fix wording went stale fails here. (D009's example needs torch
/// and 25 s of waiting; its shape is checked by the launcher matrix.)
#[test]
fn situation_examples_show_the_current_wording() {
    let reference =
        regex::Regex::new(r"`(?:tests/helpers/)?(situations|verdicts)\.py ([\w-]+) (\d+)`")
            .unwrap();
    let mut checked = 0;
    let mut stale = Vec::new();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let pages = Rule::ALL
        .iter()
        .filter(|r| r.code().starts_with('D'))
        .map(|r| (r.code().to_string(), r.page()))
        .chain([("README.md".to_string(), readme)]);
    for (r, page) in pages {
        let mut pending: Option<(String, String, u16)> = None;
        let mut in_block = false;
        let mut block: Vec<&str> = Vec::new();
        for line in page.lines() {
            if line.starts_with("```") {
                in_block = !in_block;
                if in_block {
                    block.clear();
                    continue;
                }
                let Some((helper_name, mode, page_port)) = pending.take() else {
                    continue;
                };
                let Some(cmd) = block.first().and_then(|l| l.strip_prefix("$ doctor ")) else {
                    continue;
                };
                if !cmd.starts_with("ports") || !cmd.contains(&page_port.to_string()) {
                    continue;
                }
                let port = port_like(page_port);
                let _situation = Situation::start_cmd(
                    std::process::Command::new(python())
                        .arg(helper(&format!("{helper_name}.py")))
                        .arg(&mode)
                        .arg(port.to_string()),
                );
                let args: Vec<String> = cmd
                    .split_whitespace()
                    .map(|a| a.replace(&page_port.to_string(), &port.to_string()))
                    .collect();
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let out = run(&args);
                let printed: Vec<String> = String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .chain(String::from_utf8_lossy(&out.stderr).lines())
                    .map(wording)
                    .collect();
                for shown in block.iter().skip(1) {
                    let finding = ["error[", "warning[", "info[", "  = fix:", "see:"]
                        .iter()
                        .any(|p| shown.starts_with(p));
                    if finding && !printed.contains(&wording(shown)) {
                        stale.push(format!(
                            "{r} ({helper_name}.py {mode}): the page shows\n  {shown}\nbut doctor {} prints\n  {}",
                            args.join(" "),
                            printed.join("\n  ")
                        ));
                    }
                }
                checked += 1;
                continue;
            }
            if in_block {
                block.push(line);
            } else if let Some(c) = reference.captures(line) {
                pending = Some((c[1].to_string(), c[2].to_string(), c[3].parse().unwrap()));
            }
        }
    }
    assert!(checked >= 10, "only {checked} examples were set up");
    assert!(stale.is_empty(), "{}", stale.join("\n\n"));
}
