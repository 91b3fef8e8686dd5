#!/usr/bin/env bash
# make fuzz: runs every fuzz target of the module (found with go test -list,
# so a new target needs no entry here) for FUZZTIME each, one after the
# other, and prints a summary line per target: its package, name, time,
# executions, the size of its corpus and whether it found a failure.
# A failure leaves its input in the package's testdata/fuzz/<Target>/, where
# it stays as a seed: commit it with the fix.
set -uo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-10m}
GO=${GO:-go}
summary=$(mktemp)
status=0
for pkg in $($GO list ./...); do
	for target in $($GO test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz'); do
		log=$(mktemp)
		echo "== $pkg $target ($FUZZTIME)"
		if $GO test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg" >"$log" 2>&1; then
			result=ok
		else
			result=FAILED
			status=1
			tail -n 30 "$log"
		fi
		# The last progress line: "fuzz: elapsed: 10m0s, execs: 1234 (2/sec), new interesting: 5 (total: 9)"
		last=$(grep -E '^fuzz: elapsed' "$log" | tail -n 1)
		execs=$(sed -nE 's/.*execs: ([0-9]+).*/\1/p' <<<"$last")
		corpus=$(sed -nE 's/.*\(total: ([0-9]+)\).*/\1/p' <<<"$last")
		printf '%-48s %-22s %8s execs=%-12s corpus=%-6s %s\n' "${pkg#github.com/wsbridge/wsbridge/}" "$target" "$FUZZTIME" "${execs:-?}" "${corpus:-?}" "$result" | tee -a "$summary"
		rm -f "$log"
	done
done
echo
echo "summary:"
cat "$summary"
rm -f "$summary"
exit $status
