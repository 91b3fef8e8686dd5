<?php

declare(strict_types=1);

// One PHP client of bench/rpcload: pushes for a while, sequentially, and
// prints {"calls": n, "messages": m, "latencies_us": [...]}. With BATCH > 1
// each call is SERVICE.PushBatch of BATCH messages to consecutive fds.
// php push.php ADDRESS SERVICE SECONDS FIRST_FD FD_COUNT DATA [BATCH]

require __DIR__ . '/../../php-client/vendor/autoload.php';

use WsBridge\Goridge\RPC;

[, $addr, $service, $seconds, $first, $count, $data] = $argv;
$batch = (int) ($argv[7] ?? 1);
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
            $fd = $fd % $count + 1;
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
        $fd = $fd % $count + 1;
    }
    $lat[] = (hrtime(true) - $t) / 1000;
}
echo json_encode(['calls' => count($lat), 'messages' => count($lat) * $batch, 'latencies_us' => $lat]);
