<?php

declare(strict_types=1);

// One PHP client of bench/rpcload: pushes for a while, sequentially, and
// prints {"calls": n, "latencies_us": [...]}.
// php push.php ADDRESS SERVICE SECONDS FIRST_FD FD_COUNT DATA

require __DIR__ . '/../../php-client/vendor/autoload.php';

use WsBridge\Goridge\RPC;

[, $addr, $service, $seconds, $first, $count, $data] = $argv;
$rpc = RPC::create($addr);
$method = $service . '.Push';
$fd = (int) $first;
$count = (int) $count;
$lat = [];
$end = microtime(true) + (float) $seconds;
while (($t = hrtime(true)) && microtime(true) < $end) {
    if ($rpc->call($method, ['fd' => $fd, 'data' => $data]) !== true) {
        fwrite(STDERR, "push to fd {$fd} not delivered\n");
        exit(1);
    }
    $lat[] = (hrtime(true) - $t) / 1000;
    $fd = $fd % $count + 1;
}
echo json_encode(['calls' => count($lat), 'latencies_us' => $lat]);
