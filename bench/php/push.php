<?php

declare(strict_types=1);

// One PHP client of bench/rpcload: pushes for a while, sequentially, and
// prints {"calls": n, "messages": m, "latencies_us": [...]}. With BATCH > 1
// each call is SERVICE.PushBatch of BATCH messages to consecutive fds: from
// FIRST_FD on, in turn over BASE .. BASE+FD_COUNT-1 (BASE defaults to 1).
// php push.php ADDRESS SERVICE SECONDS FIRST_FD FD_COUNT DATA [BATCH [BASE]]

require __DIR__ . '/../../php-client/vendor/autoload.php';

use WsBridge\Goridge\RPC;

[, $addr, $service, $seconds, $first, $count, $data] = $argv;
$batch = (int) ($argv[7] ?? 1);
$base = (int) ($argv[8] ?? 1);
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
            $messages[] = ['fd' => $fd, 'data' => $data];
            $fd = $base + ($fd - $base + 1) % $count;
        }
        $ok = $rpc->call($method, ['messages' => $messages]);
        if (!\is_array($ok) || \in_array(false, $ok, true) || \count($ok) !== $batch) {
            fwrite(STDERR, "batch push not delivered\n");
            exit(1);
        }
    } else {
        if ($rpc->call($method, ['fd' => $fd, 'data' => $data]) !== true) {
            fwrite(STDERR, "push to fd {$fd} not delivered\n");
            exit(1);
        }
        $fd = $base + ($fd - $base + 1) % $count;
    }
    $lat[] = (hrtime(true) - $t) / 1000;
}
echo json_encode(['calls' => count($lat), 'messages' => count($lat) * $batch, 'latencies_us' => $lat]);
