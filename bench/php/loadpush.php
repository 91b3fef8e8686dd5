<?php

declare(strict_types=1);

// One PHP caller of bench/load's push scenarios: php-client's Sender, as an
// application uses it, pushing to its share of the connections.
//
// php loadpush.php ADDRESS METHOD ROUNDS PER_CONN BATCH PAYLOAD FDS_FILE
//
// METHOD is push (Sender::push, one call per message) or batch
// (Sender::pushBatch, BATCH messages a call). A round sends PER_CONN
// messages to every fd of FDS_FILE (one a line): the fd list PER_CONN times
// over, in calls of BATCH. Each payload is a JSON object of PAYLOAD bytes
// with "ts", its sending time in unix nanoseconds (microsecond precision),
// as bench/load's Go pushes make it (runner.go, makePayload).
//
// It connects, prints "ready", waits for a line on stdin, runs, and prints
// {"calls": n, "messages": m, "refused": r}; a message answered false
// counts in refused (the driver compares deliveries).

require __DIR__ . '/../../php-client/vendor/autoload.php';

use WsBridge\Sender;

[, $addr, $method, $rounds, $perConn, $batch, $size, $fdsFile] = $argv;
$rounds = (int) $rounds;
$perConn = (int) $perConn;
$batch = max(1, (int) $batch);
$size = (int) $size;
$fds = array_map('intval', file($fdsFile, FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES));

$sender = Sender::create($addr, ['read_timeout' => 60.0]);
$sender->check(1); // connects
fwrite(STDOUT, "ready\n");
if (fgets(STDIN) === false) {
    exit(0);
}

function payload(int $size): string
{
    [$usec, $sec] = explode(' ', microtime());
    $ts = (int) $sec * 1000000000 + (int) round((float) $usec * 1e6) * 1000;
    $p = '{"ts":' . $ts . ',"p":"';
    return $p . str_repeat('x', max(0, $size - \strlen($p) - 2)) . '"}';
}

$list = [];
for ($j = 0; $j < $perConn; $j++) {
    foreach ($fds as $fd) {
        $list[] = $fd;
    }
}
$calls = 0;
$messages = 0;
$refused = 0;
for ($r = 0; $r < $rounds; $r++) {
    if ($method === 'push') {
        foreach ($list as $fd) {
            if (!$sender->push($fd, payload($size))) {
                $refused++;
            }
            $calls++;
            $messages++;
        }
        continue;
    }
    foreach (array_chunk($list, $batch) as $chunk) {
        $data = payload($size);
        $msgs = [];
        foreach ($chunk as $fd) {
            $msgs[] = ['fd' => $fd, 'data' => $data];
        }
        foreach ($sender->pushBatch($msgs) as $ok) {
            if (!$ok) {
                $refused++;
            }
        }
        $calls++;
        $messages += \count($msgs);
    }
}
echo json_encode(['calls' => $calls, 'messages' => $messages, 'refused' => $refused]), "\n";
