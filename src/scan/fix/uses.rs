//! Def-use facts the fixer decides from: which module-level names the functions of a statement
//! read when they are called (their free variables, Python's scoping rules), and whether a
//! statement's run-time work calls into the distributed stack (so it depends on the launch).

use std::collections::{HashMap, HashSet};

use ruff_python_ast::visitor::{self, Visitor};
use ruff_python_ast::{self as ast, Expr, ExprContext, Stmt};

use crate::scan::symbols::{Symbols, dotted};
use crate::scan::walk::{Guarded, Walk, over_stmt};

/// One function (or lambda) defined when a module-level statement runs, and the module-level
/// names its body reads when called.
pub struct FnReads {
    pub name: String,
    pub free: HashSet<String>,
    /// What calling it does to the module: the module names it binds (`global n; n = 1`) or
    /// changes in place (`registry[k] = f`, `cfg.update(...)`, `os.environ[k] = v`), and the
    /// dotted prefixes of those changes (`os.environ`, `sys.path`, `registry`).
    pub effects: Effects,
}

/// A function's effects and what it reads of the process's state, as [`FnReads::effects`].
#[derive(Default, Clone)]
pub struct Effects {
    pub binds: HashSet<String>,
    pub mutated_at: HashSet<String>,
    pub dotted_reads: HashSet<String>,
    pub callees: HashSet<String>,
    pub imports: bool,
}

impl Effects {
    fn extend(&mut self, other: &Effects) {
        self.binds.extend(other.binds.iter().cloned());
        self.mutated_at.extend(other.mutated_at.iter().cloned());
        self.dotted_reads.extend(other.dotted_reads.iter().cloned());
        self.callees.extend(other.callees.iter().cloned());
        self.imports |= other.imports;
    }
}

/// The functions a module-level statement defines (defs, methods of classes, lambdas, at any
/// depth of blocks), each with its free variables (names it reads from the module).
pub fn functions_of(stmt: &Stmt) -> Vec<FnReads> {
    over_stmt(Free::default(), stmt).found
}

#[derive(Default)]
struct Frame {
    name: String,
    loads: HashSet<String>,
    locals: HashSet<String>,
    globals: HashSet<String>,
    /// Names it stores to (to tell `global n; n = 1` apart).
    stores: HashSet<String>,
    /// Changes in place: (root name, dotted prefix) of each target.
    mutated: Vec<(String, String)>,
    /// Effects of nested functions already resolved against their own scopes.
    effects: Effects,
    /// A comprehension: its free names go to the enclosing frame, it is not recorded.
    comprehension: bool,
}

#[derive(Default)]
struct Free {
    stack: Vec<Frame>,
    /// Dotted prefix of the classes being defined at module level (`Model.` for methods).
    class_prefix: Vec<String>,
    found: Vec<FnReads>,
}

impl Free {
    fn local(&mut self, name: &str) {
        if let Some(f) = self.stack.last_mut() {
            f.locals.insert(name.to_string());
        }
    }

    fn store(&mut self, name: &str) {
        if let Some(f) = self.stack.last_mut() {
            f.locals.insert(name.to_string());
            f.stores.insert(name.to_string());
        }
    }

    fn mutate(&mut self, target: &Expr) {
        if let Some(f) = self.stack.last_mut()
            && let Some(root) = super::names::root_name(target)
        {
            let at = super::names::prefix2(target).unwrap_or_else(|| root.to_string());
            f.mutated.push((root.to_string(), at));
        }
    }

    fn load(&mut self, name: &str) {
        if let Some(f) = self.stack.last_mut() {
            f.loads.insert(name.to_string());
        }
    }

    fn push(&mut self, name: String, params: Option<&ast::Parameters>, comprehension: bool) {
        let mut frame = Frame {
            name,
            comprehension,
            ..Frame::default()
        };
        if let Some(p) = params {
            for param in p.iter() {
                frame.locals.insert(param.name().to_string());
            }
        }
        self.stack.push(frame);
    }

    fn pop(&mut self) {
        let Some(frame) = self.stack.pop() else {
            return;
        };
        let outer = |n: &String| !frame.locals.contains(n) || frame.globals.contains(n);
        let free: HashSet<String> = frame.loads.iter().filter(|n| outer(n)).cloned().collect();
        let mut effects = frame.effects.clone();
        effects
            .binds
            .extend(frame.stores.intersection(&frame.globals).cloned());
        let escaping: Vec<(String, String)> = frame
            .mutated
            .iter()
            .filter(|(root, _)| outer(root))
            .cloned()
            .collect();
        match self.stack.last_mut() {
            Some(parent) => {
                parent.loads.extend(free);
                // A comprehension's changes are its function's own; a nested function's changes
                // of names outside it are resolved against the enclosing scope.
                parent.mutated.extend(escaping);
                parent.effects.extend(&effects);
            }
            None if !frame.comprehension => {
                for (root, at) in escaping {
                    effects.binds.insert(root);
                    effects.mutated_at.insert(at);
                }
                self.found.push(FnReads {
                    name: frame.name,
                    free,
                    effects,
                })
            }
            None => {}
        }
    }

    fn imports(&mut self) {
        if let Some(f) = self.stack.last_mut() {
            f.effects.imports = true;
        }
    }

    fn qualified(&self, name: &str) -> String {
        if self.stack.is_empty() && !self.class_prefix.is_empty() {
            format!("{}.{name}", self.class_prefix.join("."))
        } else {
            name.to_string()
        }
    }
}

impl<'a> Walk<'a> for Free {
    fn stmt(w: &mut Guarded<Self>, stmt: &'a Stmt) {
        match stmt {
            Stmt::FunctionDef(f) => {
                w.visit_def_header(&f.decorator_list, Some(&f.parameters));
                if let Some(r) = &f.returns {
                    w.visit_expr(r);
                }
                w.local(f.name.as_str());
                let name = w.qualified(f.name.as_str());
                w.push(name, Some(&f.parameters), false);
                w.visit_body(&f.body);
                w.pop();
            }
            Stmt::ClassDef(c) => {
                w.visit_def_header(&c.decorator_list, None);
                if let Some(args) = &c.arguments {
                    w.visit_arguments(args);
                }
                w.local(c.name.as_str());
                let at_module = w.stack.is_empty();
                if at_module {
                    w.class_prefix.push(c.name.to_string());
                }
                w.visit_body(&c.body);
                if at_module {
                    w.class_prefix.pop();
                }
            }
            Stmt::Global(g) => {
                if let Some(f) = w.stack.last_mut() {
                    f.globals.extend(g.names.iter().map(|n| n.to_string()));
                }
            }
            Stmt::Nonlocal(n) => {
                for name in &n.names {
                    w.local(name.as_str());
                }
            }
            Stmt::Import(i) => {
                w.imports();
                for a in &i.names {
                    let name = a.asname.as_ref().unwrap_or(&a.name).as_str();
                    w.local(name.split('.').next().unwrap_or(name));
                }
            }
            Stmt::ImportFrom(i) => {
                w.imports();
                for a in &i.names {
                    w.local(a.asname.as_ref().unwrap_or(&a.name).as_str());
                }
            }
            Stmt::AugAssign(a) => {
                if let Expr::Name(n) = &*a.target {
                    w.load(n.id.as_str());
                }
                visitor::walk_stmt(w, stmt);
            }
            _ => visitor::walk_stmt(w, stmt),
        }
    }

    fn expr(w: &mut Guarded<Self>, expr: &'a Expr) {
        match expr {
            Expr::Name(n) => match n.ctx {
                ExprContext::Load => w.load(n.id.as_str()),
                _ => w.store(n.id.as_str()),
            },
            Expr::Subscript(ast::ExprSubscript { value, ctx, .. })
            | Expr::Attribute(ast::ExprAttribute { value, ctx, .. })
                if matches!(ctx, ExprContext::Store | ExprContext::Del) =>
            {
                w.mutate(value);
                visitor::walk_expr(w, expr);
            }
            Expr::Attribute(a) => {
                if let (Expr::Name(n), Some(f)) = (&*a.value, w.stack.last_mut()) {
                    f.effects
                        .dotted_reads
                        .insert(format!("{}.{}", n.id, a.attr));
                }
                visitor::walk_expr(w, expr);
            }
            Expr::Call(c) if !w.stack.is_empty() => {
                if let (Some(callee), Some(f)) = (dotted(&c.func), w.stack.last_mut()) {
                    f.effects.callees.insert(callee);
                }
                if let Expr::Attribute(a) = &*c.func
                    && super::names::MUTATORS.contains(&a.attr.as_str())
                {
                    w.mutate(&a.value);
                }
                if let Expr::Name(n) = &*c.func
                    && matches!(n.id.as_str(), "setattr" | "delattr")
                    && let Some(first) = c.arguments.args.first()
                {
                    w.mutate(first);
                }
                visitor::walk_expr(w, expr);
            }
            Expr::Lambda(l) => {
                if let Some(params) = &l.parameters {
                    for p in params.iter() {
                        if let Some(d) = p.default() {
                            w.visit_expr(d);
                        }
                    }
                }
                w.push("<lambda>".to_string(), l.parameters.as_deref(), false);
                w.visit_expr(&l.body);
                w.pop();
            }
            Expr::ListComp(_) | Expr::SetComp(_) | Expr::DictComp(_) | Expr::Generator(_)
                if !w.stack.is_empty() =>
            {
                w.push(String::new(), None, true);
                visitor::walk_expr(w, expr);
                w.pop();
            }
            _ => visitor::walk_expr(w, expr),
        }
    }

    fn except_handler(w: &mut Guarded<Self>, handler: &'a ast::ExceptHandler) {
        let ast::ExceptHandler::ExceptHandler(h) = handler;
        if let Some(name) = &h.name {
            w.local(name.as_str());
        }
        visitor::walk_except_handler(w, handler);
    }

    fn pattern(w: &mut Guarded<Self>, pattern: &'a ast::Pattern) {
        let name = match pattern {
            ast::Pattern::MatchAs(p) => p.name.as_ref(),
            ast::Pattern::MatchStar(p) => p.name.as_ref(),
            ast::Pattern::MatchMapping(p) => p.rest.as_ref(),
            _ => None,
        };
        if let Some(name) = name {
            w.local(name.as_str());
        }
        visitor::walk_pattern(w, pattern);
    }
}

/// Module roots whose calls need (or make) the distributed state: after the launch, a call into
/// them depends on it (`dist.get_rank()` raises before `init_process_group`), and a statement
/// making one cannot run at import in a child.
const DIST_ROOTS: &[&str] = &["torch.distributed", "torch.cuda", "accelerate", "deepspeed"];

/// Callees that start processes (from `multiprocessing`, `torch.multiprocessing`,
/// `concurrent.futures`, or a context object): a statement calling one cannot run at import in
/// a child (the "bootstrapping phase" error). Choosing a context (`get_context`) starts nothing.
const STARTS_PROCESSES: &[&str] = &[
    "Process",
    "Pool",
    "Manager",
    "ProcessPoolExecutor",
    "spawn",
    "start_processes",
];

/// Whether a call's callee belongs to the distributed stack (see [`DIST_ROOTS`]), launches,
/// or is a method of a `Fabric`/multi-process `Trainer` object.
fn dist_call(sym: &Symbols, call: &ast::ExprCall) -> bool {
    if sym
        .launch_label(&call.func, Some(&call.arguments))
        .is_some()
    {
        return true;
    }
    if let Some(q) = sym.qualname(&call.func)
        && DIST_ROOTS
            .iter()
            .any(|r| q == *r || q.starts_with(&format!("{r}.")))
    {
        return true;
    }
    let last = match &*call.func {
        Expr::Attribute(a) => a.attr.as_str(),
        Expr::Name(n) => n.id.as_str(),
        _ => "",
    };
    if STARTS_PROCESSES.contains(&last) {
        return true;
    }
    if let Expr::Attribute(a) = &*call.func
        && let Some(recv) = dotted(&a.value)
    {
        return sym.fabric_vars.contains(&recv) || sym.trainer_vars.contains_key(&recv);
    }
    false
}

/// Whether `stmt`'s own work, or (with `bodies`) any function body in it, makes a
/// distributed-stack call.
pub fn touches_dist(sym: &Symbols, stmt: &Stmt, bodies: bool) -> bool {
    struct Touch<'s, 'a> {
        sym: &'s Symbols<'a>,
        bodies: bool,
        hit: bool,
    }
    impl<'a> Walk<'a> for Touch<'_, 'a> {
        fn stmt(w: &mut Guarded<Self>, stmt: &'a Stmt) {
            if w.hit {
                return;
            }
            match stmt {
                Stmt::FunctionDef(f) if !w.bodies => {
                    for d in &f.decorator_list {
                        w.visit_expr(&d.expression);
                    }
                    for p in f.parameters.iter() {
                        if let Some(d) = p.default() {
                            w.visit_expr(d);
                        }
                    }
                }
                _ => visitor::walk_stmt(w, stmt),
            }
        }
        fn expr(w: &mut Guarded<Self>, expr: &'a Expr) {
            if w.hit {
                return;
            }
            match expr {
                Expr::Lambda(_) if !w.bodies => {}
                Expr::Call(c) if dist_call(w.sym, c) => w.hit = true,
                _ => visitor::walk_expr(w, expr),
            }
        }
    }
    let touch = Touch {
        sym,
        bodies,
        hit: false,
    };
    over_stmt(touch, stmt).hit
}

/// Whether evaluating `expr` (lambda bodies aside) makes a distributed-stack call.
pub fn expr_touches_dist(sym: &Symbols, expr: &Expr) -> bool {
    let stmt = Stmt::Expr(ast::StmtExpr {
        node_index: Default::default(),
        range: Default::default(),
        value: Box::new(expr.clone()),
    });
    touches_dist(sym, &stmt, false)
}

/// What the module's functions and classes do when called: free reads and distributed calls.
#[derive(Default)]
pub struct Callables {
    /// Function or class name -> the module names it reads when called (a class: all methods).
    pub free: HashMap<String, HashSet<String>>,
    /// Names whose call makes a distributed-stack call (directly).
    pub touches: HashSet<String>,
    /// Function or class name -> what calling it does to the module (a class: all methods).
    pub effects: HashMap<String, Effects>,
}

impl Callables {
    pub fn collect(sym: &Symbols, body: &[Stmt]) -> Callables {
        let mut c = Callables::default();
        for stmt in body {
            for f in functions_of(stmt) {
                let key = f.name.split('.').next().unwrap_or(&f.name).to_string();
                c.effects.entry(key.clone()).or_default().extend(&f.effects);
                c.free.entry(key).or_default().extend(f.free);
            }
            let name = match stmt {
                Stmt::FunctionDef(f) => f.name.as_str(),
                Stmt::ClassDef(c) => c.name.as_str(),
                _ => continue,
            };
            if touches_dist(sym, stmt, true) {
                c.touches.insert(name.to_string());
            }
        }
        c
    }

    /// `reads` and everything the module functions and classes among them read when called,
    /// transitively.
    pub fn closure(&self, reads: &HashSet<String>) -> HashSet<String> {
        let mut all = reads.clone();
        let mut todo: Vec<String> = reads.iter().cloned().collect();
        while let Some(n) = todo.pop() {
            if let Some(free) = self.free.get(&n) {
                for m in free {
                    if all.insert(m.clone()) {
                        todo.push(m.clone());
                    }
                }
            }
        }
        all
    }

    /// What calling the module functions and classes among `reads` does, transitively.
    pub fn effects_of(&self, reads: &HashSet<String>) -> Effects {
        let mut out = Effects::default();
        for n in self.closure(reads) {
            if let Some(e) = self.effects.get(&n) {
                out.extend(e);
            }
        }
        out
    }

    /// Whether calling any of `names` (read by a statement) reaches a distributed-stack call.
    pub fn reach_dist(&self, names: &HashSet<String>) -> bool {
        self.closure(names).iter().any(|n| self.touches.contains(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_of(src: &str) -> Vec<(String, Vec<String>)> {
        let parsed = ruff_python_parser::parse_module(src).expect("parses");
        parsed
            .syntax()
            .body
            .iter()
            .flat_map(functions_of)
            .map(|f| {
                let mut v: Vec<String> = f.free.into_iter().collect();
                v.sort();
                (f.name, v)
            })
            .collect()
    }

    #[test]
    fn free_variables_follow_python_scopes() {
        let got = free_of(
            "def work(i, k=D):\n    j = i + weights['w']\n    def inner(z):\n        return z + model + j\n    return [x * scale for x in range(j)]\n",
        );
        assert_eq!(
            got,
            [(
                "work".to_string(),
                vec!["model", "range", "scale", "weights"]
                    .into_iter()
                    .map(String::from)
                    .collect()
            )]
        );
        let got = free_of("def f():\n    global n\n    n += 1\n    t = 0\n    t += 1\n");
        assert_eq!(got[0].1, ["n"]);
        let got =
            free_of("class M:\n    size = 3\n    def fwd(self):\n        return size + cfg\n");
        assert_eq!(got[0].0, "M.fwd");
        assert_eq!(got[0].1, ["cfg", "size"]);
        let got = free_of("f = lambda a: a + w\n");
        assert_eq!(got[0].1, ["w"]);
    }
}
