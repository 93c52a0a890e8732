//! What a statement does to, and reads of, state that no module name holds: the process's
//! environment (`os.environ`), where imports are found (`sys.path`, `sys.modules`), the working
//! directory, an imported module's attributes; objects reached through a second name (`sub =
//! cfg["sub"]` then `sub["x"] = 2` changes `cfg`); and names a walrus binds inside a statement.
//!
//! Such effects are keys (`<env>`, `<imports>`, `<cwd>`, `<mod:torch.backends>`) that the fixer
//! orders statements by, as it does by names: a statement kept at module level must not come to
//! run before a moved statement whose effect it reads (`import mylib` after `sys.path.append`).

use std::collections::{HashMap, HashSet};

use ruff_python_ast::visitor::{self, Visitor};
use ruff_python_ast::{Expr, ExprContext, Stmt};

use super::names::Names;
use super::uses::Effects;
use crate::scan::walk::{Guarded, Walk, over_body, over_expr, over_stmt};

pub const ENV: &str = "<env>";
pub const IMPORTS: &str = "<imports>";
pub const CWD: &str = "<cwd>";
/// The global random state (`torch.manual_seed`, `random.seed`, `seed_everything`).
pub const RNG: &str = "<rng>";

/// Calls that seed a global random generator, by their last name part.
const SEEDS: &[&str] = &[
    "manual_seed",
    "manual_seed_all",
    "seed",
    "seed_everything",
    "set_seed",
    "set_random_seed",
];

/// Module-level import aliases: the name a statement binds -> the module or member it names
/// (`np` -> `numpy`, `environ` -> `os.environ`).
pub fn import_aliases(body: &[Stmt]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for stmt in body {
        match stmt {
            Stmt::Import(i) => {
                for a in &i.names {
                    match &a.asname {
                        Some(as_) => out.insert(as_.to_string(), a.name.to_string()),
                        None => {
                            let root = a.name.split('.').next().unwrap_or(&a.name).to_string();
                            out.insert(root.clone(), root)
                        }
                    };
                }
            }
            Stmt::ImportFrom(i) if i.level == 0 => {
                let module = i.module.as_ref().map_or("", |m| m.as_str());
                for a in &i.names {
                    let bound = a.asname.as_ref().unwrap_or(&a.name).to_string();
                    out.insert(bound, format!("{module}.{}", a.name));
                }
            }
            _ => {}
        }
    }
    out
}

fn resolve(dotted: &str, aliases: &HashMap<String, String>) -> Option<String> {
    let (root, rest) = match dotted.split_once('.') {
        Some((r, rest)) => (r, Some(rest)),
        None => (dotted, None),
    };
    let module = aliases.get(root)?;
    Some(match rest {
        Some(rest) => format!("{module}.{rest}"),
        None => module.clone(),
    })
}

fn is_env(q: &str) -> bool {
    ["os.environ", "os.environb", "os.getenv", "os.getenvb"]
        .iter()
        .any(|p| q == *p || q.starts_with(&format!("{p}.")))
}

const IMPORT_STATE: &[&str] = &[
    "sys.path",
    "sys.modules",
    "sys.meta_path",
    "sys.path_hooks",
    "sys.path_importer_cache",
];

fn is_import_state(q: &str) -> bool {
    IMPORT_STATE
        .iter()
        .any(|p| q == *p || q.starts_with(&format!("{p}.")))
}

/// The key of a change in place of `q` (an imported module's state, resolved).
fn set_key(q: &str) -> String {
    if is_env(q) {
        ENV.to_string()
    } else if is_import_state(q) {
        IMPORTS.to_string()
    } else {
        format!("<mod:{q}>")
    }
}

/// The key of a call of `q` that changes process state, if it does.
fn call_key(q: &str) -> Option<&'static str> {
    match q {
        "os.chdir" | "os.fchdir" => Some(CWD),
        "os.putenv" | "os.unsetenv" => Some(ENV),
        "site.addsitedir" => Some(IMPORTS),
        _ => None,
    }
}

/// The keys a read of `q` (resolved) depends on.
fn read_keys(q: &str, out: &mut HashSet<String>) {
    if is_env(q) {
        out.insert(ENV.to_string());
    }
    if is_import_state(q) {
        out.insert(IMPORTS.to_string());
    }
    // `torch.backends.cudnn.benchmark` reads what `torch.backends.cudnn.x = ...` sets.
    let mut parts: Vec<&str> = q.split('.').collect();
    while parts.len() >= 2 {
        out.insert(format!("<mod:{}>", parts.join(".")));
        parts.pop();
    }
}

/// What one statement changes (`sets`) and depends on (`reads`) of the state above.
#[derive(Default)]
pub struct Ambient {
    pub sets: Vec<String>,
    pub reads: HashSet<String>,
}

impl Ambient {
    /// For a statement with `names`, whose called module functions do `effects`.
    pub fn of(
        stmt: &Stmt,
        names: &Names,
        effects: &Effects,
        aliases: &HashMap<String, String>,
    ) -> Ambient {
        let mut a = Ambient::default();
        let mut set = |k: String| {
            if !a.sets.contains(&k) {
                a.sets.push(k);
            }
        };
        let imported = |dotted: &str| resolve(dotted, aliases);
        for at in names.mutated_at.iter().chain(effects.mutated_at.iter()) {
            if let Some(q) = imported(at) {
                set(set_key(&q));
            }
        }
        for callee in names.callees.iter().chain(effects.callees.iter()) {
            if let Some(k) = imported(callee).as_deref().and_then(call_key) {
                set(k.to_string());
            }
            let last = callee.rsplit('.').next().unwrap_or(callee);
            if SEEDS.contains(&last) {
                set(RNG.to_string());
            }
        }
        let defines = matches!(stmt, Stmt::FunctionDef(_) | Stmt::ClassDef(_));
        for r in names
            .dotted_reads
            .iter()
            .chain(effects.dotted_reads.iter())
            .chain(names.reads.iter())
        {
            if let Some(q) = imported(r) {
                read_keys(&q, &mut a.reads);
            }
        }
        if names.imports || effects.imports {
            // What an import runs sees where modules are found and the environment.
            a.reads.insert(IMPORTS.to_string());
            a.reads.insert(ENV.to_string());
        }
        if !defines {
            // Any relative path means something else after a `chdir`.
            a.reads.insert(CWD.to_string());
            // A call may draw random numbers (a model's initial weights), unless it is a
            // builtin or of a standard-library module that draws none.
            if names
                .callees
                .iter()
                .chain(effects.callees.iter())
                .any(|c| !draws_nothing(c, aliases))
            {
                a.reads.insert(RNG.to_string());
            }
        }
        a
    }

    /// Only changes of where imports are found, or a seed of the random state: such a statement
    /// may stay at module level, as an import does (a spawn child gets the parent's `sys.path`
    /// anyway; it ran the seed at import in the original too), so that what stays after it still
    /// runs after it.
    pub fn only_import_state(&self) -> bool {
        !self.sets.is_empty() && self.sets.iter().all(|k| k == IMPORTS || k == RNG)
    }
}

/// Builtins that draw no random numbers.
const QUIET_BUILTINS: &[&str] = &[
    "print",
    "len",
    "int",
    "float",
    "str",
    "bool",
    "bytes",
    "dict",
    "list",
    "tuple",
    "set",
    "frozenset",
    "range",
    "open",
    "isinstance",
    "issubclass",
    "getattr",
    "hasattr",
    "setattr",
    "sorted",
    "reversed",
    "min",
    "max",
    "sum",
    "enumerate",
    "zip",
    "map",
    "filter",
    "abs",
    "round",
    "format",
    "repr",
    "type",
    "super",
    "iter",
    "next",
    "any",
    "all",
    "globals",
    "id",
    "hash",
    "divmod",
    "pow",
    "chr",
    "ord",
    "hex",
    "oct",
    "bin",
    "callable",
];

/// Standard-library modules whose functions draw no random numbers.
const QUIET_MODULES: &[&str] = &[
    "os",
    "sys",
    "json",
    "pathlib",
    "re",
    "math",
    "time",
    "datetime",
    "argparse",
    "logging",
    "functools",
    "itertools",
    "collections",
    "glob",
    "shutil",
    "string",
    "typing",
    "dataclasses",
    "contextlib",
    "inspect",
    "pickle",
    "csv",
    "io",
    "warnings",
    "platform",
    "socket",
    "importlib",
    "types",
    "copy",
    "textwrap",
    "operator",
    "enum",
    "abc",
    "site",
    "subprocess",
];

/// Whether a call of `callee` (dotted, as written) draws no random numbers.
fn draws_nothing(callee: &str, aliases: &HashMap<String, String>) -> bool {
    if !callee.contains('.') && !aliases.contains_key(callee) {
        return QUIET_BUILTINS.contains(&callee);
    }
    // The process group's calls (init_process_group, barrier, all_reduce) do not touch the
    // global generators either.
    resolve(callee, aliases).is_some_and(|q| {
        let root = q.split('.').next().unwrap_or(&q);
        QUIET_MODULES.contains(&root) || q.starts_with("torch.distributed.")
    })
}

/// How a key reads in a message.
pub fn describe(key: &str) -> String {
    match key {
        ENV => "the environment (`os.environ`)".to_string(),
        IMPORTS => "where imports are found (`sys.path`, `sys.modules`)".to_string(),
        CWD => "the working directory".to_string(),
        RNG => "the random state (a seed)".to_string(),
        k => format!("`{}`", k.trim_start_matches("<mod:").trim_end_matches('>')),
    }
}

/// Second names for objects a module name holds: `sub = cfg["sub"]`, `t = cfg.train`,
/// `for layer in model.layers`, `with registry as r`, `a, b = x.a, x.b`: each bound name -> the
/// module names whose objects it may reach (transitively). Module scope only (not inside
/// functions, classes, lambdas or comprehensions).
pub fn value_aliases(body: &[Stmt]) -> HashMap<String, HashSet<String>> {
    over_body(Aliases::default(), body).map
}

#[derive(Default)]
struct Aliases {
    map: HashMap<String, HashSet<String>>,
}

impl Aliases {
    fn link(&mut self, target: &Expr, value: &Expr) {
        let mut roots = HashSet::new();
        view_roots(value, &mut roots);
        if roots.is_empty() {
            return;
        }
        let mut all = roots.clone();
        for r in &roots {
            if let Some(more) = self.map.get(r) {
                all.extend(more.iter().cloned());
            }
        }
        let mut names = Vec::new();
        target_names(target, &mut names);
        for n in names {
            let entry = self.map.entry(n.clone()).or_default();
            entry.extend(all.iter().filter(|r| **r != n).cloned());
        }
    }
}

/// The root names of an expression whose value may be (part of) an object another name holds:
/// a name, an attribute or item of one, `x.get(k)`, `getattr(x, k)`, either arm of `a if c else
/// b` / `a or b`, the elements of a tuple or list. A call (but those) or arithmetic makes a new
/// object: no root.
fn view_roots(e: &Expr, out: &mut HashSet<String>) {
    match e {
        Expr::Name(n) => {
            out.insert(n.id.to_string());
        }
        Expr::Attribute(a) => view_roots(&a.value, out),
        Expr::Subscript(s) => view_roots(&s.value, out),
        Expr::Starred(s) => view_roots(&s.value, out),
        Expr::Named(n) => view_roots(&n.value, out),
        Expr::If(i) => {
            view_roots(&i.body, out);
            view_roots(&i.orelse, out);
        }
        Expr::BoolOp(b) => b.values.iter().for_each(|v| view_roots(v, out)),
        Expr::Tuple(t) => t.elts.iter().for_each(|v| view_roots(v, out)),
        Expr::List(l) => l.elts.iter().for_each(|v| view_roots(v, out)),
        Expr::Call(c) => match &*c.func {
            Expr::Attribute(a)
                if matches!(
                    a.attr.as_str(),
                    "get" | "setdefault" | "values" | "items" | "__getitem__"
                ) =>
            {
                view_roots(&a.value, out)
            }
            Expr::Name(n) if matches!(n.id.as_str(), "getattr" | "iter" | "next" | "vars") => {
                if let Some(first) = c.arguments.args.first() {
                    view_roots(first, out);
                }
            }
            _ => {}
        },
        _ => {}
    }
}

fn target_names(t: &Expr, out: &mut Vec<String>) {
    match t {
        Expr::Name(n) => out.push(n.id.to_string()),
        Expr::Tuple(x) => x.elts.iter().for_each(|e| target_names(e, out)),
        Expr::List(x) => x.elts.iter().for_each(|e| target_names(e, out)),
        Expr::Starred(s) => target_names(&s.value, out),
        _ => {}
    }
}

impl<'a> Walk<'a> for Aliases {
    fn stmt(w: &mut Guarded<Self>, stmt: &'a Stmt) {
        match stmt {
            Stmt::FunctionDef(_) | Stmt::ClassDef(_) => {}
            Stmt::Assign(a) => {
                for t in &a.targets {
                    w.link(t, &a.value);
                }
                visitor::walk_stmt(w, stmt);
            }
            Stmt::AnnAssign(a) => {
                if let Some(v) = &a.value {
                    w.link(&a.target, v);
                }
            }
            Stmt::For(f) => {
                w.link(&f.target, &f.iter);
                visitor::walk_stmt(w, stmt);
            }
            Stmt::With(with) => {
                for item in &with.items {
                    if let Some(v) = &item.optional_vars {
                        w.link(v, &item.context_expr);
                    }
                }
                visitor::walk_stmt(w, stmt);
            }
            _ => visitor::walk_stmt(w, stmt),
        }
    }

    fn expr(w: &mut Guarded<Self>, expr: &'a Expr) {
        match expr {
            Expr::Lambda(_)
            | Expr::ListComp(_)
            | Expr::SetComp(_)
            | Expr::DictComp(_)
            | Expr::Generator(_) => {}
            Expr::Named(n) => {
                w.link(&n.target, &n.value);
                visitor::walk_expr(w, expr);
            }
            _ => visitor::walk_expr(w, expr),
        }
    }
}

/// The names a walrus binds in the statement's own run (not in lambdas or functions it
/// defines), with the value it binds.
pub fn walruses(stmt: &Stmt) -> Vec<(String, &Expr)> {
    #[derive(Default)]
    struct W<'a> {
        out: Vec<(String, &'a Expr)>,
    }
    impl<'a> Walk<'a> for W<'a> {
        fn stmt(w: &mut Guarded<Self>, stmt: &'a Stmt) {
            match stmt {
                Stmt::FunctionDef(f) => {
                    for d in &f.decorator_list {
                        w.visit_expr(&d.expression);
                    }
                }
                Stmt::ClassDef(_) => {}
                _ => visitor::walk_stmt(w, stmt),
            }
        }
        fn expr(w: &mut Guarded<Self>, expr: &'a Expr) {
            match expr {
                Expr::Lambda(_) => {}
                Expr::Named(n) => {
                    if let Expr::Name(t) = &*n.target {
                        w.out.push((t.id.to_string(), &n.value));
                    }
                    visitor::walk_expr(w, expr);
                }
                _ => visitor::walk_expr(w, expr),
            }
        }
    }
    over_stmt(W::default(), stmt).out
}

/// Module names an expression reads (loads), lambda bodies aside.
pub fn loads(expr: &Expr) -> HashSet<String> {
    #[derive(Default)]
    struct L {
        out: HashSet<String>,
    }
    impl<'a> Walk<'a> for L {
        fn expr(w: &mut Guarded<Self>, expr: &'a Expr) {
            match expr {
                Expr::Name(n) if n.ctx == ExprContext::Load => {
                    w.out.insert(n.id.to_string());
                }
                Expr::Lambda(_) => {}
                _ => visitor::walk_expr(w, expr),
            }
        }
    }
    over_expr(L::default(), expr).out
}
