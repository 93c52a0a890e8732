//! What one module-level statement binds and reads when it runs, and what would change meaning
//! if it ran inside a function instead (`exec`, `locals()`, `global`, annotated names).

use std::collections::HashSet;

use ruff_python_ast::visitor::{self, Visitor};
use ruff_python_ast::{self as ast, Expr, ExprContext, Pattern, Stmt};

use crate::scan::walk::{Guarded, Walk, over_stmt};

/// The names one statement binds in the module scope and reads while it runs.
#[derive(Default)]
pub struct Names {
    /// Bound in the module scope, in order of first binding.
    pub bound: Vec<String>,
    /// Read while the statement runs (for a def: decorators, defaults, annotations only).
    pub reads: HashSet<String>,
    /// Why this statement cannot run inside a function unchanged.
    pub hazards: Vec<String>,
    /// Functions and classes defined inside a block (not as the statement itself).
    pub nested_defs: Vec<String>,
    /// `from M import *`.
    pub star_import: bool,
    /// Module names whose object this statement changes in place: `x[k] = v`, `x.a = v`,
    /// `del x[k]`, `x.append(v)`, `setattr(x, ...)` (the root name of the target).
    pub mutated: Vec<String>,
    /// The same changes as dotted prefixes: the root and its first attribute (`os.environ` of
    /// `os.environ["X"] = v`, `sys.path` of `sys.path.append(p)`, `x` of `x[k] = v`).
    pub mutated_at: Vec<String>,
    /// `a.b` of every attribute read rooted at a name (`os.environ` of `os.environ.get(k)`).
    pub dotted_reads: HashSet<String>,
    /// Callees as written, dotted (`os.chdir`, `site.addsitedir`).
    pub callees: HashSet<String>,
    /// It imports (an import statement at any depth of its blocks).
    pub imports: bool,
    seen: HashSet<String>,
    class_depth: usize,
    comprehension_depth: usize,
}

impl Names {
    pub fn of(stmt: &Stmt) -> Names {
        over_stmt(Names::default(), stmt)
    }

    fn bind(&mut self, name: &str) {
        if self.class_depth == 0 && self.seen.insert(name.to_string()) {
            self.bound.push(name.to_string());
        }
    }

    fn mutate(&mut self, target: &Expr) {
        if self.class_depth == 0
            && self.comprehension_depth == 0
            && let Some(root) = root_name(target)
        {
            if !self.mutated.iter().any(|m| m == root) {
                self.mutated.push(root.to_string());
            }
            let at = prefix2(target).unwrap_or_else(|| root.to_string());
            if !self.mutated_at.contains(&at) {
                self.mutated_at.push(at);
            }
        }
    }

    fn hazard(&mut self, why: String) {
        if self.class_depth == 0 && !self.hazards.contains(&why) {
            self.hazards.push(why);
        }
    }
}

impl Guarded<Names> {
    fn on_def(&mut self, name: &str) {
        if self.level() > 1 && self.class_depth == 0 {
            self.nested_defs.push(name.to_string());
        }
        self.bind(name);
    }
}

impl<'a> Walk<'a> for Names {
    fn too_deep(w: &mut Guarded<Self>) {
        w.hazard("nested too deep to analyse".to_string());
    }

    fn stmt(w: &mut Guarded<Self>, stmt: &'a Stmt) {
        match stmt {
            Stmt::FunctionDef(f) => {
                w.visit_def_header(&f.decorator_list, Some(&f.parameters));
                if let Some(r) = &f.returns {
                    w.visit_expr(r);
                }
                w.on_def(f.name.as_str());
            }
            Stmt::ClassDef(c) => {
                w.visit_def_header(&c.decorator_list, None);
                if let Some(args) = &c.arguments {
                    w.visit_arguments(args);
                }
                w.class_depth += 1;
                w.visit_body(&c.body);
                w.class_depth -= 1;
                w.on_def(c.name.as_str());
            }
            Stmt::Import(i) => {
                w.imports = true;
                for a in &i.names {
                    let name = a.asname.as_ref().unwrap_or(&a.name).as_str();
                    w.bind(name.split('.').next().unwrap_or(name));
                }
            }
            Stmt::ImportFrom(i) => {
                w.imports = true;
                for a in &i.names {
                    if a.name.as_str() == "*" {
                        w.star_import = true;
                    } else {
                        w.bind(a.asname.as_ref().unwrap_or(&a.name).as_str());
                    }
                }
            }
            Stmt::Global(_) | Stmt::Nonlocal(_) => {
                w.hazard("a module-level `global` statement".to_string());
            }
            Stmt::AugAssign(a) => {
                // `x += 1` reads `x` before it binds it.
                if let Expr::Name(n) = &*a.target {
                    w.reads.insert(n.id.to_string());
                }
                visitor::walk_stmt(w, stmt);
            }
            Stmt::AnnAssign(a) => {
                if let Expr::Name(n) = &*a.target {
                    w.hazard(format!(
                        "the annotated assignment to `{}` (an annotated name cannot be declared `global`)",
                        n.id
                    ));
                }
                visitor::walk_stmt(w, stmt);
            }
            _ => visitor::walk_stmt(w, stmt),
        }
    }

    fn expr(w: &mut Guarded<Self>, expr: &'a Expr) {
        match expr {
            Expr::Name(n) => match n.ctx {
                ExprContext::Load => {
                    w.reads.insert(n.id.to_string());
                }
                ExprContext::Store | ExprContext::Del if w.comprehension_depth == 0 => {
                    w.bind(n.id.as_str());
                }
                _ => {}
            },
            Expr::Named(named) => {
                if let Expr::Name(n) = &*named.target {
                    // A walrus binds in the enclosing scope, even inside a comprehension.
                    let saved = std::mem::take(&mut w.comprehension_depth);
                    w.bind(n.id.as_str());
                    w.comprehension_depth = saved;
                }
                w.visit_expr(&named.value);
            }
            // A lambda's body runs when it is called; its defaults now.
            Expr::Lambda(l) => {
                if let Some(params) = &l.parameters {
                    for p in params.iter() {
                        if let Some(d) = p.default() {
                            w.visit_expr(d);
                        }
                    }
                }
            }
            Expr::ListComp(_) | Expr::SetComp(_) | Expr::DictComp(_) | Expr::Generator(_) => {
                w.comprehension_depth += 1;
                visitor::walk_expr(w, expr);
                w.comprehension_depth -= 1;
            }
            Expr::Subscript(ast::ExprSubscript { value, ctx, .. })
            | Expr::Attribute(ast::ExprAttribute { value, ctx, .. })
                if matches!(ctx, ExprContext::Store | ExprContext::Del) =>
            {
                w.mutate(value);
                visitor::walk_expr(w, expr);
            }
            Expr::Attribute(a) if a.ctx == ExprContext::Load => {
                if let Expr::Name(n) = &*a.value {
                    w.dotted_reads.insert(format!("{}.{}", n.id, a.attr));
                }
                visitor::walk_expr(w, expr);
            }
            Expr::Call(c) => {
                if let Some(callee) = crate::scan::symbols::dotted(&c.func) {
                    w.callees.insert(callee);
                }
                if let Expr::Attribute(a) = &*c.func
                    && MUTATORS.contains(&a.attr.as_str())
                {
                    w.mutate(&a.value);
                }
                if let Expr::Name(n) = &*c.func
                    && matches!(n.id.as_str(), "setattr" | "delattr")
                    && let Some(first) = c.arguments.args.first()
                {
                    w.mutate(first);
                }
                if let Expr::Name(n) = &*c.func
                    && matches!(n.id.as_str(), "exec" | "eval" | "locals" | "vars" | "dir")
                    && (n.id.as_str() != "dir" && n.id.as_str() != "vars" || c.arguments.is_empty())
                {
                    w.hazard(format!(
                        "`{}()` (it would see the function's variables instead of the module's)",
                        n.id
                    ));
                }
                visitor::walk_expr(w, expr);
            }
            _ => visitor::walk_expr(w, expr),
        }
    }

    fn except_handler(w: &mut Guarded<Self>, handler: &'a ast::ExceptHandler) {
        let ast::ExceptHandler::ExceptHandler(h) = handler;
        if let Some(name) = &h.name {
            w.bind(name.as_str());
        }
        visitor::walk_except_handler(w, handler);
    }

    fn pattern(w: &mut Guarded<Self>, pattern: &'a Pattern) {
        let name = match pattern {
            Pattern::MatchAs(p) => p.name.as_ref(),
            Pattern::MatchStar(p) => p.name.as_ref(),
            Pattern::MatchMapping(p) => p.rest.as_ref(),
            _ => None,
        };
        if let Some(name) = name {
            w.bind(name.as_str());
        }
        visitor::walk_pattern(w, pattern);
    }
}

/// Methods that change a list, dict, set or registry in place.
pub const MUTATORS: &[&str] = &[
    "append",
    "extend",
    "insert",
    "update",
    "setdefault",
    "add",
    "discard",
    "remove",
    "pop",
    "popitem",
    "clear",
    "sort",
    "reverse",
    "register",
    "__setitem__",
    "__delitem__",
];

/// `x.a` of `x.a`, `x.a.b`, `x.a[k]`; `x` of `x`, `x[k].a` (`None` as for [`root_name`]).
pub fn prefix2(e: &Expr) -> Option<String> {
    let mut cur = e;
    let mut below: Option<&Expr> = None;
    loop {
        match cur {
            Expr::Name(n) => {
                return Some(match below {
                    Some(Expr::Attribute(a)) => format!("{}.{}", n.id, a.attr),
                    _ => n.id.to_string(),
                });
            }
            Expr::Attribute(a) => {
                below = Some(cur);
                cur = &a.value;
            }
            Expr::Subscript(s) => {
                below = Some(cur);
                cur = &s.value;
            }
            _ => return None,
        }
    }
}

/// `x` of `x`, `x.a.b`, `x[k].a` (`None` when the chain starts with a call or a literal).
pub fn root_name(e: &Expr) -> Option<&str> {
    match e {
        Expr::Name(n) => Some(n.id.as_str()),
        Expr::Attribute(a) => root_name(&a.value),
        Expr::Subscript(s) => root_name(&s.value),
        _ => None,
    }
}
