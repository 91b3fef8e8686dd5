#!/bin/sh
# Installs Centrifugo v6.9.1 for bench/load into a temporary folder (never
# into the repository) and prints the binary's path:
#
#   CENTRIFUGO=$(bench/centrifugo.sh) go run ./bench/load -targets wsbridge,centrifugo,gorilla
#
# DIR sets the folder (default: a new one under $TMPDIR); a binary already
# there is reused. Built with `go install` from the Go module proxy: the
# binary reports version 0.0.0 ("development build"), the code is v6.9.1's.
set -eu
VERSION=${VERSION:-v6.9.1}
DIR=${DIR:-$(mktemp -d "${TMPDIR:-/tmp}/centrifugo.XXXXXX")}
if [ ! -x "$DIR/centrifugo" ]; then
	# Outside this module, so that its go.mod and go.sum stay as they are.
	(cd "$DIR" && GOBIN="$DIR" GOFLAGS=-mod=mod go install "github.com/centrifugal/centrifugo/v6@$VERSION") >&2
fi
echo "$DIR/centrifugo"
