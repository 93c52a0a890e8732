//! `doctor scan --fix`: moves the import-time launch (S001/S002) under a main guard.
//!
//! What moves is decided by def-use analysis of the module (docs/scan-fix.md): the launch and
//! every later statement go into `def main():`, called from `if __name__ == "__main__":`, except
//! what spawn children need when they import the module: imports, functions, classes, and the
//! statements binding the module names those functions, classes, decorators and default
//! arguments read. Those stay at module level unless they depend on the launch (they launch,
//! call the distributed stack, or read a name that depends on it); then they move with it, and a
//! needed name that must move without depending on the launch refuses the fix with its line.
//! `main()` declares `global` every name the moved statements bind. A launch marked `# noqa`
//! never moves. Edits are textual, by the parser's ranges: the rest of the file (comments, blank
//! lines, indentation, line endings, cookie, shebang) is kept. The result is parsed and scanned
//! again before anyone may write it ([`Fix::Broken`] when that fails). Where safety cannot be
//! shown the file is left alone and [`Fix::Refused`] says why.

mod ambient;
mod layout;
mod names;
mod uses;

use std::collections::HashSet;

use ruff_python_ast::{self as ast, Expr, Stmt};
use ruff_source_file::LineIndex;
use ruff_text_size::{Ranged, TextRange};

use super::Rule;
use super::reach::{Kind, Reach};
use super::symbols::{Guard, Symbols, main_guard};
use layout::{line_end, line_start};
use names::Names;

/// What `--fix` does to one source text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fix {
    /// Nothing to fix (no import-time launch, or the file does not parse).
    Unchanged,
    /// The rewritten source.
    Fixed(String),
    /// A launch at import time that cannot be moved safely, and why.
    Refused(String),
    /// The rewrite failed the fixer's own check (it does not parse, or still launches at
    /// import): nothing may be written. A bug of the fixer, reported as an error.
    Broken(String),
}

/// One file's fix, as `doctor scan --fix/--diff` reports it.
pub struct FileFix {
    pub path: String,
    pub outcome: Fix,
    /// The source before the fix.
    pub before: String,
}

impl FileFix {
    /// `--diff`: a unified diff of the fix (empty when nothing changes).
    pub fn diff(&self) -> String {
        let Fix::Fixed(after) = &self.outcome else {
            return String::new();
        };
        // The path as a person may see it (control characters escaped); the lines themselves are
        // the file's own, so that the diff applies.
        let shown = crate::model::style::escape_control(&self.path);
        // Myers is quadratic in the lines that differ (a fix can move thousands): past the
        // deadline `similar` finishes with a valid, less minimal diff.
        similar::TextDiff::configure()
            .algorithm(similar::Algorithm::Patience)
            .timeout(std::time::Duration::from_secs(1))
            .diff_lines(self.before.as_str(), after.as_str())
            .unified_diff()
            .context_radius(3)
            .header(&shown, &shown)
            .to_string()
    }

    /// The bytes to write over a file that now holds `current`: the fixed text in the file's
    /// own encoding, provided `current` is still the text that was fixed.
    pub fn encoded(&self, current: &[u8]) -> Result<Vec<u8>, String> {
        let Fix::Fixed(after) = &self.outcome else {
            return Err("there is no fix to write".to_string());
        };
        match super::decode::decode(current) {
            Ok(text) if text == self.before => {}
            _ => return Err("it changed since it was scanned".to_string()),
        }
        super::decode::encode_like(current, after)
            .map_err(|e| format!("the fix cannot be encoded like the file: {e}"))
    }

    /// Write the fixed text to a new file `dest` (in a directory of doctor's own, for a copy
    /// of the script), encoded as the original file is. Never replaces an existing file.
    pub fn write_to(&self, dest: &std::path::Path) -> anyhow::Result<()> {
        use anyhow::Context;
        let original = crate::sys::source::read_regular(
            std::path::Path::new(&self.path),
            super::decode::MAX_FILE_BYTES,
        )
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", self.path))?;
        let bytes = self
            .encoded(&original)
            .map_err(|e| anyhow::anyhow!("cannot write the fix of {}: {e}", self.path))?;
        crate::sys::source::create_new(dest, &bytes)
            .with_context(|| format!("cannot write {}", dest.display()))
    }
}

/// The fix for a scanned file: only files with S001/S002 findings are rewritten.
pub fn fix_report(report: &super::FileReport) -> Option<FileFix> {
    let source = report.source.as_deref()?;
    if !report
        .diagnostics
        .iter()
        .any(|d| d.code == Rule::S001 || d.code == Rule::S002)
    {
        return None;
    }
    let outcome = if report.path == "<stdin>" {
        Fix::Refused("stdin cannot be rewritten in place; use --diff".to_string())
    } else {
        fix_source_at(source, std::path::Path::new(&report.path))
    };
    Some(FileFix {
        path: report.path.clone(),
        outcome,
        before: source.to_string(),
    })
}

/// The rewrite of `source` that moves its import-time launch under a main guard.
pub fn fix_source(source: &str) -> Fix {
    super::on_big_stack(source.len(), || fix_here(source, None))
}

/// [`fix_source`] for the file at `path`, whose star imports of sibling modules count.
pub fn fix_source_at(source: &str, path: &std::path::Path) -> Fix {
    super::on_big_stack(source.len(), || fix_here(source, Some(path)))
}

fn fix_here(source: &str, path: Option<&std::path::Path>) -> Fix {
    let Ok(parsed) = ruff_python_parser::parse_module(source) else {
        return Fix::Unchanged;
    };
    let body = &parsed.syntax().body;
    // Part of the file was not checked (S900): a rewrite of the rest could leave a launch behind.
    if let Some(at) = super::walk::cut_at(body) {
        let line = LineIndex::from_source_text(source)
            .line_column(at.start(), source)
            .line
            .get();
        return Fix::Refused(format!(
            "line {line} is nested more than {} levels deep and was not checked; doctor does not rewrite a file it could not fully check",
            super::walk::MAX_DEPTH
        ));
    }
    let imported = path
        .map(|p| super::star_imported(p, body))
        .unwrap_or_default();
    let sym = Symbols::collect_with(body, &imported);
    let file = File {
        src: source,
        lines: LineIndex::from_source_text(source),
        inside: layout::lines_inside_tokens(source, parsed.tokens()),
    };
    // A launch whose line says `# noqa` (for S001 or S002) stays where it is.
    let (quiet, live): (Vec<TextRange>, Vec<TextRange>) = launch_sites(&sym, body)
        .into_iter()
        .partition(|site| file.suppressed(*site));
    if live.is_empty() {
        return Fix::Unchanged;
    }
    let Some(first) = body
        .iter()
        .position(|s| live.iter().any(|l| s.range().contains_range(*l)))
    else {
        return Fix::Refused("the launch is not in a module-level statement".to_string());
    };
    let items = match plan(&file, &sym, body, first, &live, &quiet) {
        Ok(items) => items,
        Err(why) => return Fix::Refused(why),
    };
    let out = render(&file, body, &items);
    match verify(&out, &imported) {
        Ok(()) => Fix::Fixed(out),
        Err(why) => Fix::Broken(why),
    }
}

/// Where the module launches at import time.
fn launch_sites(sym: &Symbols, body: &[Stmt]) -> Vec<TextRange> {
    Reach::new(sym)
        .module_events(body)
        .into_iter()
        .filter(|e| e.kind == Kind::Launch)
        .map(|e| e.site)
        .collect()
}

/// The fixer's own output must parse and launch nothing at import (but what `# noqa` keeps).
fn verify(out: &str, imported: &std::collections::HashMap<String, String>) -> Result<(), String> {
    let parsed = ruff_python_parser::parse_module(out)
        .map_err(|e| format!("the rewritten text does not parse ({})", e.error))?;
    let body = &parsed.syntax().body;
    let sym = Symbols::collect_with(body, imported);
    let file = File {
        src: out,
        lines: LineIndex::from_source_text(out),
        inside: HashSet::new(),
    };
    if let Some(site) = launch_sites(&sym, body)
        .into_iter()
        .find(|s| !file.suppressed(*s))
    {
        return Err(format!(
            "the rewritten text still launches at import time (line {})",
            file.line_of(usize::from(site.start()))
        ));
    }
    Ok(())
}

/// The source with what the planning needs to know about its text.
struct File<'s> {
    src: &'s str,
    lines: LineIndex,
    /// Line starts inside multi-line strings.
    inside: HashSet<usize>,
}

impl File<'_> {
    fn line_of(&self, off: usize) -> usize {
        self.lines
            .line_index(ruff_text_size::TextSize::try_from(off).unwrap_or_default())
            .get()
    }

    /// Whether the line a finding at `site` is reported on has a `# noqa` for S001 or S002.
    fn suppressed(&self, site: TextRange) -> bool {
        let s = usize::from(site.start()).min(self.src.len());
        let line = &self.src[line_start(self.src, s)..line_end(self.src, s)];
        super::noqa::suppresses(line, Rule::S001) || super::noqa::suppresses(line, Rule::S002)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Stays at module level (import, def, class, and what functions read at import).
    Keep,
    /// Goes into `main()`.
    Move,
    /// An `if __name__ == "__main__":` block whose body goes into `main()`.
    Fold,
}

struct Item<'a> {
    stmt: &'a Stmt,
    role: Role,
    names: Names,
    /// The statement's lines, with the comment lines right above it.
    span: (usize, usize),
    /// Names read while it runs, with what the module functions it calls read (transitively).
    reads: HashSet<String>,
    /// It depends on the launch: it launches, calls the distributed stack, or reads a name an
    /// earlier dependent statement binds.
    tainted: bool,
    /// Why it has to move (set once; a statement that has to move never goes back).
    forced: Option<String>,
    /// The functions it defines and the module names they read when called.
    fns: Vec<uses::FnReads>,
    /// What it changes of, and reads from, the process's state (environment, `sys.path`, ...).
    amb: ambient::Ambient,
    /// Names a walrus binds in it to a value that does not depend on the launch, although the
    /// statement does.
    loose: Vec<String>,
}

/// Decide, for each statement from the first launch on, where it goes; or why nothing can move.
///
/// The launch moves into `main()`, and so does everything after it, except what the module's
/// functions, classes and kept statements read at import (the spawn child imports the module and
/// calls them): such a statement stays at module level unless it depends on the launch. A name
/// that has to move although a function reads it and it does not depend on the launch refuses
/// the fix. Statement order among the moved and among the kept is kept; a kept statement that
/// would then read or rebind a name differently moves instead.
fn plan<'a>(
    file: &File,
    sym: &Symbols,
    body: &'a [Stmt],
    first: usize,
    live: &[TextRange],
    quiet: &[TextRange],
) -> Result<Vec<Item<'a>>, String> {
    let calls = uses::Callables::collect(sym, body);
    let mut needed_before: Vec<(String, String)> = Vec::new();
    for stmt in &body[..first] {
        for f in uses::functions_of(stmt) {
            needed_before.extend(
                f.free
                    .into_iter()
                    .map(|n| (n, format!("function `{}`", f.name))),
            );
        }
    }
    let imported_modules: HashSet<String> = body
        .iter()
        .filter(|s| matches!(s, Stmt::Import(_) | Stmt::ImportFrom(_)))
        .flat_map(|s| Names::of(s).bound)
        .collect();
    let aliases = ambient::import_aliases(body);
    let value_aliases = ambient::value_aliases(body);
    let mut items: Vec<Item> = Vec::new();
    let mut prev_end = body[..first]
        .last()
        .map_or(0, |s| line_end(file.src, usize::from(s.end())));
    for stmt in &body[first..] {
        check_own_lines(file, stmt)?;
        let line = file.line_of(usize::from(stmt.start()));
        let live_here = live.iter().any(|l| stmt.range().contains_range(*l));
        let quiet_here = quiet.iter().any(|l| stmt.range().contains_range(*l));
        if quiet_here {
            let first_line = file.line_of(usize::from(body[first].start()));
            return Err(if live_here {
                format!(
                    "line {line} holds a launch marked `# noqa` and one that is not; split them first"
                )
            } else {
                format!(
                    "the launch on line {line} is marked `# noqa`, so it stays at module level, but it comes after the launch on line {first_line}, which would then run after it"
                )
            });
        }
        let mut role = initial_role(file, stmt, live_here)?;
        let mut names = Names::of(stmt);
        // Changing a module name's object in place (`weights["w"] = 3`, `cfg.update(...)`)
        // is part of the value a function reads: it counts as binding the name. Not for
        // imported modules (`os.environ[...]`, `sys.path.append`): library code reads those
        // without naming them, so such a statement keeps its place after the launch.
        // So does calling a module function that binds (`global n`) or changes one, and a
        // change through a second name for the same object (`sub = cfg["sub"]; sub["x"] = 2`).
        let effects = calls.effects_of(&names.reads);
        let mut changed = std::mem::take(&mut names.mutated);
        changed.extend(effects.binds.iter().cloned());
        for m in changed {
            let also = value_aliases.get(&m).into_iter().flatten().cloned();
            for n in std::iter::once(m.clone()).chain(also) {
                if !imported_modules.contains(&n) && !names.bound.contains(&n) {
                    names.bound.push(n);
                }
            }
        }
        let amb = ambient::Ambient::of(stmt, &names, &effects, &aliases);
        let reads = calls.closure(&names.reads);
        let tainted = live_here
            || role == Role::Fold
            || uses::touches_dist(sym, stmt, false)
            || calls.reach_dist(&names.reads);
        let forced = match role {
            Role::Move if live_here => Some("it launches".to_string()),
            Role::Fold => Some("it is the main guard's body".to_string()),
            _ => None,
        };
        if live_here && role == Role::Keep {
            role = Role::Move;
        }
        // A block that defines a function or class stays at module level like a `def` (spawn
        // children unpickle what it defines by name), unless it has to move: then the fix is
        // refused (`check_movable`).
        if role == Role::Move
            && forced.is_none()
            && !names.nested_defs.is_empty()
            && names.hazards.is_empty()
            && !names.star_import
        {
            role = Role::Keep;
        }
        // A change of where imports are found (`sys.path.insert(0, ...)`) stays at module level
        // like the imports that need it, unless it depends on the launch.
        if role == Role::Move
            && forced.is_none()
            && !tainted
            && names.hazards.is_empty()
            && names.nested_defs.is_empty()
            && !names.star_import
            && names.bound.is_empty()
            && amb.only_import_state()
        {
            role = Role::Keep;
        }
        let span = (
            attach_comments(file, stmt, prev_end),
            line_end(file.src, usize::from(stmt.end())),
        );
        prev_end = span.1;
        items.push(Item {
            stmt,
            role,
            names,
            span,
            reads,
            tainted,
            forced,
            fns: uses::functions_of(stmt),
            amb,
            loose: Vec::new(),
        });
    }
    // Dependence on the launch flows forward through the names dependent statements bind
    // (one pass: the names bound so far by dependent statements).
    let mut tainted_names: HashSet<String> = HashSet::new();
    for item in items.iter_mut() {
        if !item.tainted {
            // Process state set from the launch (`torch.manual_seed(rank)`,
            // `os.environ[k] = str(rank)`) taints its readers as a name does.
            item.tainted = item
                .reads
                .iter()
                .chain(&item.amb.reads)
                .any(|r| tainted_names.contains(r));
        }
        if item.tainted {
            // A walrus whose value owes nothing to the launch binds a name that does not
            // depend on it, although its statement does.
            item.loose = ambient::walruses(item.stmt)
                .into_iter()
                .filter(|(_, value)| {
                    let r = ambient::loads(value);
                    !uses::expr_touches_dist(sym, value)
                        && !calls.reach_dist(&r)
                        && !r.iter().any(|n| tainted_names.contains(n))
                })
                .map(|(n, _)| n)
                .collect();
            let loose = &item.loose;
            tainted_names.extend(item.amb.sets.iter().cloned());
            tainted_names.extend(
                item.names
                    .bound
                    .iter()
                    .filter(|n| !loose.contains(n))
                    .cloned(),
            );
        }
    }
    settle(file, &mut items, &needed_before);
    // A function or class is what a spawn child looks up by name (a pickled worker, a
    // `collate_fn`, a `Dataset`): one that does not depend on the launch may not move.
    for item in &items {
        let (kind, name) = match item.stmt {
            Stmt::FunctionDef(f) => ("function", f.name.as_str()),
            Stmt::ClassDef(c) => ("class", c.name.as_str()),
            Stmt::Assign(a) if a.value.is_lambda_expr() => match a.targets.first() {
                Some(Expr::Name(n)) => ("function", n.id.as_str()),
                _ => continue,
            },
            _ => continue,
        };
        if item.role != Role::Keep && !item.tainted {
            return Err(format!(
                "{kind} `{name}` (line {}), which spawn children can look up by name after importing the module, would have to move into `main()`: {}; bind what it reads before the launch",
                file.line_of(usize::from(item.stmt.start())),
                item.forced
                    .as_deref()
                    .unwrap_or("it cannot run at module level")
            ));
        }
    }
    // What a function or a kept statement reads at import must still be bound there, to the
    // value the program gives it last, unless that value depends on the launch.
    let mut last_binder: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (k, item) in items.iter().enumerate() {
        for n in &item.names.bound {
            last_binder.insert(n.as_str(), k);
        }
    }
    for (name, user) in &needed_names(&items, &needed_before) {
        let Some(last) = last_binder.get(name.as_str()).map(|&k| &items[k]) else {
            continue;
        };
        if last.role == Role::Keep {
            continue;
        }
        if last.tainted {
            if last.loose.contains(name) {
                return Err(format!(
                    "`{name}` (line {}) is read by {user}, which spawn children can call after importing the module, but `{name} := ...` binds it inside a statement that has to move into `main()` ({}), although its value does not depend on the launch; bind `{name}` before the launch",
                    file.line_of(usize::from(last.stmt.start())),
                    last.forced.as_deref().unwrap_or("it depends on the launch")
                ));
            }
            continue;
        }
        let why = last
            .forced
            .as_deref()
            .unwrap_or("it cannot run at module level");
        return Err(format!(
            "`{name}` (line {}) is read by {user}, which spawn children can call after importing the module, but that line has to move into `main()`: {why}; bind `{name}` before the launch",
            file.line_of(usize::from(last.stmt.start()))
        ));
    }
    for item in &items {
        check_movable(file, item)?;
    }
    Ok(items)
}

/// Module names read at import: by the functions defined before the launch and by the kept
/// statements (their own work and the functions they define), with who reads each.
fn needed_names(items: &[Item], before: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = before.to_vec();
    for i in items.iter().filter(|i| i.role == Role::Keep) {
        for f in &i.fns {
            out.extend(
                f.free
                    .iter()
                    .map(|n| (n.clone(), format!("function `{}`", f.name))),
            );
        }
        out.extend(i.reads.iter().map(|n| {
            (
                n.clone(),
                "a statement that stays at module level".to_string(),
            )
        }));
    }
    let mut seen = HashSet::new();
    out.retain(|(n, _)| seen.insert(n.clone()));
    out.sort();
    out
}

/// Move what must move, keep what functions need, until nothing changes (a statement that has
/// to move never returns, so this ends).
fn settle(file: &File, items: &mut [Item], before: &[(String, String)]) {
    loop {
        // Keep what is needed, and then what that needs, before deciding what must move: a
        // work list of names (each item turns to Keep at most once, each name is looked at once).
        keep_needed(items, before);
        let mut forced = false;
        // For each name, the first statement before `k` that is not kept and binds it, and the
        // first that reads or binds it (kept up to date as `k` advances and roles change).
        let mut first_binder: std::collections::HashMap<String, usize> =
            std::collections::HashMap::new();
        let mut first_user: std::collections::HashMap<String, usize> =
            std::collections::HashMap::new();
        for k in 0..items.len() {
            if items[k].role == Role::Keep {
                let j = conflict(&items[k], &first_binder, &first_user);
                if let Some(why) = j.and_then(|j| must_move(file, items, k, j)) {
                    items[k].role = Role::Move;
                    items[k].forced = Some(why);
                    forced = true;
                }
            }
            if items[k].role != Role::Keep {
                // Process state (`<env>`, `<imports>`, ...) orders statements as names do.
                for n in items[k].names.bound.iter().chain(&items[k].amb.sets) {
                    first_binder.entry(n.clone()).or_insert(k);
                    first_user.entry(n.clone()).or_insert(k);
                }
                for n in items[k].reads.iter().chain(&items[k].amb.reads) {
                    first_user.entry(n.clone()).or_insert(k);
                }
            }
        }
        if !forced {
            return;
        }
    }
}

/// The first statement before `item` (not kept) that binds a name `item` reads, or that reads
/// or binds a name `item` binds; `Some(usize::MAX)` when `item` depends on the launch.
fn conflict(
    item: &Item,
    first_binder: &std::collections::HashMap<String, usize>,
    first_user: &std::collections::HashMap<String, usize>,
) -> Option<usize> {
    if item.tainted {
        return Some(usize::MAX);
    }
    let a = item
        .reads
        .iter()
        .chain(&item.amb.reads)
        .filter_map(|n| first_binder.get(n))
        .min();
    let b = item
        .names
        .bound
        .iter()
        .chain(&item.amb.sets)
        .filter_map(|n| first_user.get(n))
        .min();
    a.into_iter().chain(b).min().copied()
}

/// Turn to Keep every movable statement that binds a name needed at import, and then what
/// those read, to a fixed point.
fn keep_needed(items: &mut [Item], before: &[(String, String)]) {
    let mut needed: HashSet<String> = needed_names(items, before)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let mut binders: std::collections::HashMap<String, Vec<usize>> =
        std::collections::HashMap::new();
    for (k, item) in items.iter().enumerate() {
        for n in &item.names.bound {
            binders.entry(n.clone()).or_default().push(k);
        }
    }
    let mut queue: Vec<String> = needed.iter().cloned().collect();
    while let Some(name) = queue.pop() {
        let Some(ks) = binders.get(&name) else {
            continue;
        };
        for &k in ks {
            let item = &mut items[k];
            if item.role == Role::Move
                && item.forced.is_none()
                && !item.tainted
                && item.names.hazards.is_empty()
                && item.names.nested_defs.is_empty()
                && !item.names.star_import
            {
                item.role = Role::Keep;
                let reads = item
                    .reads
                    .iter()
                    .chain(item.fns.iter().flat_map(|f| f.free.iter()));
                for n in reads {
                    if needed.insert(n.clone()) {
                        queue.push(n.clone());
                    }
                }
            }
        }
    }
}

/// Why kept statement `k` cannot run before `main()`, given the first earlier statement `first`
/// it conflicts with ([`conflict`]).
fn must_move(file: &File, items: &[Item], k: usize, first: usize) -> Option<String> {
    let item = &items[k];
    if item.tainted {
        return Some("it depends on the launch".to_string());
    }
    let line = |i: &Item| file.line_of(usize::from(i.stmt.start()));
    for j in items[first..k].iter().filter(|j| j.role != Role::Keep) {
        if let Some(key) = j.amb.sets.iter().find(|n| item.amb.reads.contains(*n)) {
            return Some(format!(
                "it depends on {}, which line {} changes inside `main()`",
                ambient::describe(key),
                line(j)
            ));
        }
        if let Some(key) = item
            .amb
            .sets
            .iter()
            .find(|n| j.amb.reads.contains(*n) || j.amb.sets.contains(*n))
        {
            return Some(format!(
                "it changes {}, which line {} depends on before it inside `main()`",
                ambient::describe(key),
                line(j)
            ));
        }
        if let Some(n) = j.names.bound.iter().find(|n| item.reads.contains(*n)) {
            return Some(format!(
                "it reads `{n}`, which line {} binds inside `main()`",
                line(j)
            ));
        }
        if let Some(n) = item
            .names
            .bound
            .iter()
            .find(|n| j.reads.contains(*n) || j.names.bound.contains(*n))
        {
            return Some(format!(
                "it rebinds `{n}`, which line {} uses before it inside `main()`",
                line(j)
            ));
        }
    }
    None
}

/// The role before dependencies are known; refuses launches that cannot move.
fn initial_role(file: &File, stmt: &Stmt, launches_here: bool) -> Result<Role, String> {
    let line = file.line_of(usize::from(stmt.start()));
    match stmt {
        Stmt::ClassDef(c) if launches_here => Err(format!(
            "the launch runs in the body of class `{}` (line {line}); a class body cannot move into a function",
            c.name
        )),
        Stmt::FunctionDef(f) if launches_here => Err(format!(
            "the launch runs in a decorator or default argument of `{}` (line {line}); moving the function would hide it from spawn children",
            f.name
        )),
        Stmt::If(i) => match main_guard(&i.test) {
            Some(Guard::IsMain) if !i.elif_else_clauses.is_empty() => Err(format!(
                "`if __name__ == \"__main__\":` on line {line} has an else/elif branch, which spawn children run"
            )),
            Some(Guard::IsMain) if is_plain_guard(&i.test) => Ok(Role::Fold),
            Some(Guard::NotMain) => Err(format!(
                "`if __name__ != \"__main__\":` on line {line} runs only in children; moving it would change what they do"
            )),
            _ => Ok(Role::Move),
        },
        Stmt::FunctionDef(_) | Stmt::ClassDef(_) | Stmt::Import(_) | Stmt::TypeAlias(_) => {
            Ok(Role::Keep)
        }
        // `f = lambda ...` defines a function as a def does.
        Stmt::Assign(a) if a.value.is_lambda_expr() && a.targets.iter().all(Expr::is_name_expr) => {
            Ok(Role::Keep)
        }
        Stmt::ImportFrom(i) if i.names.iter().any(|a| a.name.as_str() == "*") => Err(format!(
            "`from {} import *` on line {line} comes after the launch and hides which names it binds",
            i.module.as_ref().map_or("", |m| m.as_str())
        )),
        Stmt::ImportFrom(_) => Ok(Role::Keep),
        _ => Ok(Role::Move),
    }
}

/// `__name__ == "__main__"` itself (not combined with `and`).
fn is_plain_guard(test: &Expr) -> bool {
    matches!(test, Expr::Compare(_))
}

/// Refuse statements whose meaning would change inside a function.
fn check_movable(file: &File, item: &Item) -> Result<(), String> {
    if item.role == Role::Keep {
        return Ok(());
    }
    let line = file.line_of(usize::from(item.stmt.start()));
    if let Some(h) = item.names.hazards.first() {
        return Err(format!("line {line} uses {h}"));
    }
    if item.role == Role::Move
        && let Some(name) = item.names.nested_defs.first()
    {
        return Err(format!(
            "`{name}` is defined inside a block on line {line}, after the launch; inside `main()` spawn children could not import it"
        ));
    }
    Ok(())
}

/// The statement must have its lines to itself (no `a; b`, nothing before it on its line).
fn check_own_lines(file: &File, stmt: &Stmt) -> Result<(), String> {
    let (s, e) = (usize::from(stmt.start()), usize::from(stmt.end()));
    let before = &file.src[line_start(file.src, s)..s];
    let after = file.src[e..line_end(file.src, e)].trim();
    if before.trim().is_empty() && (after.is_empty() || after.starts_with('#')) {
        return Ok(());
    }
    Err(format!(
        "line {} holds several statements; split them first",
        file.line_of(s)
    ))
}

/// Where a statement's text begins: the comment lines directly above it go with it.
fn attach_comments(file: &File, stmt: &Stmt, floor: usize) -> usize {
    let mut start = line_start(file.src, usize::from(stmt.start()));
    while start > floor {
        let above = line_start(file.src, start - 1);
        if above < floor
            || file.inside.contains(&above)
            || !layout::is_comment_line(file.src, above, start)
        {
            break;
        }
        start = above;
    }
    start
}

/// The new text: kept statements in place, then `def main():` with the moved ones, then the guard.
fn render(file: &File, body: &[Stmt], items: &[Item]) -> String {
    let src = file.src;
    let nl = layout::newline(src);
    let unit = layout::indent_unit(src, body);
    let gap = |k: usize| -> (usize, &str) {
        let from = if k == 0 {
            items[0].span.0
        } else {
            items[k - 1].span.1
        };
        (from, &src[from..items[k].span.0])
    };
    let mut out = src[..items[0].span.0].to_string();
    for (k, item) in items
        .iter()
        .enumerate()
        .filter(|(_, i)| i.role == Role::Keep)
    {
        out.push_str(gap(k).1);
        push_line(&mut out, &src[item.span.0..item.span.1], nl);
    }
    end_block(&mut out, nl);
    let moved: Vec<usize> = (0..items.len())
        .filter(|&k| items[k].role != Role::Keep)
        .collect();
    let call = match single_call(items, &moved) {
        Some(k) => layout::reindent(
            &src[items[k].span.0..items[k].span.1],
            items[k].span.0,
            "",
            &unit,
            &file.inside,
        ),
        None => {
            let name = main_name(body);
            out.push_str(&format!("def {name}():{nl}"));
            push_globals(&mut out, items, &moved, &unit, nl);
            for (j, &k) in moved.iter().enumerate() {
                if j > 0 {
                    let (from, text) = gap(k);
                    // Blank lines that separated a kept definition are not the moved code's own;
                    // inside a function one blank line separates (PEP 8).
                    let ours = items[k - 1].role != Role::Keep;
                    let text = layout::reindent(text, from, "", &unit, &file.inside);
                    let mut blank = false;
                    for line in text.split_inclusive('\n') {
                        let is_blank = line.trim().is_empty();
                        if !is_blank || ours && !blank {
                            out.push_str(line);
                        }
                        blank = is_blank;
                    }
                }
                push_line(&mut out, &moved_text(file, &items[k], &unit), nl);
            }
            end_block(&mut out, nl);
            format!("{unit}{name}(){nl}")
        }
    };
    out.push_str(&format!("if __name__ == \"__main__\":{nl}"));
    push_line(&mut out, &call, nl);
    let tail = &src[items[items.len() - 1].span.1..];
    if !tail.trim().is_empty() {
        out.push_str(tail);
    }
    out
}

/// The moved statements are one call of a plain name (`main()`, `run(cfg)`): the guard calls it
/// directly instead of through a `main()` that only calls it.
fn single_call(items: &[Item], moved: &[usize]) -> Option<usize> {
    let [k] = moved else { return None };
    let item = &items[*k];
    let is_call = matches!(item.stmt, Stmt::Expr(e)
        if matches!(&*e.value, Expr::Call(c) if matches!(&*c.func, Expr::Name(_))));
    (item.role == Role::Move && is_call && item.names.bound.is_empty()).then_some(*k)
}

/// A moved statement's text, indented one level; a folded guard gives its body.
fn moved_text(file: &File, item: &Item, unit: &str) -> String {
    let src = file.src;
    let (Role::Fold, Stmt::If(guard)) = (item.role, item.stmt) else {
        return layout::reindent(
            &src[item.span.0..item.span.1],
            item.span.0,
            "",
            unit,
            &file.inside,
        );
    };
    // Comment lines above the guard, then the guard's body without the guard's own indentation.
    let header_end = line_end(src, usize::from(guard.test.end()));
    let comments = layout::reindent(
        &src[item.span.0..line_start(src, usize::from(guard.start()))],
        item.span.0,
        "",
        unit,
        &file.inside,
    );
    let b0 = guard
        .body
        .first()
        .map_or(header_end, |s| usize::from(s.start()));
    let (from, strip) = if b0 >= header_end {
        (header_end, &src[line_start(src, b0)..b0])
    } else {
        (b0, "")
    };
    comments + &layout::reindent(&src[from..item.span.1], from, strip, unit, &file.inside)
}

/// `global a, b, c` lines for the names the moved statements bind.
fn push_globals(out: &mut String, items: &[Item], moved: &[usize], unit: &str, nl: &str) {
    let mut seen = HashSet::new();
    let names: Vec<&str> = moved
        .iter()
        .flat_map(|&k| items[k].names.bound.iter())
        .filter(|n| seen.insert(n.as_str()))
        .map(String::as_str)
        .collect();
    let mut line = String::new();
    for name in names {
        if !line.is_empty() && unit.len() + 7 + line.len() + name.len() + 2 > 88 {
            out.push_str(&format!("{unit}global {line}{nl}"));
            line.clear();
        }
        if !line.is_empty() {
            line.push_str(", ");
        }
        line.push_str(name);
    }
    if !line.is_empty() {
        out.push_str(&format!("{unit}global {line}{nl}"));
    }
}

/// `main`, unless the module already uses that name (or a star import may bind it).
fn main_name(body: &[Stmt]) -> String {
    let ids = crate::scan::symbols::names_anywhere(body, true);
    let star = body.iter().any(|s| {
        matches!(s, Stmt::ImportFrom(i) if i.names.iter().any(|a: &ast::Alias| a.name.as_str() == "*"))
    });
    if !star && !ids.contains("main") {
        return "main".to_string();
    }
    (1..)
        .map(|n| {
            if n == 1 {
                "_doctor_main".to_string()
            } else {
                format!("_doctor_main_{n}")
            }
        })
        .find(|n| !ids.contains(n))
        .unwrap_or_default()
}

fn push_line(out: &mut String, text: &str, nl: &str) {
    out.push_str(text);
    if !text.ends_with('\n') {
        out.push_str(nl);
    }
}

/// Drop trailing blank lines, then leave two (PEP 8 between top-level blocks); none at file start.
fn end_block(out: &mut String, nl: &str) {
    while let Some(without) = out.strip_suffix('\n') {
        let start = line_start(without, without.len());
        if !without[start..].trim().is_empty() {
            break;
        }
        out.truncate(start);
    }
    if !out.is_empty() {
        out.push_str(nl);
        out.push_str(nl);
    }
}

#[cfg(test)]
mod tests;
