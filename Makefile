# tenantd — the README's two commands are `make run` and `make test`.
GO        ?= go
BIN       := bin/tenantd
PKGS      := ./...
STATICCHECK_VERSION := v0.8.2

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build bin/tenantd
	$(GO) build -o $(BIN) .

.PHONY: run
run: build ## throw-away PostgreSQL + Redis (unless DATABASE_URL/REDIS_URL are set), demo tenant, serve
	./$(BIN) dev

.PHONY: test
test: ## the whole test suite with the race detector, against real PostgreSQL and Redis
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

.PHONY: test-long
test-long: ## the long tests make test skips: the billing export's memory bound over 100,000 tenants (~80 s)
	TENANTD_LONG_TESTS=1 $(GO) test -race -count=1 -timeout 10m -run '^TestExport100kTenantsBoundedMemory$$' ./billing/

.PHONY: chaos
chaos: ## fault suite: two real replicas under load through SIGKILL, PostgreSQL and Redis outages, SIGTERM, a paused lease holder and held locks (~2 min)
	$(GO) test -tags chaos -count=1 -timeout 12m -v ./internal/chaos/

# make test-citus (issue 14): the tests that prove tenantd on Citus, against
# a throw-away cluster of 1 coordinator and 2 workers on loopback
# (tools/citus/cluster.sh; Citus is built from the vendored source first if
# missing, tools/citus/ensure.sh). Every package gets a database of its own
# on the cluster, migrated and distributed (internal/testenv, Citus mode).
# The selection, per package:
#   internal/db     the RLS catalog, the isolation of every table and the
#                   runtime role's attributes and reach
#   internal/app    the operator tenant lifecycle and bad input (unique
#                   and plan checks as 409/422), the cross-tenant HTTP tests (isolation, credentials,
#                   permission matrix, orders of other tenants), the seed
#                   flow (order -> reservation -> payment -> completed) and
#                   the hot-tenant concurrency test (#7)
#   billing         the billing export and feed export tests
#   gdpr            tenant erasure (every row, rule, key and the tenants row
#                   gone, the receipt and its tombstone, the other tenant
#                   untouched)
#   internal/citus  isolation on the workers, a tenant isolated to its own
#                   shard and moved under load (build tag citus: make test
#                   leaves it out); then its benchmarks, without the race
#                   detector: the tenant binding's cost per transaction and
#                   router reads against plain PostgreSQL, as ratios
CITUS_RUN_DB      := ^(TestRLSCatalog|TestRuntimeRoleReach|TestSecurityDefinersServeTheirScope|TestRuntimeRoleCannotRunWorkerFunctions|TestCasbinRuleDomains|TestRLSIsolation|TestTenantsTableRLS|TestAuthAPIKeyLookup|TestCheckRuntimeRole|TestRuntimeRoleAttributes|TestNoTenant|TestPoolDoesNotLeakTenant|TestFailedTransactionDoesNotLeakTenant)$$
CITUS_RUN_APP     := ^(TestOperatorTenantLifecycle|TestBadInput|TestCrossTenantIsolation|TestCredentials|TestPooledConnectionsNeverCarryATenant|TestPermissionMatrix|TestCrossTenantOrders|TestOrderWorkflow|TestHotTenantWrites)$$
CITUS_RUN_BILLING := ^(TestExportGolden|TestExportLines|TestExportCSVShape|TestExportOpenPeriod|TestExportHTTP|TestExportCLI|TestFeedsGolden|TestFeedsHTTP)$$
CITUS_RUN_GDPR    := ^(TestErase)$$

.PHONY: test-citus
test-citus: ## tenantd on a throw-away Citus cluster (1 coordinator, 2 workers): isolation on the workers, seed flow, hot tenant, billing export, tenant erasure, a tenant moved to its own shard under load (builds Citus if missing; 3½–6 min)
	tools/citus/ensure.sh
	tools/citus/cluster.sh with -- $(MAKE) --no-print-directory citus-tests

# The tests of make test-citus, run inside it (they need TEST_CITUS_URL).
# internal/db, internal/app, billing and gdpr run at the same time (each
# package's output is printed whole when it ends); internal/citus then runs
# alone, so that the pause it measures and its benchmarks are its own.
# Every package runs; the target fails at the end naming those that failed.
CITUS_GO_TEST := $(GO) test -race -count=1 -timeout 10m

.PHONY: citus-tests
citus-tests:
	@test -n "$$TEST_CITUS_URL" || { echo "citus-tests: run make test-citus (it starts the cluster and sets TEST_CITUS_URL)" >&2; exit 1; }
	@logs=$$(mktemp -d); trap 'rm -rf "$$logs"' EXIT; failed=""; \
	bg() { pkg=$$1; shift; log=$$logs/$$(echo "$$pkg" | tr -c 'a-z\n' _); echo "$$* $$pkg"; \
		( "$$@" "$$pkg" >"$$log" 2>&1; echo $$? >"$$log.rc" ) & }; \
	collect() { for pkg in "$$@"; do log=$$logs/$$(echo "$$pkg" | tr -c 'a-z\n' _); \
		echo "== $$pkg"; cat "$$log"; [ "$$(cat "$$log.rc")" = 0 ] || failed="$$failed $$pkg"; done; }; \
	run() { pkg=$$1; shift; echo "$$* $$pkg"; "$$@" "$$pkg" || failed="$$failed $$pkg"; }; \
	bg ./internal/db/    $(CITUS_GO_TEST) -run '$(CITUS_RUN_DB)'; \
	bg ./internal/app/   $(CITUS_GO_TEST) -run '$(CITUS_RUN_APP)'; \
	bg ./billing/        $(CITUS_GO_TEST) -run '$(CITUS_RUN_BILLING)'; \
	bg ./gdpr/           $(CITUS_GO_TEST) -run '$(CITUS_RUN_GDPR)'; \
	wait; collect ./internal/db/ ./internal/app/ ./billing/ ./gdpr/; \
	run ./internal/citus/ $(CITUS_GO_TEST) -tags citus -v; \
	run ./internal/citus/ $(GO) test -count=1 -tags citus -run '^$$' -bench . -benchtime 300x; \
	if [ -n "$$failed" ]; then echo "test-citus: failed:$$failed" >&2; exit 1; fi

# Native Go fuzz targets (their seed corpora in internal/httpx/testdata/fuzz
# also run as plain tests in `make test`).
FUZZTIME     ?= 15s
FUZZ_TARGETS := FuzzDecodeStrict FuzzParsePage FuzzParseID FuzzCheckParams

.PHONY: fuzz
fuzz: ## fuzz the JSON binder and the query, cursor and path parsers, FUZZTIME (15s) each
	@for f in $(FUZZ_TARGETS); do \
		echo "fuzz $$f for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) ./internal/httpx/ || exit 1; \
	done

.PHONY: lint
lint: ## gofmt, go vet, staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(PKGS)

# The Go client in client/ is generated from internal/openapi/openapi.json by
# the pinned oapi-codegen named in client/generate.go (its one source of truth).
.PHONY: client
client: ## regenerate the Go client in client/ from the OpenAPI document
	$(GO) generate ./client/

.PHONY: client-check
client-check: ## fail when client/ is not what the OpenAPI document generates; build it
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	mkdir -p "$$tmp/client" "$$tmp/internal/openapi" && \
	cp go.mod go.sum "$$tmp/" && cp client/generate.go "$$tmp/client/" && \
	cp internal/openapi/openapi.json "$$tmp/internal/openapi/" && \
	(cd "$$tmp" && $(GO) generate ./client/) && \
	if ! diff -u client/client.gen.go "$$tmp/client/client.gen.go" >"$$tmp/diff"; then \
		head -n 40 "$$tmp/diff"; echo "client/ is stale: run make client and commit it"; exit 1; \
	fi
	$(GO) build ./client/...

# Spectral, pinned in tools/spectral/package-lock.json, installed there by
# npm ci (needs node and npm; .ci/run installs them).
SPECTRAL_DIR := tools/spectral
SPECTRAL     := $(SPECTRAL_DIR)/node_modules/.bin/spectral

$(SPECTRAL_DIR)/node_modules/.installed: $(SPECTRAL_DIR)/package.json $(SPECTRAL_DIR)/package-lock.json
	cd $(SPECTRAL_DIR) && npm ci --no-audit --no-fund
	touch $@

.PHONY: spectral
spectral: $(SPECTRAL_DIR)/node_modules/.installed ## lint internal/openapi/openapi.json with Spectral's spectral:oas rules (.spectral.yaml); errors fail
	$(SPECTRAL) lint --ruleset .spectral.yaml --fail-severity error internal/openapi/openapi.json

.PHONY: bench
bench: ## benchmarks (see docs/performance.md)
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./bench/...

.PHONY: bench-orders
bench-orders: ## order placement, hot tenant and write mix against pgbench baselines in the same run, ~4 min (docs/performance.md §4)
	$(GO) run ./bench/orders

.PHONY: migrate
migrate: build ## apply migrations (MIGRATE_DATABASE_URL or DATABASE_URL)
	./$(BIN) migrate up

.PHONY: tidy
tidy: ## go mod tidy
	$(GO) mod tidy
