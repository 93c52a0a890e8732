# Sourced by the scripts in scripts/bench/ (not run on its own).

# Print the path of a release build of this tree's `doctor`, building it first (quietly). Run from
# the repository root; honours CARGO_TARGET_DIR and a `target-dir` in cargo's configuration.
release_doctor() {
    cargo build --release --quiet --bin doctor >&2
    echo "$(cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/doctor"
}
