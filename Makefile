.DEFAULT_GOAL := help
.PHONY: help dev test lint bench fuzz peers clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-10s %s\n", $$1, $$2}'

dev: ## install steplog editable with the test extras
	pip install -e '.[test]'

test: ## Rust core tests, then the Python suite (benchmarks run once, untimed)
	cargo test -p steplog-core --locked
	python -m pytest --benchmark-disable

lint: ## rustfmt, clippy -D warnings, ruff, stubtest of the extension's stubs
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	cargo fmt --manifest-path fuzz/Cargo.toml --check
	cargo clippy --manifest-path fuzz/Cargo.toml --target-dir target --all-targets --no-default-features --locked -- -D warnings
	ruff check python tests benches fuzz
	ruff format --check python tests benches fuzz
	python -m mypy.stubtest steplog._core

bench: ## pytest-benchmark medians, then the criterion benches of the core
	python -m pytest benches --benchmark-only --benchmark-columns=median,iqr,rounds --benchmark-sort=name
	cargo bench -p steplog-core --locked

fuzz: ## coverage-guided libFuzzer run of the shard reader (FUZZ_SECONDS=300 per target; docs/FUZZING.md)
	fuzz/run.sh

peers: ## steplog next to wandb, TensorBoard, MLflow, rerun, trackio (pip install '.[peers]')
	python benches/peers.py

clean: ## remove build outputs and local runs
	cargo clean
	rm -rf fuzz/target
	rm -rf steplog-runs .pytest_cache .benchmarks
