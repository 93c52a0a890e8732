//! What names mean in one file: imports and their aliases, variables holding a `Fabric` or a
//! multi-process `Trainer`, and the functions and classes defined at module level. Plus the
//! classification of a call: does it launch distributed work, touch CUDA, or choose spawn children.

use std::collections::{HashMap, HashSet};

use ruff_python_ast::visitor::{self, Visitor};
use ruff_python_ast::{self as ast, Expr, ExprContext, Number, Stmt, UnaryOp};
use ruff_text_size::{Ranged, TextRange};

use super::walk::{Guarded, Walk, over_body};

/// `torch.cuda.*` calls that do not initialise CUDA. Queries: `is_available`, `device_count`
/// (NVML or cudaGetDeviceCount, no context), `is_initialized`, `get_arch_list`,
/// `get_gencode_flags`, `is_current_stream_capturing`. Queued until CUDA initialises
/// (`_lazy_call`): `manual_seed`, `manual_seed_all`, `seed`, `seed_all`, `set_rng_state`,
/// `set_rng_state_all`. No-ops before initialisation (`if is_initialized()` / `if not
/// is_initialized(): return {}`): `empty_cache`, `memory_stats`, `memory_stats_as_nested_dict`,
/// `memory_allocated`, `max_memory_allocated`, `memory_reserved`, `max_memory_reserved`,
/// `memory_cached`, `max_memory_cached`. Not here: `is_bf16_supported` (calls
/// `current_device()`, which initialises), `set_device`, `synchronize`, `current_device`,
/// `get_device_properties`/`_name`/`_capability`, `get_rng_state`, `reset_peak_memory_stats`.
pub const LAZY_CUDA: &[&str] = &[
    "is_available",
    "is_initialized",
    "device_count",
    "get_arch_list",
    "get_gencode_flags",
    "is_current_stream_capturing",
    "manual_seed",
    "manual_seed_all",
    "seed",
    "seed_all",
    "set_rng_state",
    "set_rng_state_all",
    "empty_cache",
    "memory_stats",
    "memory_stats_as_nested_dict",
    "memory_allocated",
    "max_memory_allocated",
    "memory_reserved",
    "max_memory_reserved",
    "memory_cached",
    "max_memory_cached",
];

/// Where a program chooses spawn or forkserver children, and how.
#[derive(Clone, Debug)]
pub struct Evidence {
    pub range: TextRange,
    pub what: String,
}

/// The start method a platform uses when none is chosen, when it re-imports the main module.
pub fn spawnlike_default(platform: super::Platform, version: (u32, u32)) -> Option<&'static str> {
    match platform {
        super::Platform::Macos | super::Platform::Windows => Some("spawn"),
        super::Platform::Linux if version >= (3, 14) => Some("forkserver"),
        super::Platform::Linux => None,
    }
}

#[derive(Default)]
pub struct Symbols<'a> {
    /// Local name -> fully qualified name (`L` -> `lightning`, `dist` -> `torch.distributed`).
    pub aliases: HashMap<String, String>,
    /// Dotted targets assigned a `Fabric(...)` (`fabric`, `self.fabric`).
    pub fabric_vars: HashSet<String>,
    /// Dotted targets assigned a `Trainer(...)`, with whether it runs several processes.
    pub trainer_vars: HashMap<String, bool>,
    /// Functions defined at module level (also inside module-level if/try/with blocks).
    pub functions: HashMap<&'a str, Vec<&'a ast::StmtFunctionDef>>,
    /// Classes defined at module level.
    pub classes: HashMap<&'a str, &'a ast::StmtClassDef>,
    /// Dotted targets assigned an instance of a module-level class (`runner = Runner()`).
    pub instances: HashMap<String, &'a str>,
    /// Modules the file star-imports (`from M import *`, absolute ones).
    pub star_modules: Vec<String>,
    /// Every name the file binds anywhere (imports, defs, classes, assignments, parameters).
    pub bound: HashSet<String>,
}

impl<'a> Symbols<'a> {
    pub fn collect(body: &'a [Stmt]) -> Self {
        Self::collect_with(body, &HashMap::new())
    }

    /// [`Symbols::collect`], with the names star imports bring from sibling modules
    /// (`from utils import *` where utils.py imports torch): each is an alias unless the file
    /// binds that name itself.
    pub fn collect_with(body: &'a [Stmt], star_imported: &HashMap<String, String>) -> Self {
        let mut sym = Symbols::default();
        over_body(
            ImportCollector {
                aliases: &mut sym.aliases,
                star: &mut sym.star_modules,
            },
            body,
        );
        sym.bound = bound_anywhere(body);
        for (name, q) in star_imported {
            if !sym.bound.contains(name) {
                sym.aliases.entry(name.clone()).or_insert_with(|| q.clone());
            }
        }
        let defs = over_body(DefCollector::default(), body);
        sym.functions = defs.functions;
        sym.classes = defs.classes;
        over_body(
            AssignCollector {
                sym: &mut sym,
                scope: 0,
            },
            body,
        );
        sym
    }

    /// The fully qualified name of `torch.distributed.init_process_group`-like expressions.
    pub fn qualname(&self, expr: &Expr) -> Option<String> {
        let name = dotted(expr)?;
        let (head, rest) = match name.split_once('.') {
            Some((head, rest)) => (head, Some(rest)),
            None => (name.as_str(), None),
        };
        let mut s = match self.aliases.get(head) {
            Some(q) => q.clone(),
            None => self.star_guess(head)?,
        };
        if let Some(rest) = rest {
            s.push('.');
            s.push_str(rest);
        }
        Some(s)
    }

    /// A name the file never binds while it star-imports something (a sibling module that was
    /// not found, say): taken as the library it is spelled like (`torch`, `dist` for
    /// torch.distributed, `L` for lightning), or, after `from torch.distributed import *`, as
    /// that module's member.
    fn star_guess(&self, head: &str) -> Option<String> {
        if self.star_modules.is_empty() || self.bound.contains(head) {
            return None;
        }
        let spelled = match head {
            "torch" | "lightning" | "pytorch_lightning" | "lightning_fabric" | "accelerate"
            | "deepspeed" => Some(head),
            "dist" => Some("torch.distributed"),
            "pl" => Some("pytorch_lightning"),
            "L" => Some("lightning"),
            _ => None,
        };
        if let Some(q) = spelled {
            return Some(q.to_string());
        }
        let library = [
            "torch",
            "lightning",
            "pytorch_lightning",
            "lightning_fabric",
            "accelerate",
            "deepspeed",
        ];
        self.star_modules
            .iter()
            .find(|m| library.contains(&m.split('.').next().unwrap_or("")))
            .map(|m| format!("{m}.{head}"))
    }

    /// Classify a call as a distributed launch or init; the label names it for people.
    /// `func` is the callee: `call.func`, or a decorator (applying it calls it).
    /// `args` are the call's arguments (None for a decorator).
    pub fn launch_label(&self, func: &Expr, args: Option<&ast::Arguments>) -> Option<String> {
        // Called where it is made: `functools.partial(dist.init_process_group, "gloo")()`,
        // `(lambda: dist.init_process_group("gloo"))()`.
        match func {
            Expr::Call(c) if self.qualname(&c.func).as_deref() == Some("functools.partial") => {
                let inner = c.arguments.args.first()?;
                return self
                    .launch_label(inner, Some(&c.arguments))
                    .map(|l| format!("{}({}, ...)()", text(&c.func), l.trim_end_matches("()")));
            }
            Expr::Lambda(l) => {
                let Expr::Call(body) = &*l.body else {
                    return None;
                };
                return self
                    .launch_label(&body.func, Some(&body.arguments))
                    .map(|l| format!("(lambda: {l})()"));
            }
            _ => {}
        }
        if let Some(q) = self.qualname(func) {
            let (root, last) = root_last(&q);
            // Entry points that initialise the process group or start ranks, from the
            // libraries' own source (docs/findings/S001.md lists them with the reason).
            let hit = match (root, last) {
                // init_device_mesh / DeviceMesh(...) call init_process_group() when no default
                // group exists (DeviceMesh._setup_world_group_and_device); init_rpc starts RPC
                // agents over a store.
                (
                    "torch",
                    "init_process_group" | "init_device_mesh" | "DeviceMesh" | "init_rpc"
                    | "elastic_launch" | "launch_agent",
                ) => q.starts_with("torch.distributed."),
                ("torch", "TCPStore") => true,
                ("torch", "spawn") => q.starts_with("torch.multiprocessing."),
                ("torch", "start_processes") => {
                    q.starts_with("torch.multiprocessing.")
                        || q.starts_with("torch.distributed.elastic.multiprocessing")
                }
                // torchrun / torch.distributed.launch run as a library call.
                ("torch", "main" | "run") => matches!(
                    q.as_str(),
                    "torch.distributed.run.main"
                        | "torch.distributed.run.run"
                        | "torch.distributed.launch.main"
                ),
                // The state objects initialise the process group on construction when the
                // environment says distributed (PartialState.__init__).
                (
                    "accelerate",
                    "Accelerator" | "PartialState" | "AcceleratorState" | "notebook_launcher"
                    | "debug_launcher",
                ) => true,
                ("deepspeed", "initialize" | "init_distributed") => true,
                // zero.Init() calls init_distributed() when no process group exists.
                ("deepspeed", "Init") => q.contains(".zero."),
                // InferenceEngine creates a model-parallel group (init_distributed) for mp > 1.
                ("deepspeed", "init_inference") => args.is_some_and(inference_is_parallel),
                // LightningCLI fits on construction unless `run=False`.
                ("lightning" | "pytorch_lightning", "LightningCLI") => {
                    let run = args.and_then(|a| a.find_keyword("run")).map(|k| &k.value);
                    !matches!(run, Some(Expr::BooleanLiteral(b)) if !b.value)
                }
                _ => false,
            };
            if hit {
                return Some(format!("{}()", text(func)));
            }
        }
        if let Expr::Attribute(a) = func {
            let method = a.attr.as_str();
            let receiver = &*a.value;
            if method == "launch" && self.is_fabric_object(receiver) {
                return Some(format!("{}()", text(func)));
            }
            if matches!(method, "fit" | "validate" | "test" | "predict")
                && self.is_multiprocess_trainer(receiver)
            {
                return Some(format!("{}()", text(func)));
            }
        }
        None
    }

    fn is_fabric_object(&self, expr: &Expr) -> bool {
        match expr {
            Expr::Call(c) => self.qualname(&c.func).is_some_and(|q| is_fabric_class(&q)),
            _ => dotted(expr).is_some_and(|d| self.fabric_vars.contains(&d)),
        }
    }

    fn is_multiprocess_trainer(&self, expr: &Expr) -> bool {
        match expr {
            Expr::Call(c) => {
                self.qualname(&c.func).is_some_and(|q| is_trainer_class(&q))
                    && self.trainer_multi(c)
            }
            _ => dotted(expr).is_some_and(|d| self.trainer_vars.get(&d).copied().unwrap_or(false)),
        }
    }

    /// Does a `Trainer(...)` call ask for several processes (DDP-like strategy, devices > 1, nodes > 1)?
    fn trainer_multi(&self, call: &ast::ExprCall) -> bool {
        let args = &call.arguments;
        if args
            .find_keyword("strategy")
            .is_some_and(|k| self.strategy_multi(&k.value))
        {
            return true;
        }
        for key in ["devices", "gpus"] {
            if args
                .find_keyword(key)
                .is_some_and(|k| devices_multi(&k.value))
            {
                return true;
            }
        }
        args.find_keyword("num_nodes")
            .and_then(|k| int_value(&k.value))
            .is_some_and(|n| n > 1)
    }

    fn strategy_multi(&self, expr: &Expr) -> bool {
        if let Some(s) = str_value(expr) {
            let s = s.to_ascii_lowercase();
            return s.starts_with("ddp") || s.starts_with("fsdp") || s.starts_with("deepspeed");
        }
        if let Expr::Call(c) = expr
            && let Some(q) = self.qualname(&c.func)
        {
            let (_, last) = root_last(&q);
            return matches!(
                last,
                "DDPStrategy" | "DDPSpawnStrategy" | "FSDPStrategy" | "DeepSpeedStrategy"
            );
        }
        false
    }

    /// Classify a call as CUDA work (S003).
    pub fn cuda_label(&self, call: &ast::ExprCall) -> Option<String> {
        let func = &*call.func;
        let q = self.qualname(func);
        if let Some(q) = &q {
            if let Some(rest) = q.strip_prefix("torch.cuda.") {
                // Calls that create no CUDA context (decided from torch's source; the list and
                // the reasons are in docs/findings/S003.md), and private helpers (except the init).
                let private = ["amp.", "nvtx.", "jiterator.", "_"]
                    .iter()
                    .any(|p| rest.starts_with(p));
                let benign = (private && rest != "_lazy_init") || LAZY_CUDA.contains(&rest);
                return (!benign).then(|| format!("{}()", text(func)));
            }
            if q.starts_with("torch.")
                && q != "torch.device"
                && call
                    .arguments
                    .find_keyword("device")
                    .is_some_and(|k| self.is_cuda_device(&k.value))
            {
                return Some(format!("{}(device=\"cuda\")", text(func)));
            }
        }
        if let Expr::Attribute(a) = func {
            match a.attr.as_str() {
                "cuda" if q.as_deref() != Some("torch.cuda") => {
                    return Some(format!("{}()", text(func)));
                }
                "to" => {
                    let args = &call.arguments;
                    let target = args.find_argument_value("device", 0);
                    if target.is_some_and(|t| self.is_cuda_device(t)) {
                        return Some(format!("{}(\"cuda\")", text(func)));
                    }
                }
                _ => {}
            }
        }
        None
    }

    fn is_cuda_device(&self, expr: &Expr) -> bool {
        if let Some(s) = str_value(expr) {
            return s.starts_with("cuda");
        }
        if let Expr::Call(c) = expr {
            return self.qualname(&c.func).as_deref() == Some("torch.device")
                && c.arguments
                    .find_positional(0)
                    .and_then(str_value)
                    .is_some_and(|s| s.starts_with("cuda"));
        }
        false
    }

    /// Does this call start (or choose) spawn/forkserver children? `default` is the platform's
    /// start method when it re-imports the main module (None: fork).
    pub fn spawn_evidence(
        &self,
        call: &ast::ExprCall,
        default: Option<&str>,
        out: &mut Vec<Evidence>,
    ) {
        keyword_evidence(&call.arguments, out);
        let func = &*call.func;
        let last = match func {
            Expr::Attribute(a) => a.attr.as_str(),
            Expr::Name(n) => n.id.as_str(),
            _ => return,
        };
        let q = self.qualname(func).unwrap_or_default();
        let args = &call.arguments;
        let evidence = |what: String| Evidence {
            range: call.range(),
            what,
        };
        let with_default = |d: &str| {
            format!(
                "{}() with the platform default start method \"{d}\"",
                text(func)
            )
        };
        match last {
            "set_start_method" | "get_context" => match args.find_argument_value("method", 0) {
                Some(v) => {
                    if let Some(s) = str_value(v).filter(|s| is_spawnlike(s)) {
                        out.push(evidence(format!("{}(\"{s}\")", text(func))));
                    }
                }
                None if last == "get_context" => {
                    out.extend(default.map(|d| evidence(with_default(d))));
                }
                None => {}
            },
            "spawn" if q.starts_with("torch.multiprocessing.") => {
                out.push(evidence(format!("{}() starts spawn children", text(func))));
            }
            "start_processes"
                if q.starts_with("torch.multiprocessing.")
                    && args.find_keyword("start_method").is_none() =>
            {
                out.push(evidence(format!(
                    "{}() starts spawn children (its default start method)",
                    text(func)
                )));
            }
            "DataLoader" => {
                if let Some(what) = default.and_then(|d| dataloader_evidence(func, args, d)) {
                    out.push(evidence(what));
                }
            }
            "Process" | "Pool" | "ProcessPoolExecutor"
                if matches!(
                    q.as_str(),
                    "multiprocessing.Process"
                        | "multiprocessing.Pool"
                        | "torch.multiprocessing.Process"
                        | "torch.multiprocessing.Pool"
                        | "concurrent.futures.ProcessPoolExecutor"
                        | "concurrent.futures.process.ProcessPoolExecutor"
                ) && args.find_keyword("mp_context").is_none() =>
            {
                out.extend(default.map(|d| evidence(with_default(d))));
            }
            _ => {}
        }
    }
}

fn is_spawnlike(s: &str) -> bool {
    matches!(s, "spawn" | "forkserver")
}

/// A keyword that chooses spawn or forkserver: `multiprocessing_context=`, `mp_context=`,
/// `start_method=`, or a Lightning `strategy=` naming spawn.
fn keyword_evidence(args: &ast::Arguments, out: &mut Vec<Evidence>) {
    for kw in args.keywords.iter() {
        let Some(arg) = kw.arg.as_ref().map(|a| a.as_str()) else {
            continue;
        };
        if !matches!(
            arg,
            "multiprocessing_context" | "mp_context" | "start_method" | "strategy"
        ) {
            continue;
        }
        if let Some(v) = str_value(&kw.value) {
            let hit = if arg == "strategy" {
                v.contains("spawn")
            } else {
                is_spawnlike(v)
            };
            if hit {
                out.push(Evidence {
                    range: kw.range(),
                    what: format!("{arg}=\"{v}\""),
                });
            }
        }
    }
}

/// A DataLoader with workers (`num_workers` not a literal 0) and no context of its own starts
/// children with the platform default `d`.
fn dataloader_evidence(func: &Expr, args: &ast::Arguments, d: &str) -> Option<String> {
    if args.find_keyword("multiprocessing_context").is_some() {
        return None;
    }
    let n = int_value(args.find_argument_value("num_workers", 5)?);
    n.is_none_or(|n| n > 0).then(|| {
        let shown = n.map_or_else(
            || "num_workers=<not a literal>".to_string(),
            |n| format!("num_workers={n}"),
        );
        format!(
            "{}({shown}) with the platform default start method \"{d}\"",
            text(func)
        )
    })
}

/// `deepspeed.init_inference(..., mp_size=N)` or `tensor_parallel=...` with more than one rank
/// (not a literal 1).
fn inference_is_parallel(args: &ast::Arguments) -> bool {
    let not_one = |e: &Expr| int_value(e) != Some(1);
    if args
        .find_keyword("mp_size")
        .is_some_and(|k| not_one(&k.value))
    {
        return true;
    }
    match args.find_keyword("tensor_parallel").map(|k| &k.value) {
        Some(Expr::Dict(d)) => d.items.iter().any(|item| {
            item.key.as_ref().and_then(str_value) == Some("tp_size") && not_one(&item.value)
        }),
        Some(_) => true,
        None => false,
    }
}

fn root_last(q: &str) -> (&str, &str) {
    (
        q.split('.').next().unwrap_or(""),
        q.rsplit('.').next().unwrap_or(""),
    )
}

fn is_fabric_class(q: &str) -> bool {
    let (root, last) = root_last(q);
    matches!(root, "lightning" | "lightning_fabric" | "pytorch_lightning") && last == "Fabric"
}

fn is_trainer_class(q: &str) -> bool {
    let (root, last) = root_last(q);
    matches!(root, "lightning" | "pytorch_lightning") && last == "Trainer"
}

fn devices_multi(expr: &Expr) -> bool {
    if let Some(n) = int_value(expr) {
        return n > 1 || n == -1;
    }
    if let Some(s) = str_value(expr) {
        let s = s.trim();
        if s == "-1" {
            return true;
        }
        if let Ok(n) = s.parse::<i64>() {
            return n > 1;
        }
        return s.split(',').filter(|p| !p.trim().is_empty()).count() > 1;
    }
    match expr {
        Expr::List(l) => l.elts.len() > 1,
        Expr::Tuple(t) => t.elts.len() > 1,
        _ => false,
    }
}

/// A literal integer, negative ones included.
pub fn int_value(expr: &Expr) -> Option<i64> {
    match expr {
        Expr::NumberLiteral(n) => match &n.value {
            Number::Int(i) => i.as_i64(),
            _ => None,
        },
        Expr::UnaryOp(u) if u.op == UnaryOp::USub => int_value(&u.operand).map(|n| -n),
        _ => None,
    }
}

pub fn str_value(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::StringLiteral(s) => Some(s.value.to_str()),
        _ => None,
    }
}

/// `a.b.c` for names and attribute chains, without resolving imports.
pub fn dotted(expr: &Expr) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    let mut cur = expr;
    loop {
        match cur {
            Expr::Attribute(a) => {
                parts.push(a.attr.as_str());
                cur = &a.value;
            }
            Expr::Name(n) => {
                parts.push(n.id.as_str());
                parts.reverse();
                return Some(parts.join("."));
            }
            _ => return None,
        }
    }
}

/// A short, readable rendering of a callee: `fabric.launch`, `L.Fabric(...).launch`.
pub fn text(expr: &Expr) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = expr;
    for _ in 0..16 {
        match cur {
            Expr::Attribute(a) => {
                parts.push(a.attr.as_str().to_string());
                cur = &a.value;
            }
            Expr::Call(c) => {
                parts.push("(...)".to_string());
                cur = &c.func;
            }
            Expr::Name(n) => {
                parts.push(n.id.as_str().to_string());
                break;
            }
            _ => {
                parts.push("…".to_string());
                break;
            }
        }
    }
    parts.reverse();
    let mut s = String::new();
    for p in parts {
        if !s.is_empty() && p != "(...)" {
            s.push('.');
        }
        s.push_str(&p);
    }
    s
}

struct ImportCollector<'m> {
    aliases: &'m mut HashMap<String, String>,
    star: &'m mut Vec<String>,
}

impl<'a> Walk<'a> for ImportCollector<'_> {
    fn stmt(w: &mut Guarded<Self>, stmt: &'a Stmt) {
        match stmt {
            Stmt::Import(i) => {
                for alias in &i.names {
                    let name = alias.name.as_str();
                    match &alias.asname {
                        Some(local) => w
                            .aliases
                            .insert(local.as_str().to_string(), name.to_string()),
                        None => {
                            let first = name.split('.').next().unwrap_or(name);
                            w.aliases.insert(first.to_string(), first.to_string())
                        }
                    };
                }
            }
            Stmt::ImportFrom(f) if f.level == 0 => {
                let Some(module) = &f.module else { return };
                for alias in &f.names {
                    let name = alias.name.as_str();
                    if name == "*" {
                        w.star.push(module.to_string());
                        continue;
                    }
                    let local = alias.asname.as_ref().map_or(name, |a| a.as_str());
                    w.aliases
                        .insert(local.to_string(), format!("{}.{name}", module.as_str()));
                }
            }
            _ => visitor::walk_stmt(w, stmt),
        }
    }

    fn expr(_w: &mut Guarded<Self>, _expr: &'a Expr) {}
}

struct AssignCollector<'m, 'a> {
    sym: &'m mut Symbols<'a>,
    /// Inside a function or class body (0: the module's own statements).
    scope: usize,
}

impl AssignCollector<'_, '_> {
    /// What a module-level `name = VALUE` makes `name` call, when VALUE names a library
    /// callable: `f = dist.init_process_group`, `start = functools.partial(mp.spawn, work)`,
    /// `start = lambda: dist.init_process_group("gloo")`.
    fn callable_alias(&self, value: &Expr) -> Option<String> {
        match value {
            Expr::Name(_) | Expr::Attribute(_) => self.sym.qualname(value),
            Expr::Call(c) if self.sym.qualname(&c.func).as_deref() == Some("functools.partial") => {
                c.arguments
                    .args
                    .first()
                    .and_then(|f| self.callable_alias(f))
            }
            Expr::Lambda(l) => match &*l.body {
                Expr::Call(c) => self.sym.qualname(&c.func),
                _ => None,
            },
            _ => None,
        }
    }

    fn record(&mut self, target: &Expr, value: &Expr) {
        if self.scope == 0
            && let Expr::Name(t) = target
            && !self.sym.aliases.contains_key(t.id.as_str())
            && let Some(q) = self.callable_alias(value)
        {
            self.sym.aliases.insert(t.id.to_string(), q);
            return;
        }
        let (Expr::Call(call), Some(name)) = (value, dotted(target)) else {
            return;
        };
        if let Expr::Name(n) = &*call.func
            && !self.sym.aliases.contains_key(n.id.as_str())
            && let Some((class, _)) = self.sym.classes.get_key_value(n.id.as_str())
        {
            self.sym.instances.insert(name, class);
            return;
        }
        let Some(q) = self.sym.qualname(&call.func) else {
            return;
        };
        if is_fabric_class(&q) {
            self.sym.fabric_vars.insert(name);
        } else if is_trainer_class(&q) {
            let multi = self.sym.trainer_multi(call);
            let entry = self.sym.trainer_vars.entry(name).or_insert(false);
            *entry |= multi;
        }
    }
}

impl<'a> Walk<'a> for AssignCollector<'_, 'a> {
    fn stmt(w: &mut Guarded<Self>, stmt: &'a Stmt) {
        match stmt {
            Stmt::Assign(a) => {
                for t in &a.targets {
                    w.record(t, &a.value);
                }
            }
            Stmt::AnnAssign(a) => {
                if let Some(v) = &a.value {
                    w.record(&a.target, v);
                }
            }
            _ => {}
        }
        let nested = matches!(stmt, Stmt::FunctionDef(_) | Stmt::ClassDef(_));
        w.scope += usize::from(nested);
        visitor::walk_stmt(w, stmt);
        w.scope -= usize::from(nested);
    }

    fn expr(w: &mut Guarded<Self>, expr: &'a Expr) {
        if let Expr::Named(n) = expr {
            w.record(&n.target, &n.value);
        }
        visitor::walk_expr(w, expr);
    }
}

/// Functions and classes a module defines when it is imported (not those under the main guard):
/// the statements of its blocks at any depth, not function or class bodies, nor expressions.
#[derive(Default)]
struct DefCollector<'a> {
    functions: HashMap<&'a str, Vec<&'a ast::StmtFunctionDef>>,
    classes: HashMap<&'a str, &'a ast::StmtClassDef>,
}

impl<'a> Walk<'a> for DefCollector<'a> {
    fn stmt(w: &mut Guarded<Self>, stmt: &'a Stmt) {
        match stmt {
            Stmt::FunctionDef(f) => w.functions.entry(f.name.as_str()).or_default().push(f),
            Stmt::ClassDef(c) => {
                w.classes.insert(c.name.as_str(), c);
            }
            Stmt::If(i) => {
                let guard = main_guard(&i.test);
                if guard != Some(Guard::IsMain) {
                    w.visit_body(&i.body);
                }
                if guard != Some(Guard::NotMain) {
                    for clause in &i.elif_else_clauses {
                        w.visit_body(&clause.body);
                    }
                }
            }
            _ => visitor::walk_stmt(w, stmt),
        }
    }

    fn expr(_w: &mut Guarded<Self>, _expr: &'a Expr) {}
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guard {
    /// `if __name__ == "__main__":` — the body runs only as a script.
    IsMain,
    /// `if __name__ != "__main__":` — the body runs on import.
    NotMain,
}

/// Recognise the main guard in both orders (`__name__ == "__main__"`, `"__main__" == __name__`).
pub fn main_guard(test: &Expr) -> Option<Guard> {
    // `if __name__ == "__main__" and ...:` runs its body only as a script too.
    if let Expr::BoolOp(b) = test
        && b.op == ast::BoolOp::And
    {
        return b
            .values
            .iter()
            .any(|v| main_guard(v) == Some(Guard::IsMain))
            .then_some(Guard::IsMain);
    }
    let Expr::Compare(c) = test else { return None };
    if c.ops.len() != 1 || c.comparators.len() != 1 {
        return None;
    }
    let (l, r) = (&*c.left, &c.comparators[0]);
    let is_name = |e: &Expr| matches!(e, Expr::Name(n) if n.id.as_str() == "__name__");
    let is_main = |e: &Expr| str_value(e) == Some("__main__");
    if !((is_name(l) && is_main(r)) || (is_main(l) && is_name(r))) {
        return None;
    }
    match c.ops[0] {
        ast::CmpOp::Eq => Some(Guard::IsMain),
        ast::CmpOp::NotEq => Some(Guard::NotMain),
        _ => None,
    }
}

/// Every name bound anywhere in `body`: imports, defs, classes, parameters, stores.
pub fn bound_anywhere(body: &[Stmt]) -> HashSet<String> {
    names_anywhere(body, false)
}

/// Every name bound anywhere in `body`, and with `loads` every name read as well.
pub fn names_anywhere(body: &[Stmt], loads: bool) -> HashSet<String> {
    struct Names {
        names: HashSet<String>,
        loads: bool,
    }
    impl<'a> Walk<'a> for Names {
        fn stmt(w: &mut Guarded<Self>, stmt: &'a Stmt) {
            match stmt {
                Stmt::FunctionDef(f) => {
                    w.names.insert(f.name.to_string());
                }
                Stmt::ClassDef(c) => {
                    w.names.insert(c.name.to_string());
                }
                _ => {}
            }
            visitor::walk_stmt(w, stmt);
        }
        fn expr(w: &mut Guarded<Self>, expr: &'a Expr) {
            if let Expr::Name(n) = expr
                && (w.loads || n.ctx != ExprContext::Load)
            {
                w.names.insert(n.id.to_string());
            }
            visitor::walk_expr(w, expr);
        }
        fn alias(w: &mut Guarded<Self>, alias: &'a ast::Alias) {
            let name = alias.asname.as_ref().unwrap_or(&alias.name).as_str();
            if name != "*" {
                w.names
                    .insert(name.split('.').next().unwrap_or(name).to_string());
            }
        }
        fn parameter(w: &mut Guarded<Self>, p: &'a ast::Parameter) {
            w.names.insert(p.name.to_string());
            visitor::walk_parameter(w, p);
        }
    }
    let names = Names {
        names: HashSet::new(),
        loads,
    };
    over_body(names, body).names
}
