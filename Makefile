.PHONY: demo test lint bench fuzz leakcheck
demo:   ## run the demo network over loopback (Ctrl-C stops it)
	scripts/demo.sh
test:   ## install everything and run the test suite (isolated from the real network)
	scripts/test.sh
lint:
	scripts/venv.sh "dev,bench,pi,fast,secure,postgres,dashboard,mqtt" && .venv/bin/ruff check . && .venv/bin/mypy
bench:
	scripts/venv.sh "dev,bench,fast,postgres,dashboard" && .venv/bin/python bench/run_all.py
fuzz:   ## fuzz a real node's receive paths for longer (GANGLION_FUZZ_SECONDS, _SEED)
	scripts/fuzz.sh
leakcheck:   ## millions of messages through each compiled path, memory flat (about a minute)
	scripts/leakcheck.sh
