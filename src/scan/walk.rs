//! The one depth guard of every syntax-tree walk in `scan/`.
//!
//! A walk says what it does at a statement, an expression or a pattern ([`Walk`]); only
//! [`Guarded`], a walk with its depth, is a ruff `Visitor`. So every walk descends through the same
//! guard and none can forget it: past [`MAX_DEPTH`] nested nodes it stops descending, whatever the
//! input (`((((...` 100k deep), and no walk can overflow the stack.

use std::ops::{Deref, DerefMut};

use ruff_python_ast::visitor::{self, Visitor};
use ruff_python_ast::{self as ast, Expr, Stmt};

/// Deep enough for any real program; deeper trees are not descended (no stack overflow).
pub const MAX_DEPTH: usize = 400;

/// What a walk does at each node. Each hook gets the walk inside its guard (`w`), so that it can
/// read and change the walk's own fields (through `Deref`), and descend with `w.visit_expr(..)`,
/// `w.visit_body(..)` or ruff's `visitor::walk_*(w, ..)`. The defaults descend into everything.
pub trait Walk<'a>: Sized {
    fn stmt(w: &mut Guarded<Self>, stmt: &'a Stmt) {
        visitor::walk_stmt(w, stmt);
    }
    fn expr(w: &mut Guarded<Self>, expr: &'a Expr) {
        visitor::walk_expr(w, expr);
    }
    fn pattern(w: &mut Guarded<Self>, pattern: &'a ast::Pattern) {
        visitor::walk_pattern(w, pattern);
    }
    fn except_handler(w: &mut Guarded<Self>, handler: &'a ast::ExceptHandler) {
        visitor::walk_except_handler(w, handler);
    }
    fn alias(_w: &mut Guarded<Self>, _alias: &'a ast::Alias) {}
    fn parameter(w: &mut Guarded<Self>, parameter: &'a ast::Parameter) {
        visitor::walk_parameter(w, parameter);
    }
    /// Called, instead of descending, at a node more than [`MAX_DEPTH`] levels down.
    fn too_deep(_w: &mut Guarded<Self>) {}
}

/// A walk with its depth: the `Visitor` that every [`Walk`] runs in.
#[derive(Default)]
pub struct Guarded<W> {
    walk: W,
    depth: usize,
}

impl<W> Guarded<W> {
    pub fn new(walk: W) -> Self {
        Guarded { walk, depth: 0 }
    }
    pub fn into_inner(self) -> W {
        self.walk
    }
    /// How many statements, expressions and patterns deep the walk is (1 inside the first).
    pub fn level(&self) -> usize {
        self.depth
    }
}

impl<W> Deref for Guarded<W> {
    type Target = W;
    fn deref(&self) -> &W {
        &self.walk
    }
}

impl<W> DerefMut for Guarded<W> {
    fn deref_mut(&mut self) -> &mut W {
        &mut self.walk
    }
}

impl<'a, W: Walk<'a>> Guarded<W> {
    /// What a `def` or `class` statement evaluates in the enclosing scope when it runs:
    /// decorators, then each parameter's annotation and default.
    pub fn visit_def_header(
        &mut self,
        decorators: &'a [ast::Decorator],
        params: Option<&'a ast::Parameters>,
    ) {
        for d in decorators {
            self.visit_expr(&d.expression);
        }
        for p in params.iter().flat_map(|p| p.iter()) {
            if let Some(a) = p.annotation() {
                self.visit_expr(a);
            }
            if let Some(d) = p.default() {
                self.visit_expr(d);
            }
        }
    }
}

/// The guard itself: one level down for `hook`, or [`Walk::too_deep`] past [`MAX_DEPTH`].
fn descend<'a, W: Walk<'a>>(g: &mut Guarded<W>, hook: impl FnOnce(&mut Guarded<W>)) {
    if g.depth > MAX_DEPTH {
        W::too_deep(g);
        return;
    }
    g.depth += 1;
    hook(g);
    g.depth -= 1;
}

impl<'a, W: Walk<'a>> Visitor<'a> for Guarded<W> {
    fn visit_stmt(&mut self, stmt: &'a Stmt) {
        descend(self, |g| W::stmt(g, stmt));
    }
    fn visit_expr(&mut self, expr: &'a Expr) {
        descend(self, |g| W::expr(g, expr));
    }
    fn visit_pattern(&mut self, pattern: &'a ast::Pattern) {
        descend(self, |g| W::pattern(g, pattern));
    }
    fn visit_except_handler(&mut self, handler: &'a ast::ExceptHandler) {
        W::except_handler(self, handler);
    }
    fn visit_alias(&mut self, alias: &'a ast::Alias) {
        W::alias(self, alias);
    }
    fn visit_parameter(&mut self, parameter: &'a ast::Parameter) {
        W::parameter(self, parameter);
    }
}

/// Run `walk` over `body` and hand it back.
pub fn over_body<'a, W: Walk<'a>>(walk: W, body: &'a [Stmt]) -> W {
    let mut g = Guarded::new(walk);
    g.visit_body(body);
    g.into_inner()
}

/// Run `walk` over one statement and hand it back.
pub fn over_stmt<'a, W: Walk<'a>>(walk: W, stmt: &'a Stmt) -> W {
    let mut g = Guarded::new(walk);
    g.visit_stmt(stmt);
    g.into_inner()
}

/// Run `walk` over one expression and hand it back.
pub fn over_expr<'a, W: Walk<'a>>(walk: W, expr: &'a Expr) -> W {
    let mut g = Guarded::new(walk);
    g.visit_expr(expr);
    g.into_inner()
}

/// Where the first walk of `body` that descends into everything would stop at [`MAX_DEPTH`]: the
/// deepest node it reaches above a subtree it does not descend into. Every walk in `scan/` starts at
/// the module or below it and descends at most as far, so `None` means that no walk of this
/// module is cut, and `Some` means that some part of it may not have been checked.
pub fn cut_at(body: &[Stmt]) -> Option<ruff_text_size::TextRange> {
    over_body(Cut::default(), body).cut
}

/// The walk of [`cut_at`]: the last node entered, and where the guard first stopped it.
#[derive(Default)]
struct Cut {
    last: ruff_text_size::TextRange,
    cut: Option<ruff_text_size::TextRange>,
}

impl<'a> Walk<'a> for Cut {
    fn stmt(w: &mut Guarded<Self>, stmt: &'a Stmt) {
        if w.cut.is_none() {
            w.last = ruff_text_size::Ranged::range(stmt);
            visitor::walk_stmt(w, stmt);
        }
    }
    fn expr(w: &mut Guarded<Self>, expr: &'a Expr) {
        if w.cut.is_none() {
            w.last = ruff_text_size::Ranged::range(expr);
            visitor::walk_expr(w, expr);
        }
    }
    fn pattern(w: &mut Guarded<Self>, pattern: &'a ast::Pattern) {
        if w.cut.is_none() {
            w.last = ruff_text_size::Ranged::range(pattern);
            visitor::walk_pattern(w, pattern);
        }
    }
    /// The node entered last is the parent of the one not descended into: no node deeper than
    /// it can have been entered since.
    fn too_deep(w: &mut Guarded<Self>) {
        if w.cut.is_none() {
            w.cut = Some(w.last);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruff_python_parser::parse_module;

    /// Counts the nodes it is called at and the deepest level it reaches; the default hooks
    /// descend into everything.
    #[derive(Default)]
    struct Deepest {
        nodes: usize,
        deepest: usize,
        cut: usize,
    }
    impl<'a> Walk<'a> for Deepest {
        fn stmt(w: &mut Guarded<Self>, stmt: &'a Stmt) {
            w.nodes += 1;
            w.deepest = w.deepest.max(w.level());
            visitor::walk_stmt(w, stmt);
        }
        fn expr(w: &mut Guarded<Self>, expr: &'a Expr) {
            w.nodes += 1;
            w.deepest = w.deepest.max(w.level());
            visitor::walk_expr(w, expr);
        }
        fn pattern(w: &mut Guarded<Self>, pattern: &'a ast::Pattern) {
            w.nodes += 1;
            w.deepest = w.deepest.max(w.level());
            visitor::walk_pattern(w, pattern);
        }
        fn too_deep(w: &mut Guarded<Self>) {
            w.cut += 1;
        }
    }

    fn walk(source: &str) -> Deepest {
        let parsed = parse_module(source).expect("parses");
        over_body(Deepest::default(), &parsed.syntax().body)
    }

    /// Nesting of each kind the guard counts, below and past the limit: the walk reaches every
    /// node of a tree up to MAX_DEPTH deep, and never goes one level past it on a deeper one.
    #[test]
    fn the_guard_stops_every_kind_of_nesting_at_max_depth() {
        let exprs = |n: usize| format!("x = {}1{}\n", "(-".repeat(n), ")".repeat(n));
        let stmts = |n: usize| {
            (0..n)
                .map(|i| format!("{}if x:\n", " ".repeat(i)))
                .collect::<String>()
                + &" ".repeat(n)
                + "pass\n"
        };
        let patterns = |n: usize| {
            format!(
                "match x:\n    case {}y{}:\n        pass\n",
                "[".repeat(n),
                "]".repeat(n)
            )
        };
        for (kind, make) in [
            ("expressions", &exprs as &dyn Fn(usize) -> String),
            ("statements", &stmts),
            ("patterns", &patterns),
        ] {
            let shallow = walk(&make(MAX_DEPTH / 2));
            assert_eq!(shallow.cut, 0, "{kind}: nothing cut at half the limit");
            assert!(shallow.deepest <= MAX_DEPTH, "{kind}");
            let deep = walk(&make(MAX_DEPTH * 3));
            assert!(deep.cut > 0, "{kind}: a tree three times too deep is cut");
            assert_eq!(deep.deepest, MAX_DEPTH + 1, "{kind}: stops at the limit");
        }
    }
}
