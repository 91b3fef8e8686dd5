<?php

declare(strict_types=1);

// One PHP client of bench/rpcload: pushes for a while, sequentially, and
// prints {"calls": n, "messages": m, "latencies_us": [...]}. With BATCH > 1
// each call is SERVICE.PushBatch of BATCH messages to consecutive fds: from
// FIRST_FD on, in turn over 1 .. FD_COUNT. With FDS (a comma-separated
// list of FD_COUNT fds), over those instead, from the FIRST_FD-th (1-based).
// php push.php ADDRESS SERVICE SECONDS FIRST_FD FD_COUNT DATA [BATCH [FDS]]

require __DIR__ . '/../../php-client/vendor/autoload.php';

use WsBridge\Goridge\RPC;

[, $addr, $service, $seconds, $first, $count, $data] = $argv;
$batch = (int) ($argv[7] ?? 1);
$list = isset($argv[8]) ? array_map('intval', explode(',', $argv[8])) : null;
$rpc = RPC::create($addr);
$method = $service . ($batch > 1 ? '.PushBatch' : '.Push');
$fd = (int) $first;
$count = (int) $count;
$lat = [];
$end = microtime(true) + (float) $seconds;
while (($t = hrtime(true)) && microtime(true) < $end) {
    if ($batch > 1) {
        $messages = [];
        for ($i = 0; $i < $batch; $i++) {
            $messages[] = ['fd' => $list === null ? $fd : $list[$fd - 1], 'data' => $data];
            $fd = $fd % $count + 1;
        }
        $ok = $rpc->call($method, ['messages' => $messages]);
        if (!\is_array($ok) || \in_array(false, $ok, true) || \count($ok) !== $batch) {
            fwrite(STDERR, "batch push not delivered\n");
            exit(1);
        }
    } else {
        $to = $list === null ? $fd : $list[$fd - 1];
        if ($rpc->call($method, ['fd' => $to, 'data' => $data]) !== true) {
            fwrite(STDERR, "push to fd {$to} not delivered\n");
            exit(1);
        }
        $fd = $fd % $count + 1;
    }
    $lat[] = (hrtime(true) - $t) / 1000;
}
echo json_encode(['calls' => count($lat), 'messages' => count($lat) * $batch, 'latencies_us' => $lat]);
