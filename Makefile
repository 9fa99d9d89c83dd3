.DEFAULT_GOAL := help

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-10s %s\n", $$1, $$2}'

dev: ## install steplog editable with the test extras
	pip install -e '.[test]'

test: ## Rust core tests, then the Python suite (benchmarks run once, untimed)
	cargo test -p steplog-core --locked
	python -m pytest --benchmark-disable

lint: ## rustfmt, clippy -D warnings, ruff
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	ruff check python tests benches
	ruff format --check python tests benches

bench: ## pytest-benchmark medians, then the criterion benches of the core
	python -m pytest benches --benchmark-only --benchmark-columns=median,iqr,rounds --benchmark-sort=name
	cargo bench -p steplog-core --locked

peers: ## steplog next to wandb, TensorBoard, MLflow, rerun, trackio (pip install '.[peers]')
	python benches/peers.py

clean: ## remove build outputs and local runs
	cargo clean
	rm -rf steplog-runs .pytest_cache .benchmarks
