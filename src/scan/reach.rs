//! What runs when a module is imported: top-level statements and everything nested in top-level
//! blocks (but not the body of `if __name__ == "__main__":`), class bodies, decorators, default
//! arguments, and same-file functions called from there (transitively, cycles cut).

use std::cell::RefCell;
use std::collections::HashMap;

use ruff_python_ast::visitor::{self, Visitor};
use ruff_python_ast::{self as ast, Expr, Stmt};
use ruff_text_size::{Ranged, TextRange, TextSize};

use super::symbols::{Guard, Symbols, dotted, main_guard, text};
use super::walk::{Guarded, Walk, over_body};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Launch,
    Cuda,
}

/// The call that does the work, wherever it is in the file.
#[derive(Clone, Debug)]
pub struct Origin {
    pub range: TextRange,
    pub label: String,
    /// The same-file function that contains it (None: the call itself is at module level).
    pub function: Option<String>,
}

/// Something that happens at import time: at `site` (a module-level call), ultimately `origin`.
#[derive(Clone, Debug)]
pub struct Event {
    pub kind: Kind,
    pub site: TextRange,
    pub label: String,
    pub origin: Option<Origin>,
}

#[derive(Clone, Default)]
struct Summary {
    launch: Option<Origin>,
    cuda: Option<Origin>,
}

/// How many same-file calls deep we follow; deeper chains are cut (never a stack overflow).
const MAX_CALL_DEPTH: usize = 64;

pub struct Reach<'s, 'a> {
    sym: &'s Symbols<'a>,
    memo: RefCell<HashMap<TextSize, Summary>>,
    active: RefCell<Vec<TextSize>>,
}

impl<'s, 'a> Reach<'s, 'a> {
    pub fn new(sym: &'s Symbols<'a>) -> Self {
        Reach {
            sym,
            memo: RefCell::default(),
            active: RefCell::default(),
        }
    }

    /// Everything in `body` that runs at import time.
    pub fn module_events(&self, body: &'a [Stmt]) -> Vec<Event> {
        let exec = Exec {
            class: None,
            reach: self,
            events: Vec::new(),
        };
        over_body(exec, body).events
    }

    fn summarise(
        &self,
        f: &'a ast::StmtFunctionDef,
        class: Option<&'a ast::StmtClassDef>,
    ) -> Summary {
        let key = f.range.start();
        if let Some(s) = self.memo.borrow().get(&key) {
            return s.clone();
        }
        {
            let active = self.active.borrow();
            if active.contains(&key) || active.len() >= MAX_CALL_DEPTH {
                return Summary::default();
            }
        }
        self.active.borrow_mut().push(key);
        let exec = Exec {
            class,
            reach: self,
            events: Vec::new(),
        };
        let events = over_body(exec, &f.body).events;
        self.active.borrow_mut().pop();
        let name = f.name.as_str().to_string();
        let first = |kind: Kind| {
            events
                .iter()
                .find(|e| e.kind == kind)
                .map(|e| match &e.origin {
                    Some(o) => o.clone(),
                    None => Origin {
                        range: e.site,
                        label: e.label.clone(),
                        function: Some(name.clone()),
                    },
                })
        };
        let summary = Summary {
            launch: first(Kind::Launch),
            cuda: first(Kind::Cuda),
        };
        self.memo.borrow_mut().insert(key, summary.clone());
        summary
    }
}

struct Exec<'r, 's, 'a> {
    /// The class whose method is being summarised (`self.x()` resolves to its methods).
    class: Option<&'a ast::StmtClassDef>,
    reach: &'r Reach<'s, 'a>,
    events: Vec<Event>,
}

impl<'a> Exec<'_, '_, 'a> {
    fn on_call(&mut self, call: &'a ast::ExprCall) {
        if let Some(label) = self.reach.sym.cuda_label(call) {
            self.events.push(Event {
                kind: Kind::Cuda,
                site: call.range(),
                label,
                origin: None,
            });
        }
        self.on_callee(&call.func, Some(&call.arguments), call.range());
    }

    /// `func` is called at `site`: a launch, or a same-file function or class that launches.
    fn on_callee(&mut self, func: &'a Expr, args: Option<&ast::Arguments>, site: TextRange) {
        let sym = self.reach.sym;
        if let Some(label) = sym.launch_label(func, args) {
            self.events.push(Event {
                kind: Kind::Launch,
                site,
                label,
                origin: None,
            });
        }
        let mut summaries: Vec<Summary> = Vec::new();
        let label = match func {
            Expr::Name(n) => {
                let name = n.id.as_str();
                // A name bound by an import is not the same-file function of that name.
                if sym.aliases.contains_key(name) {
                    return;
                }
                if let Some(defs) = sym.functions.get(name) {
                    summaries.extend(defs.iter().map(|f| self.reach.summarise(f, None)));
                } else if let Some(class) = sym.classes.get(name) {
                    summaries.extend(self.method(class, "__init__"));
                }
                format!("{name}()")
            }
            // `runner.start()` / `Runner().start()` on a same-file class.
            Expr::Attribute(a) => {
                let class = match &*a.value {
                    Expr::Call(c) => match &*c.func {
                        Expr::Name(n) if !sym.aliases.contains_key(n.id.as_str()) => {
                            sym.classes.get(n.id.as_str()).copied()
                        }
                        _ => None,
                    },
                    // `self.setup()` inside a method of a same-file class.
                    Expr::Name(n) if n.id.as_str() == "self" && self.class.is_some() => self.class,
                    other => dotted(other)
                        .and_then(|d| sym.instances.get(&d))
                        .and_then(|c| sym.classes.get(c))
                        .copied(),
                };
                let Some(class) = class else { return };
                summaries.extend(self.method(class, a.attr.as_str()));
                format!("{}()", text(func))
            }
            _ => return,
        };
        if let Some(o) = summaries.iter().find_map(|s| s.launch.clone()) {
            self.events.push(Event {
                kind: Kind::Launch,
                site,
                label: label.clone(),
                origin: Some(o),
            });
        }
        if let Some(o) = summaries.iter().find_map(|s| s.cuda.clone()) {
            self.events.push(Event {
                kind: Kind::Cuda,
                site,
                label,
                origin: Some(o),
            });
        }
    }

    fn method(&self, class: &'a ast::StmtClassDef, name: &str) -> Option<Summary> {
        class.body.iter().find_map(|stmt| match stmt {
            Stmt::FunctionDef(f) if f.name.as_str() == name => {
                Some(self.reach.summarise(f, Some(class)))
            }
            _ => None,
        })
    }
}

impl<'a> Guarded<Exec<'_, '_, 'a>> {
    /// A decorator is called with the function it decorates, then its own expression is evaluated.
    fn on_decorator(&mut self, d: &'a ast::Decorator) {
        if !matches!(d.expression, Expr::Call(_)) {
            self.on_callee(&d.expression, None, d.expression.range());
        }
        self.visit_expr(&d.expression);
    }
}

impl<'a> Walk<'a> for Exec<'_, '_, 'a> {
    fn stmt(w: &mut Guarded<Self>, stmt: &'a Stmt) {
        match stmt {
            // A def runs its decorators and default arguments, not its body.
            Stmt::FunctionDef(f) => {
                for d in &f.decorator_list {
                    w.on_decorator(d);
                }
                for p in f.parameters.iter_non_variadic_params() {
                    if let Some(d) = &p.default {
                        w.visit_expr(d);
                    }
                }
            }
            // A class body runs at definition time.
            Stmt::ClassDef(c) => {
                for d in &c.decorator_list {
                    w.on_decorator(d);
                }
                if let Some(args) = &c.arguments {
                    w.visit_arguments(args);
                }
                w.visit_body(&c.body);
            }
            Stmt::If(i) => match main_guard(&i.test) {
                Some(Guard::IsMain) => {
                    for clause in &i.elif_else_clauses {
                        if let Some(t) = &clause.test {
                            w.visit_expr(t);
                        }
                        w.visit_body(&clause.body);
                    }
                }
                Some(Guard::NotMain) => w.visit_body(&i.body),
                None => visitor::walk_stmt(w, stmt),
            },
            _ => visitor::walk_stmt(w, stmt),
        }
    }

    fn expr(w: &mut Guarded<Self>, expr: &'a Expr) {
        match expr {
            // A lambda's body runs when it is called, its defaults now.
            Expr::Lambda(l) => {
                if let Some(params) = &l.parameters {
                    for p in params.iter_non_variadic_params() {
                        if let Some(d) = &p.default {
                            w.visit_expr(d);
                        }
                    }
                }
            }
            Expr::Call(call) => {
                w.on_call(call);
                visitor::walk_expr(w, expr);
            }
            _ => visitor::walk_expr(w, expr),
        }
    }
}

/// Every place in the file (any scope) where spawn/forkserver children are chosen or started.
pub struct SpawnCollector<'s, 'a> {
    pub sym: &'s Symbols<'a>,
    pub default: Option<&'static str>,
    pub found: Vec<super::symbols::Evidence>,
}

impl<'a> Walk<'a> for SpawnCollector<'_, 'a> {
    fn expr(w: &mut Guarded<Self>, expr: &'a Expr) {
        if let Expr::Call(call) = expr {
            let SpawnCollector {
                sym,
                default,
                found,
            } = &mut **w;
            sym.spawn_evidence(call, *default, found);
        }
        visitor::walk_expr(w, expr);
    }
}
