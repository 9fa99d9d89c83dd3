#!/usr/bin/env bash
# Builds the libFuzzer targets on the stable toolchain: the sanitizer-coverage flags cargo-fuzz
# passes on nightly, minus the nightly-only sanitizers. `--target` keeps RUSTFLAGS off the build
# scripts and proc-macros. Prints the folder of the fuzzer binaries.
set -euo pipefail
cd "$(dirname "$0")"
target="$(rustc -vV | sed -n 's/^host: //p')"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_FUZZ:-$PWD/target}"
export RUSTFLAGS="-Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 --cfg fuzzing -Cdebug-assertions -Coverflow-checks -Cforce-frame-pointers"
cargo build --release --locked --target "$target" --bins >&2
echo "$CARGO_TARGET_DIR/$target/release"
