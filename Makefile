# auditrail: `make demo` runs the main job on the embedded default, `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo demo-collector demo-django test lint bench bench-all clean

# With cargo on the PATH the native core (native/, Rust) is built into the venv too (once; then when its
# sources change): the embedded store's ingest then decodes OTLP natively. Without it the engine decodes.
NATIVE := $(VENV)/.native
install: $(STAMP) $(if $(shell command -v cargo 2>/dev/null),$(NATIVE))

$(NATIVE): $(STAMP) native/Cargo.toml native/Cargo.lock native/pyproject.toml $(wildcard native/src/*.rs)
	$(BIN)/python -m pip install --quiet ./native
	touch $(NATIVE)

# Reinstall only when the project's metadata changed; the install is editable, so code edits need nothing.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/python examples/assistant/demo.py

# The same through the collector distribution: alerts land in a local Google Chat webhook receiver.
demo-collector: install collector
	$(BIN)/python examples/assistant/demo.py --collector

# The Django admin example (examples/django_admin: no auditrail import, no `events:`) under
# auditrail-instrument, driven over HTTP; the built-in integrations' events printed as `make demo` does.
demo-django: install
	$(BIN)/python examples/django_admin/demo.py

# With Go on the PATH the collector distribution is built first (once; then only when its inputs change),
# so the collector tests run against the real binary; without Go they skip, saying why.
test: install lint browser $(if $(shell command -v go 2>/dev/null),collector)
	$(BIN)/python -m pytest -q

# The /approvals page is tested in a real browser: Debian's chromium and chromium-driver, installed when missing
# (apt-get, as root or through sudo).
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
.PHONY: browser
browser:
	@command -v chromedriver >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium and chromium-driver (the /approvals page's browser tests)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium chromium-driver >/dev/null; }

lint: install
	$(BIN)/ruff check instrumentation storage tests examples benchmarks

bench: install
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/integrations.py
	$(BIN)/python benchmarks/integrations_flask.py

bench-all: install collector
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/integrations.py
	$(BIN)/python benchmarks/integrations_flask.py
	$(BIN)/python benchmarks/delivery.py
	$(BIN)/python benchmarks/storage.py
	$(BIN)/python benchmarks/grafana.py
	$(BIN)/python benchmarks/collector.py

clean:
	rm -rf $(VENV) .auditrail .pytest_cache bin build

# The collector distribution (collector-config/, issue 5): ocb at the pinned release, installed into .tools/,
# builds bin/otelcol-auditrail. Rebuilt only when the manifest or our own components' sources change.
OCB_VERSION     := 0.161.0
OCB             := .tools/ocb-v$(OCB_VERSION)
COLLECTOR       := bin/otelcol-auditrail
COLLECTOR_BUILD := build/otelcol-auditrail
COLLECTOR_DEPS  := collector-config/builder-config.yaml \
	$(shell find collector-config -mindepth 2 \( -name '*.go' ! -name '*_test.go' -o -name go.mod -o -name go.sum \) 2>/dev/null)

.PHONY: collector
collector: $(COLLECTOR)

$(OCB):
	mkdir -p .tools
	GOBIN=$(CURDIR)/.tools go install go.opentelemetry.io/collector/cmd/builder@v$(OCB_VERSION)
	mv .tools/builder $@

# ocb writes the sources and fetches the modules; the compile is ours (ocb's own flags) so that its progress
# shows: each package is listed as it finishes, [done/total]. Copy, then rename: a running collector keeps
# its old file, and a half-copied binary is never run.
$(COLLECTOR): $(OCB) $(COLLECTOR_DEPS)
	@echo "== building the collector $(COLLECTOR): about 11 minutes with cold Go caches on 2 cores, about a minute after a change to our components"
	mkdir -p build bin
	GOFLAGS="$(GOFLAGS) -buildvcs=false" $(OCB) --config collector-config/builder-config.yaml --skip-compilation
	cd $(COLLECTOR_BUILD) && total=$$(go list -deps . | wc -l) && \
	  { CGO_ENABLED=0 GOFLAGS="$(GOFLAGS) -buildvcs=false" go build -v -trimpath -o otelcol-auditrail \
	      -ldflags="-s -w" . 2>&1; echo $$? > .build-status; } | \
	  awk -v total=$$total '{ printf "  [%d/%d] %s\n", NR, total, $$0; fflush() }' && exit $$(cat .build-status)
	cp $(COLLECTOR_BUILD)/otelcol-auditrail $@.tmp && mv -f $@.tmp $@
	@echo "== built $(COLLECTOR)"

# Check the merged collector config without the real environment: collector-config/validate.env puts
# placeholders in the variables that are required and not set.
.PHONY: collector-validate
collector-validate: $(COLLECTOR)
	set -a && . collector-config/validate.env && set +a && for store in otelcol.yaml otelcol-embedded.yaml; do \
	  $(COLLECTOR) validate --config collector-config/pipelines.yaml --config collector-config/rules.yaml \
	    --config collector-config/$$store && echo "$$store: valid" || exit 1; done
