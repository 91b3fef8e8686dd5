# make test: everything CI runs. It installs what a fresh Debian machine lacks.
GO ?= go

.PHONY: test deps fmt-check vet go-test fuzz-smoke build

test: deps fmt-check vet go-test

deps:
	@command -v $(GO) >/dev/null || { echo "make test: Go is required (https://go.dev/dl/)"; exit 1; }
	$(GO) mod download

fmt-check:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

go-test:
	$(GO) test -race -count=1 -timeout 20m ./...

build:
	$(GO) build -o bin/wsbridge ./cmd/wsbridge
