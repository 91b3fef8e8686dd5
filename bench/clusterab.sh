#!/usr/bin/env bash
# bench/clusterab.sh: compares the remote push of two commits with
# bench/clusterload, alternating their builds so that a change in what else
# runs on the machine weighs on both alike.
#
#   bench/clusterab.sh OLD NEW [PAIRS] [-- clusterload flags]
#   bench/clusterab.sh 88c2f7e HEAD 5
#   bench/clusterab.sh 88c2f7e HEAD 3 -- -processes -rounds 5
#
# Each commit is checked out into a temporary worktree (with -processes,
# clusterload builds the wsbridge binary of the directory it runs in) and
# its clusterload built there. Before each run the script waits until the
# machine's steal time (CPU taken by the host) stays under 10 ticks in 2 s,
# then runs under the benchmark lock (flock -o /tmp/wsbridge-bench.lock).
# It prints each run's 8-caller figures, then per commit the medians:
# local and remote calls/s, the ratio, the CPU µs per remote call, the
# calls per publish (when the commit's clusterload reports them) and the
# steal ticks during the run.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,18p' "$0"; exit 2; }
old=$1 new=$2 pairs=${3:-5}
shift $(( $# >= 3 ? 3 : 2 ))
[ "${1:-}" = "--" ] && shift
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(-rounds 3 -members 0 -fanouts 0)
tmp=$(mktemp -d)
trap 'git worktree remove --force "$tmp/old" 2>/dev/null; git worktree remove --force "$tmp/new" 2>/dev/null; rm -rf "$tmp"' EXIT
for v in old new; do
	git worktree add -q --detach "$tmp/$v" "${!v}"
	(cd "$tmp/$v" && go build -o "$tmp/$v.bin" ./bench/clusterload)
done
steal() { awk 'NR==1 {print $9}' /proc/stat; }
for _ in $(seq "$pairs"); do
	for v in old new; do
		while :; do a=$(steal); sleep 2; [ $(( $(steal) - a )) -lt 10 ] && break; done
		s0=$(steal)
		out=$(cd "$tmp/$v" && flock -o /tmp/wsbridge-bench.lock "$tmp/$v.bin" "${args[@]}" 2>&1) || { echo "$out"; exit 1; }
		s1=$(steal)
		l=$(awk '/push, local fd +8 /{print $5}' <<<"$out")
		r=$(awk '/another node +8 /{print $7, $10, $11, ($14 == "" ? "-" : $14)}' <<<"$out")
		echo "$v ${!v} local=$l remote,ratio,cpu,per-publish=$r steal=$((s1 - s0))" | tee -a "$tmp/runs"
	done
done
echo "medians of $pairs runs each: local calls/s, remote calls/s, of local, CPU µs per remote call, calls per publish, steal ticks"
for v in old new; do
	printf '%s %s:' "$v" "${!v}"
	for col in 1 2 3 4 5 6; do
		grep "^$v " "$tmp/runs" | sed 's/.*local=//; s/ remote,ratio,cpu,per-publish=/ /; s/ steal=/ /' |
			awk -v c=$col '{print $c}' | sort -g | awk '{a[NR]=$1} END {printf " %s", a[int((NR+1)/2)]}'
	done
	echo
done
