//! The layout holds: data flows one way, `sys` (every OS access) -> `model` (Snapshot, Finding)
//! -> `analysis` -> `render`, `cmd/` on top, `scan/` beside analysis with its own render, and no
//! module of a folder imports, through any chain, a module that imports it back.
//!
//! Every `.rs` file under `src/` is parsed (syn); every path that names this crate (`crate::`,
//! `super::`, `self::`, `ddp_doctor::` in main.rs) is resolved to the module it reaches, through
//! `use` trees, expressions, types, patterns and macro arguments (token scan). Re-exports of a
//! `mod.rs` (`pub use facts::{Analysis, Role}`) count as the child that defines the name. Crates
//! that reach the OS (nix, libc, rustix, procfs-core, sysinfo) belong to `sys`; clap to `cmd`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// What each top-level module may import from the others (its own folder is always allowed;
/// `error` is the crate's one error type, below everything).
const MAY_IMPORT: &[(&str, &[&str])] = &[
    ("error", &[]),
    ("model", &["error"]),
    ("sys", &["error", "model"]),
    ("analysis", &["error", "model"]),
    ("scan", &["error", "model", "sys"]),
    ("render", &["error", "model", "analysis"]),
    (
        "cmd",
        &["error", "model", "sys", "analysis", "scan", "render"],
    ),
];

/// External crates that reach the operating system: only `sys` may use them.
const OS_CRATES: &[&str] = &["nix", "libc", "rustix", "procfs_core", "sysinfo"];

/// Known breaches, each waiting for its fix: (file, what it reaches). Every entry must still be
/// a breach (the test fails on a stale one), so the list only shrinks.
///
const ALLOWED: &[(&str, &str)] = &[];

/// Folders with a known circle, each waiting for its fix (the test fails once it is gone).
const ALLOWED_CIRCLES: &[&str] = &[];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// One source file and the module path it defines (`src/analysis/rules/d001.rs` ->
/// `analysis::rules::d001`; `src/main.rs` -> `main`, the binary, on top of everything).
struct File {
    rel: String,
    module: Vec<String>,
    ast: syn::File,
}

fn files() -> Vec<File> {
    let mut out = Vec::new();
    let mut stack = vec![src()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(src()).unwrap();
                let mut module: Vec<String> = rel
                    .with_extension("")
                    .iter()
                    .map(|s| s.to_string_lossy().into_owned())
                    .collect();
                if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
                    module.pop();
                }
                let text = std::fs::read_to_string(&p).unwrap();
                let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                out.push(File {
                    rel: format!("src/{}", rel.display()),
                    module,
                    ast,
                });
            }
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    out
}

/// Every path of one file that names something, as written (segments), with the module it is
/// written in (inline `mod tests { ... }` included), and every external crate named.
#[derive(Default)]
struct Refs {
    /// (module the path is written in, segments)
    paths: Vec<(Vec<String>, Vec<String>)>,
    /// first segments of paths and `use` trees (crate names among them)
    roots: BTreeSet<String>,
}

struct Collector<'a> {
    module: Vec<String>,
    refs: &'a mut Refs,
}

impl Collector<'_> {
    fn push(&mut self, segs: Vec<String>) {
        if let Some(first) = segs.first() {
            self.refs.roots.insert(first.clone());
        }
        self.refs.paths.push((self.module.clone(), segs));
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                let mut s = prefix.clone();
                if n.ident != "self" {
                    s.push(n.ident.to_string());
                }
                self.push(s);
            }
            syn::UseTree::Rename(r) => {
                let mut s = prefix.clone();
                if r.ident != "self" {
                    s.push(r.ident.to_string());
                }
                self.push(s);
            }
            syn::UseTree::Glob(_) => self.push(prefix.clone()),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
        }
    }

    /// `a::b::c` sequences inside macro arguments (format!, matches!, assert!, ...).
    fn tokens(&mut self, tokens: proc_macro2::TokenStream) {
        let flat: Vec<proc_macro2::TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < flat.len() {
            match &flat[i] {
                proc_macro2::TokenTree::Group(g) => self.tokens(g.stream()),
                proc_macro2::TokenTree::Ident(id) => {
                    let mut segs = vec![id.to_string()];
                    let mut j = i + 1;
                    while j + 2 < flat.len() + 1 {
                        let colons = matches!((flat.get(j), flat.get(j + 1)),
                            (Some(proc_macro2::TokenTree::Punct(a)), Some(proc_macro2::TokenTree::Punct(b)))
                                if a.as_char() == ':' && b.as_char() == ':');
                        match (colons, flat.get(j + 2)) {
                            (true, Some(proc_macro2::TokenTree::Ident(next))) => {
                                segs.push(next.to_string());
                                j += 3;
                            }
                            _ => break,
                        }
                    }
                    if segs.len() > 1 {
                        self.push(segs);
                    }
                    i = j;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
    }
}

impl<'ast> Visit<'ast> for Collector<'_> {
    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &u.tree);
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segs: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        if segs.len() > 1 {
            self.push(segs);
        }
        syn::visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        syn::visit::visit_macro(self, m);
        self.tokens(m.tokens.clone());
    }

    fn visit_attribute(&mut self, a: &'ast syn::Attribute) {
        // `#[derive(clap::ValueEnum)]`, `#[serde(with = "...")]`: paths inside attribute tokens.
        if let syn::Meta::List(l) = &a.meta {
            self.tokens(l.tokens.clone());
        }
        syn::visit::visit_attribute(self, a);
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        self.module.push(m.ident.to_string());
        syn::visit::visit_item_mod(self, m);
        self.module.pop();
    }
}

fn refs(f: &File) -> Refs {
    let mut refs = Refs::default();
    let module = if f.rel == "src/main.rs" {
        vec!["main".to_string()]
    } else {
        f.module.clone()
    };
    Collector {
        module,
        refs: &mut refs,
    }
    .visit_file(&f.ast);
    refs
}

/// The absolute module path a path reaches (`crate::a::b` -> `[a, b]`), or None when it names
/// something outside this crate.
fn resolve(module: &[String], segs: &[String]) -> Option<Vec<String>> {
    let (first, rest) = segs.split_first()?;
    match first.as_str() {
        "crate" | "ddp_doctor" => Some(rest.to_vec()),
        "self" => Some(module.iter().chain(rest).cloned().collect()),
        "super" => {
            let mut base = module.to_vec();
            let mut rest = segs;
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
            Some(base.into_iter().chain(rest.iter().cloned()).collect())
        }
        _ => None,
    }
}

/// For every module with children: the names its `pub use child::...` re-exports, and the
/// child that defines each.
fn reexports(files: &[File]) -> BTreeMap<Vec<String>, BTreeMap<String, String>> {
    let mut out: BTreeMap<Vec<String>, BTreeMap<String, String>> = BTreeMap::new();
    for f in files {
        for item in &f.ast.items {
            let syn::Item::Use(u) = item else { continue };
            if matches!(u.vis, syn::Visibility::Inherited) {
                continue;
            }
            let mut c = Refs::default();
            Collector {
                module: f.module.clone(),
                refs: &mut c,
            }
            .use_tree(&mut Vec::new(), &u.tree);
            for (_, segs) in c.paths {
                let Some(abs) = resolve(&f.module, &segs).or_else(|| {
                    // `pub use facts::Analysis` in a mod.rs: relative to the module.
                    Some(f.module.iter().chain(&segs).cloned().collect())
                }) else {
                    continue;
                };
                if abs.len() > f.module.len() + 1
                    && abs.starts_with(&f.module)
                    && let Some(name) = segs.last()
                {
                    out.entry(f.module.clone())
                        .or_default()
                        .insert(name.clone(), abs[f.module.len()].clone());
                }
            }
        }
    }
    out
}

/// Every module (file) and the crate modules it reaches: absolute paths, re-exports followed one
/// level (a name re-exported by a mod.rs counts as the child that defines it).
fn edges(files: &[File]) -> Vec<(String, Vec<String>, Vec<Vec<String>>)> {
    let re = reexports(files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| f.module.clone()).collect();
    files
        .iter()
        .map(|f| {
            let r = refs(f);
            let mut reached = Vec::new();
            for (module, segs) in &r.paths {
                let Some(mut abs) = resolve(module, segs) else {
                    // a path relative to a `use`d child module of this file's folder
                    continue;
                };
                // follow a re-export: `analysis::Analysis` is `analysis::facts::Analysis`
                for n in 0..abs.len() {
                    let prefix = abs[..n].to_vec();
                    if let Some(child) = re.get(&prefix).and_then(|m| m.get(&abs[n]))
                        && !modules.contains(&abs[..=n])
                    {
                        abs.insert(n, child.clone());
                        break;
                    }
                }
                reached.push(abs);
            }
            (f.rel.clone(), f.module.clone(), reached)
        })
        .collect()
}

fn layer(module: &[String]) -> &str {
    module.first().map(String::as_str).unwrap_or("")
}

fn breaches() -> BTreeSet<(String, String)> {
    let files = files();
    let mut out = BTreeSet::new();
    for (rel, module, reached) in edges(&files) {
        let from = if rel == "src/main.rs" {
            "main"
        } else {
            layer(&module)
        };
        let allowed = MAY_IMPORT.iter().find(|(l, _)| *l == from).map(|(_, a)| *a);
        for abs in &reached {
            let to = layer(abs);
            let Some(allowed) = allowed else { continue };
            if to.is_empty() || to == from || !MAY_IMPORT.iter().any(|(l, _)| *l == to) {
                continue;
            }
            if !allowed.contains(&to) {
                out.insert((rel.clone(), abs.join("::")));
            }
        }
    }
    for f in &files {
        let from = if f.rel == "src/main.rs" {
            "main"
        } else {
            layer(&f.module)
        };
        let r = refs(f);
        for root in &r.roots {
            if OS_CRATES.contains(&root.as_str()) && from != "sys" {
                out.insert((f.rel.clone(), root.clone()));
            }
            if root == "clap" && !matches!(from, "cmd" | "main") {
                out.insert((f.rel.clone(), root.clone()));
            }
        }
    }
    out
}

/// A breach reported as (file, the module or crate it reaches); the allow-list matches the
/// file and the reached path's first element(s).
fn allowed(b: &(String, String)) -> bool {
    ALLOWED
        .iter()
        .any(|(f, what)| b.0 == *f && (b.1 == *what || b.1.starts_with(&format!("{what}::"))))
}

#[test]
fn imports_follow_the_flow() {
    let found = breaches();
    let bad: Vec<_> = found.iter().filter(|b| !allowed(b)).collect();
    assert!(
        bad.is_empty(),
        "imports against sys -> model -> analysis -> render (cmd on top, scan beside analysis; \
         OS crates only in sys, clap only in cmd):\n{}",
        bad.iter()
            .map(|(f, w)| format!("  {f} -> {w}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let stale: Vec<_> = ALLOWED
        .iter()
        .filter(|(f, w)| {
            !found
                .iter()
                .any(|b| b.0 == *f && (b.1 == *w || b.1.starts_with(&format!("{w}::"))))
        })
        .collect();
    assert!(stale.is_empty(), "fixed, take off ALLOWED: {stale:?}");
}

/// Within each folder, the graph of its modules (files and sub-folders) has no cycle.
#[test]
fn no_circle_between_modules_of_one_folder() {
    let files = files();
    // folder -> (child -> children it reaches)
    let mut graphs: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (_, module, reached) in edges(&files) {
        for depth in 0..module.len() {
            let folder = &module[..depth];
            let me = &module[depth];
            for abs in &reached {
                if abs.len() > depth && abs.starts_with(folder) && &abs[depth] != me {
                    graphs
                        .entry(folder.to_vec())
                        .or_default()
                        .entry(me.clone())
                        .or_default()
                        .insert(abs[depth].clone());
                }
            }
        }
    }
    // A type's inherent `impl` in a sibling file: the file defining the type calls into it.
    for (folder, definer, implementer) in split_impls(&files) {
        graphs
            .entry(folder)
            .or_default()
            .entry(definer)
            .or_default()
            .insert(implementer);
    }
    let mut circles = Vec::new();
    let mut waiting = BTreeSet::new();
    for (folder, graph) in &graphs {
        let mut graph = graph.clone();
        let name = if folder.is_empty() {
            "crate".to_string()
        } else {
            folder.join("::")
        };
        while let Some(c) = find_cycle(&graph) {
            if ALLOWED_CIRCLES.contains(&name.as_str()) {
                waiting.insert(name.clone());
            } else {
                circles.push(format!("  {name}: {}", c.join(" -> ")));
            }
            // report every circle, not only the first: cut the edge that closed this one
            let (a, b) = (&c[c.len() - 2], &c[c.len() - 1]);
            graph.get_mut(a).unwrap().remove(b);
        }
    }
    let stale: Vec<_> = ALLOWED_CIRCLES
        .iter()
        .filter(|f| !waiting.contains(**f))
        .collect();
    assert!(
        stale.is_empty(),
        "no circle left, take off ALLOWED_CIRCLES: {stale:?}"
    );
    assert!(
        circles.is_empty(),
        "circles between modules of one folder:\n{}",
        circles.join("\n")
    );
}

/// (folder, module that defines a type, sibling module with an inherent `impl` of it that the
/// defining module calls: a method of that impl is called or named in the defining file).
fn split_impls(files: &[File]) -> Vec<(Vec<String>, String, String)> {
    let mut defined: BTreeMap<(Vec<String>, String), BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let Some((me, folder)) = f.module.split_last() else {
            continue;
        };
        for item in &f.ast.items {
            let name = match item {
                syn::Item::Struct(s) => s.ident.to_string(),
                syn::Item::Enum(e) => e.ident.to_string(),
                _ => continue,
            };
            defined
                .entry((folder.to_vec(), name))
                .or_default()
                .insert(me.clone());
        }
    }
    let mut out = Vec::new();
    for f in files {
        let Some((me, folder)) = f.module.split_last() else {
            continue;
        };
        for item in &f.ast.items {
            let syn::Item::Impl(i) = item else { continue };
            if i.trait_.is_some() {
                continue;
            }
            let syn::Type::Path(t) = &*i.self_ty else {
                continue;
            };
            let Some(name) = t.path.segments.last().map(|s| s.ident.to_string()) else {
                continue;
            };
            let Some(definers) = defined.get(&(folder.to_vec(), name)) else {
                continue;
            };
            if definers.len() != 1 || definers.contains(me) {
                continue;
            }
            let definer = definers.first().unwrap().clone();
            let methods: BTreeSet<String> = i
                .items
                .iter()
                .filter_map(|it| match it {
                    syn::ImplItem::Fn(f) => Some(f.sig.ident.to_string()),
                    _ => None,
                })
                .collect();
            let Some(def_file) = files
                .iter()
                .find(|g| g.module.split_last() == Some((&definer, folder)))
            else {
                continue;
            };
            let mut calls = Calls::default();
            calls.visit_file(&def_file.ast);
            if calls.0.iter().any(|c| methods.contains(c)) {
                out.push((folder.to_vec(), definer, me.clone()));
            }
        }
    }
    out
}

/// Names of methods called (`x.m()`) and last segments of paths (`Self::m`, `Type::m`).
#[derive(Default)]
struct Calls(BTreeSet<String>);

impl<'ast> Visit<'ast> for Calls {
    fn visit_expr_method_call(&mut self, m: &'ast syn::ExprMethodCall) {
        self.0.insert(m.method.to_string());
        syn::visit::visit_expr_method_call(self, m);
    }

    fn visit_expr_path(&mut self, p: &'ast syn::ExprPath) {
        if let Some(last) = p.path.segments.last() {
            self.0.insert(last.ident.to_string());
        }
        syn::visit::visit_expr_path(self, p);
    }
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn dfs(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == n) {
            let mut c = stack[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = dfs(m, g, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        if let Some(c) = dfs(n, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

/// The checker sees what it must: a planted breach of each kind is found (so the test above
/// cannot pass by seeing nothing).
#[test]
fn the_checker_finds_planted_breaches() {
    let module: Vec<String> = vec!["analysis".into(), "rules".into(), "d001".into()];
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        resolve(&module, &s(&["super", "super", "facts", "X"])),
        Some(s(&["analysis", "facts", "X"]))
    );
    assert_eq!(
        resolve(&module, &s(&["crate", "sys", "proc"])),
        Some(s(&["sys", "proc"]))
    );
    assert_eq!(resolve(&module, &s(&["std", "fs"])), None);
    let ast: syn::File = syn::parse_str(
        "use crate::{sys::proc::{self, Proc}, model::x as y};\n\
         fn f() { let _ = format!(\"{}\", crate::render::paint(1)); nix::unistd::getpid(); }\n\
         mod tests { use super::super::scan::Thing; }",
    )
    .unwrap();
    let f = File {
        rel: "src/analysis/rules/d001.rs".into(),
        module,
        ast,
    };
    let r = refs(&f);
    let got: BTreeSet<Vec<String>> = r.paths.iter().filter_map(|(m, p)| resolve(m, p)).collect();
    for want in [
        s(&["sys", "proc"]),
        s(&["sys", "proc", "Proc"]),
        s(&["model", "x"]),
        s(&["render", "paint"]),
        s(&["analysis", "rules", "scan", "Thing"]),
    ] {
        assert!(got.contains(&want), "{want:?} not in {got:?}");
    }
    assert!(r.roots.contains("nix"));
    let mut g = BTreeMap::new();
    g.insert("proc".to_string(), BTreeSet::from(["cgroup".to_string()]));
    g.insert(
        "cgroup".to_string(),
        BTreeSet::from(["blocked".to_string()]),
    );
    g.insert("blocked".to_string(), BTreeSet::from(["proc".to_string()]));
    assert_eq!(find_cycle(&g).map(|c| c.len()), Some(4));
    g.remove("blocked");
    assert_eq!(find_cycle(&g), None);
}

/// Each D and M code is made in its own rule file only (`Finding::new(Rule::D001, ..)` in
/// `d001_*.rs`, `finding(Rule::M001, ..)` in `m001_*.rs`), so one file says what it means.
#[test]
fn each_code_is_made_in_its_rule_file() {
    let made = regex::Regex::new(r"(?:Finding::new|\bfinding)\(\s*Rule::([DM]\d{3})\b").unwrap();
    let mut wrong = Vec::new();
    let mut seen = BTreeSet::new();
    for f in files() {
        let text = std::fs::read_to_string(src().join(f.rel.trim_start_matches("src/"))).unwrap();
        for c in made.captures_iter(&text) {
            let code = c[1].to_lowercase();
            seen.insert(code.clone());
            let file = f.rel.rsplit('/').next().unwrap_or_default();
            if !file.starts_with(&format!("{code}_")) {
                wrong.push(format!("  {} makes {}", f.rel, &c[1]));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "codes made outside their rule file:\n{}",
        wrong.join("\n")
    );
    assert!(seen.len() >= 19, "the check saw only {seen:?}");
}

/// Every syntax-tree walk goes through the one depth guard: only `scan/walk.rs` implements ruff's
/// `Visitor` (for `Guarded`); a walk elsewhere implements `Walk`, so it cannot skip the guard.
#[test]
fn only_the_depth_guard_is_a_visitor() {
    let visitor = regex::Regex::new(r"\bimpl\b[^{;]*\bVisitor\s*<[^>]*>\s+for\b").unwrap();
    let mut found = BTreeSet::new();
    for f in files() {
        let text = std::fs::read_to_string(src().join(f.rel.trim_start_matches("src/"))).unwrap();
        if visitor.is_match(&text) {
            found.insert(f.rel);
        }
    }
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        ["src/scan/walk.rs"],
        "files implementing ruff's Visitor (a walk implements scan::walk::Walk instead)"
    );
}
