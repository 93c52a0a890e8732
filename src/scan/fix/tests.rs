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


def train():
    return fabric, steps


def main():
    global steps
    # start the workers
    fabric.launch()
    steps = 10
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
    let src = "import torch.distributed as dist\ndist.init_process_group('gloo')\nSIZE = 3\n\n\ndef f(n=SIZE):\n    return n\n\n\nclass Model:\n    pass\n";
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
    assert!(
        refused(&format!(
            "{launch}dist.init_process_group('gloo')\nif True:\n    class K:\n        pass\n"
        ))
        .contains("`K`")
    );
}

#[test]
fn nothing_to_fix() {
    assert_eq!(fix_source("x = 1\n"), Fix::Unchanged);
    assert_eq!(fix_source("def (:\n"), Fix::Unchanged);
}

#[test]
fn a_definition_that_rebinds_a_name_read_earlier_moves() {
    let src = "import torch.distributed as dist\n\n\ndef helper():\n    return 1\n\n\ndist.init_process_group('gloo')\nx = helper()\n\n\ndef helper():\n    return 2\n";
    let out = fixed(src);
    assert!(out.contains("    global x, helper\n"), "{out}");
    assert!(
        out.find("x = helper()").unwrap() < out.rfind("def helper").unwrap(),
        "{out}"
    );
}
