use super::{Fix, fix_source};

fn fixed(src: &str) -> String {
    match fix_source(src) {
        Fix::Fixed(s) => s,
        other => panic!("expected a fix, got {other:?}"),
    }
}

fn refused(src: &str) -> String {
    match fix_source(src) {
        Fix::Refused(why) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

const BASIC: &str = "\
import lightning as L

fabric = L.Fabric(devices=2)
# start the workers
fabric.launch()
steps = 10


def train():
    return fabric, steps


if __name__ == \"__main__\":
    train()
";

#[test]
fn moves_the_launch_and_folds_the_guard() {
    assert_eq!(
        fixed(BASIC),
        "\
import lightning as L

fabric = L.Fabric(devices=2)
steps = 10


def train():
    return fabric, steps


def main():
    # start the workers
    fabric.launch()
    train()


if __name__ == \"__main__\":
    main()
"
    );
    assert_eq!(fix_source(&fixed(BASIC)), Fix::Unchanged);
}

#[test]
fn keeps_crlf_tabs_and_strings() {
    let src = "import torch.distributed as dist\r\nif True:\r\n\tx = 1\r\ndist.init_process_group('gloo')\r\ndoc = '''a\r\nb'''\r\n";
    let out = fixed(src);
    assert_eq!(
        out,
        "import torch.distributed as dist\r\nif True:\r\n\tx = 1\r\n\r\n\r\ndef main():\r\n\tglobal doc\r\n\tdist.init_process_group('gloo')\r\n\tdoc = '''a\r\nb'''\r\n\r\n\r\nif __name__ == \"__main__\":\r\n\tmain()\r\n"
    );
}

#[test]
fn a_used_main_gets_another_name_and_a_bare_call_is_guarded() {
    let src = "import torch.distributed as dist\n\n\ndef main():\n    dist.init_process_group('gloo')\n\n\nmain()\n";
    assert_eq!(
        fixed(src),
        "import torch.distributed as dist\n\n\ndef main():\n    dist.init_process_group('gloo')\n\n\nif __name__ == \"__main__\":\n    main()\n"
    );
    let src =
        "import torch.distributed as dist\nmain = 1\ndist.init_process_group('gloo')\nx = 1\n";
    assert!(fixed(src).contains("def _doctor_main():"));
}

#[test]
fn definitions_that_need_moved_names_move_too() {
    // `SIZE` depends on the launch (it asks the process group), so `f`, whose default reads it,
    // moves with it; `Model` does not need it and stays importable.
    let src = "import torch.distributed as dist\ndist.init_process_group('gloo')\nSIZE = dist.get_world_size()\n\n\ndef f(n=SIZE):\n    return n\n\n\nclass Model:\n    pass\n";
    let out = fixed(src);
    assert!(
        out.contains("class Model:\n    pass\n\n\ndef main():\n    global SIZE, f\n"),
        "{out}"
    );
    assert!(
        out.contains("    def f(n=SIZE):\n        return n\n"),
        "{out}"
    );
}

/// Issue 19, item 1: what a worker function reads stays defined at import; the pool that
/// starts the workers moves.
#[test]
fn names_functions_read_stay_at_module_level() {
    let src = "import torch.distributed as dist\nimport multiprocessing as mp\ndist.init_process_group(\"gloo\")\nweights = {\"w\": 3}\nmodel = [1, 2]\ndef work(i):\n    return weights[\"w\"] * i + len(model)\nwith mp.get_context(\"spawn\").Pool(2) as p:\n    print(p.map(work, range(4)))\n";
    assert_eq!(
        fixed(src),
        "import torch.distributed as dist\nimport multiprocessing as mp\nweights = {\"w\": 3}\nmodel = [1, 2]\ndef work(i):\n    return weights[\"w\"] * i + len(model)\n\n\ndef main():\n    global p\n    dist.init_process_group(\"gloo\")\n    with mp.get_context(\"spawn\").Pool(2) as p:\n        print(p.map(work, range(4)))\n\n\nif __name__ == \"__main__\":\n    main()\n"
    );
    // A name that needs the process group moves with the launch (children never had it).
    let src = "import torch.distributed as dist\ndist.init_process_group('gloo')\nrank = dist.get_rank()\nscale = rank + 1\ndef work(i):\n    return scale * i\nwork(2)\n";
    let out = fixed(src);
    assert!(out.contains("    global rank, scale\n"), "{out}");
    // Through a same-file helper that asks the process group.
    let src = "import torch.distributed as dist\ndef world():\n    return dist.get_world_size()\ndist.init_process_group('gloo')\nn = world()\ndef work(i):\n    return n * i\nwork(2)\n";
    assert!(fixed(src).contains("    global n\n"));
}

#[test]
fn a_name_a_function_needs_that_must_move_is_refused_with_its_line() {
    // `cfg` is read by `work`, but the second binding must stay after the `print` that reads the
    // first one: it cannot be hoisted, and it does not depend on the launch.
    let src = "import torch.distributed as dist\ndist.init_process_group('gloo')\ncfg = 1\nprint(cfg)\ncfg = 2\ndef work():\n    return cfg\n";
    let why = refused(src);
    assert!(why.contains("`cfg` (line 5)"), "{why}");
    assert!(why.contains("function `work`"), "{why}");
}

#[test]
fn form_feeds_in_the_indentation_are_kept_legal() {
    let src = "import torch.distributed as dist\ndist.init_process_group('gloo')\n\x0c\nif True:\n\x0c    x = 1\n    \x0cprint(x)\n";
    let out = fixed(src);
    assert!(out.contains("    if True:\n        x = 1\n"), "{out:?}");
    assert!(ruff_python_parser::parse_module(&out).is_ok(), "{out:?}");
}

#[test]
fn noqa_launches_never_move() {
    // A suppressed launch before an unsuppressed one stays where it is.
    let src = "import torch.distributed as dist\ndist.init_process_group('gloo')  # noqa: S001\nstore = dist.TCPStore('127.0.0.1', 29500, 2, True)\n";
    let out = fixed(src);
    assert!(
        out.starts_with(
            "import torch.distributed as dist\ndist.init_process_group('gloo')  # noqa: S001\n"
        ),
        "{out}"
    );
    // After one, it would have to run before the moved launch: refused.
    let src = "import torch.distributed as dist\nstore = dist.TCPStore('127.0.0.1', 29500, 2, True)\ndist.init_process_group('gloo')  # noqa\n";
    assert!(refused(src).contains("`# noqa`"));
    // Only suppressed launches: nothing to fix.
    assert_eq!(
        fix_source("import torch.distributed as dist\ndist.init_process_group('gloo')  # noqa\n"),
        Fix::Unchanged
    );
}

#[test]
fn dir_without_arguments_is_refused_like_locals() {
    let launch = "import torch.distributed as dist\ndist.init_process_group('gloo')\n";
    assert!(refused(&format!("{launch}print(dir())\n")).contains("dir()"));
    assert!(!matches!(
        fix_source(&format!("{launch}print(dir(dist))\n")),
        Fix::Refused(_)
    ));
}

#[test]
fn refuses_what_it_cannot_show_safe() {
    let launch = "import torch.distributed as dist\n";
    assert!(
        refused(&format!(
            "{launch}class C:\n    dist.init_process_group('gloo')\n"
        ))
        .contains("class `C`")
    );
    assert!(
        refused(&format!("{launch}if __name__ == '__main__':\n    pass\nelse:\n    dist.init_process_group('gloo')\n"))
            .contains("else")
    );
    assert!(
        refused(&format!(
            "{launch}dist.init_process_group('gloo')\nexec('x = 1')\n"
        ))
        .contains("exec")
    );
    assert!(
        refused(&format!(
            "{launch}dist.init_process_group('gloo')\nfrom os import *\n"
        ))
        .contains("import *")
    );
    assert!(
        refused(&format!("{launch}dist.init_process_group('gloo'); x = 1\n"))
            .contains("several statements")
    );
    assert!(
        refused(&format!(
            "{launch}dist.init_process_group('gloo')\nn: int = 1\n"
        ))
        .contains("annotated")
    );
    // A block defining a class or function has to move when it depends on the launch.
    assert!(
        refused(&format!(
            "{launch}dist.init_process_group('gloo')\nif dist.get_rank() == 0:\n    class K:\n        pass\n"
        ))
        .contains("`K`")
    );
    assert!(
        refused(&format!(
            "{launch}dist.init_process_group('gloo')\nrank = dist.get_rank()\nif rank > 0:\n    def f():\n        return 1\n"
        ))
        .contains("`f`")
    );
}

/// A block after the launch that defines a function or class and does not depend on the launch
/// stays at module level like a `def` (sp-alst.py of accelerate's examples: `collate_fn`
/// defined in `if 1:` and given to a DataLoader), with what it reads.
#[test]
fn a_block_defining_functions_stays_like_a_def() {
    let src = "import torch.distributed as dist\n\ndist.init_process_group('gloo')\nscale = 2\nif scale > 1:\n    def collate(b):\n        return b * scale\nelse:\n    def collate(b):\n        return b\nloader = make(collate)\n";
    let out = fixed(src);
    let main_at = out.find("def main():").unwrap();
    assert!(out.find("if scale > 1:").unwrap() < main_at, "{out}");
    assert!(out.find("scale = 2").unwrap() < main_at, "{out}");
    assert!(
        out.find("    dist.init_process_group").unwrap() > main_at,
        "{out}"
    );
    assert!(
        out.find("    loader = make(collate)").unwrap() > main_at,
        "{out}"
    );
}

#[test]
fn nothing_to_fix() {
    assert_eq!(fix_source("x = 1\n"), Fix::Unchanged);
    assert_eq!(fix_source("def (:\n"), Fix::Unchanged);
}

/// A definition that would have to move (it rebinds a name a moved statement reads before it)
/// is refused: a spawn child looks functions up by name and would get the earlier one.
#[test]
fn a_definition_that_rebinds_a_name_read_earlier_is_refused() {
    let src = "import torch.distributed as dist\n\n\ndef helper():\n    return 1\n\n\ndist.init_process_group('gloo')\nx = helper()\n\n\ndef helper():\n    return 2\n";
    let why = refused(src);
    assert!(
        why.starts_with("function `helper` (line 12)") && why.contains("line 9"),
        "{why}"
    );
}

/// A definition that reads, when it runs (a default argument, a decorator), a name bound by a
/// statement that moves although it does not depend on the launch is refused, with its name and
/// line: inside `main()` spawn children could not look it up.
#[test]
fn a_definition_that_must_move_without_the_launch_is_refused() {
    let src = "import torch.distributed as dist\ny = 1\ndist.init_process_group('gloo')\nprint(y)\ny = 2\n\n\ndef f(a=y):\n    return a\n";
    let why = refused(src);
    assert!(why.starts_with("function `f` (line 8)"), "{why}");
    let lam = "import torch.distributed as dist\ny = 1\ndist.init_process_group('gloo')\nprint(y)\ny = 2\ng = lambda a=y: a\n";
    assert!(refused(lam).starts_with("function `g` (line 6)"));
}

/// The global random state is ordered like a name: a seed that does not depend on the launch
/// stays before the model it seeds; one from the rank makes the model depend on the launch.
#[test]
fn a_seed_keeps_its_place_before_what_it_seeds() {
    let kept = fixed(
        "import torch\nimport torch.distributed as dist\ndist.init_process_group('gloo')\ntorch.manual_seed(0)\nmodel = torch.nn.Linear(2, 2)\n\n\ndef work(x):\n    return model(x)\n",
    );
    assert!(
        kept.find("torch.manual_seed(0)\nmodel = ")
            .is_some_and(|i| i < kept.find("def main").unwrap()),
        "{kept}"
    );
    let moved = fixed(
        "import torch\nimport torch.distributed as dist\ndist.init_process_group('gloo')\ntorch.manual_seed(dist.get_rank())\nmodel = torch.nn.Linear(2, 2)\n\n\ndef work(x):\n    return model(x)\n",
    );
    assert!(moved.contains("    global model\n"), "{moved}");
    assert!(
        moved.contains("    model = torch.nn.Linear(2, 2)\n"),
        "{moved}"
    );
}

/// `sys.path`/`sys.modules` changed after the launch stay before the import that needs them;
/// an environment change moves and what reads it at import moves after it, or is refused.
#[test]
fn process_state_is_ordered_like_a_name() {
    let out = fixed(
        "import sys, types\nimport torch.distributed as dist\ndist.init_process_group('gloo')\nsys.modules['plug'] = types.ModuleType('plug')\nimport plug\n\n\ndef work():\n    return plug\n",
    );
    let main = out.find("def main").unwrap();
    assert!(out.find("sys.modules['plug']").unwrap() < main, "{out}");
    assert!(out.find("import plug").unwrap() < main, "{out}");
    let why = refused(
        "import os\nimport torch.distributed as dist\ndist.init_process_group('gloo')\nos.environ['N'] = '3'\nN = int(os.environ['N'])\n\n\ndef work():\n    return N\n",
    );
    assert!(
        why.contains("`N` (line 5)") && why.contains("line 4"),
        "{why}"
    );
}
