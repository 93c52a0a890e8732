//! Validation of doctor's JSON documents against their schemas in docs/schema/ (the other
//! schemas resolvable by `$id`), for tests/schemas.rs and the tests whose documents need torch.

use std::path::Path;

use serde_json::Value;

pub fn schema(name: &str) -> Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("docs/schema/{name}.schema.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub const SCHEMAS: &[&str] = &[
    "envelope",
    "finding",
    "ports-free",
    "explain",
    "explain-list",
    "repro",
    "repro-list",
    "repro-verify",
    "ports",
    "ports-check",
    "ports-failed",
    "tree",
    "snapshot",
    "scan",
    "run",
    "report",
    "merge",
];

/// Errors of `doc` against `docs/schema/NAME.schema.json` (the other schemas resolvable by $id).
pub fn errors(name: &str, doc: &Value) -> Vec<String> {
    let mut registry = jsonschema::Registry::new();
    for s in SCHEMAS {
        let v = schema(s);
        let id = v["$id"].as_str().unwrap().to_string();
        registry = registry.add(id, v).expect("schema registers");
    }
    let registry = registry.prepare().expect("registry prepares");
    let validator = jsonschema::options()
        .with_registry(&registry)
        .build(&schema(name))
        .unwrap_or_else(|e| panic!("{name} schema compiles: {e}"));
    validator
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

pub fn assert_valid(name: &str, doc: &Value) {
    let errs = errors(name, doc);
    assert!(errs.is_empty(), "{name}: {errs:#?}");
}
