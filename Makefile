# make test: everything CI runs. It installs what a fresh Debian machine
# lacks (as root, through apt-get), so it works on a new machine as it is.
GO ?= go
BIN := $(CURDIR)/bin

.PHONY: test deps fmt-check vet go-test php-test php-autoload build fuzz fuzz-smoke

test: deps fmt-check vet go-test php-test

# Install the Debian packages whose commands are missing.
deps:
	@command -v $(GO) >/dev/null || { echo "make test: Go is required (https://go.dev/dl/)"; exit 1; }
	@missing=""; \
	command -v php >/dev/null || missing="$$missing php-cli"; \
	command -v phpunit >/dev/null || missing="$$missing phpunit"; \
	command -v composer >/dev/null || missing="$$missing composer"; \
	command -v phpcs >/dev/null || missing="$$missing php-codesniffer"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v redis-cli >/dev/null || missing="$$missing redis-tools"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
			echo "make test: missing$$missing; install them (Debian: apt-get install$$missing)"; exit 1; \
		fi; \
		echo "make test: installing$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || exit 1; \
	fi
	$(GO) mod download

fmt-check:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# The browser test in tests/ runs examples/chat, which loads php-client's autoloader.
# The bridge package's tests run again in the poll read mode (WSBRIDGE_READ_MODE=poll).
go-test: php-autoload
	$(GO) test -race -count=1 -timeout 20m ./...
	WSBRIDGE_TEST_READ_MODE=poll $(GO) test -race -count=1 -timeout 10m ./bridge/

build:
	$(GO) build -o $(BIN)/wsbridge ./cmd/wsbridge
	$(GO) build -o $(BIN)/wsclient ./tests/wsclient

# The PHP client's suite, against the binary built here, after its coding
# standard: PSR-12 (errors; -n leaves out the warnings of the soft 120-column
# line limit, which PSR-12 says must not be a hard one).
php-test: build php-autoload
	@for f in $$(find php-client/src php-client/tests -name '*.php'); do php -l $$f >/dev/null || { php -l $$f; exit 1; }; done
	phpcs -n --standard=PSR12 php-client/src php-client/tests
	cd php-client && WSBRIDGE_BIN=$(BIN)/wsbridge WSBRIDGE_WSCLIENT=$(BIN)/wsclient phpunit

# php-client's composer autoloader (vendor/autoload.php), for its suite and
# for examples/chat.
php-autoload:
	@if command -v composer >/dev/null; then cd php-client && composer dump-autoload --dev --quiet; \
	else echo "make: composer is missing (make deps installs it): php-client/vendor/autoload.php not written"; fi

# Every fuzz target of the module for FUZZTIME each (default 10m; not part
# of test: fuzzing is open-ended). A finding stays in testdata/fuzz as a seed.
fuzz:
	FUZZTIME=$(or $(FUZZTIME),10m) GO=$(GO) bench/fuzz.sh

# The same, 10 s a target: a quick check that every target runs.
fuzz-smoke:
	FUZZTIME=10s GO=$(GO) bench/fuzz.sh
