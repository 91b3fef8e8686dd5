<?php

declare(strict_types=1);

// Where a PHP client's call goes: times one sequential push (php-client's
// RPC::call) against a goridge server, then the same round trip with less
// of the client's work, then the parts that do no I/O alone, and prints a
// table in microseconds per call.
// php parts.php ADDRESS METHOD SECONDS_PER_VARIANT DATA
// bench/rpcload runs it against its bare server with -php-parts.

require __DIR__ . '/../../php-client/vendor/autoload.php';

use WsBridge\Goridge\Connection;
use WsBridge\Goridge\Frame;
use WsBridge\Goridge\RPC;

[, $addr, $method, $seconds, $data] = $argv;
$seconds = (float) $seconds;
$args = ['fd' => 1, 'data' => $data];
$flags = \JSON_THROW_ON_ERROR | \JSON_UNESCAPED_UNICODE | \JSON_UNESCAPED_SLASHES;

/** Runs $f repeatedly for $seconds; returns microseconds per run. */
function timeIt(float $seconds, callable $f): float
{
    $n = 0;
    $start = \hrtime(true);
    $end = $start + (int) ($seconds * 1e9);
    do {
        for ($i = 0; $i < 100; $i++) {
            $f();
        }
        $n += 100;
        $now = \hrtime(true);
    } while ($now < $end);
    return ($now - $start) / 1e3 / $n;
}

$rows = [];

// The three round-trip variants run in turns, ROUNDS times each, so that
// none is favoured by running first or last; the table gives the median.
const ROUNDS = 3;
$rpc = RPC::create($addr);
$conn = new Connection($addr);
$conn->connect();
$seq = 0;
$frame = Frame::encode(Frame::CODEC_JSON, 1, $method, \json_encode($args, $flags));
$context = \stream_context_create(['socket' => ['tcp_nodelay' => true]]);
$raw = \stream_socket_client($addr, $errno, $errstr, 1.0, \STREAM_CLIENT_CONNECT, $context);
\stream_set_timeout($raw, 5);
$variants = [
    // 1. The client as an application uses it.
    'RPC::call (what push.php does)' => function () use ($rpc, $method, $args) {
        if ($rpc->call($method, $args) !== true) {
            throw new RuntimeException('push failed');
        }
    },
    // 2. The same frames through the same kind of Connection, without the
    // liveness check (stream_select) that RPC::call makes before every request.
    'the same without the stream_select check' => function () use ($conn, $method, $args, $flags, &$seq) {
        $seq++;
        $conn->send(Frame::encode(Frame::CODEC_JSON, $seq, $method, \json_encode($args, $flags)));
        $reply = $conn->receive();
        if ($reply['seq'] !== $seq || \json_decode($reply['body'], true, 512, \JSON_THROW_ON_ERROR) !== true) {
            throw new RuntimeException('bad reply');
        }
    },
    // 3. The floor for PHP streams: a frame encoded once, one fwrite, freads
    // of the reply's header and payload, nothing checked.
    'raw fwrite + fread, frame encoded once' => function () use ($raw, $frame) {
        \fwrite($raw, $frame);
        $h = \fread($raw, Frame::RPC_HEADER_SIZE);
        $len = \unpack('V', $h, 2)[1];
        $got = 0;
        while ($got < $len) {
            $got += \strlen(\fread($raw, $len - $got));
        }
    },
];
$times = [];
for ($round = 0; $round < ROUNDS; $round++) {
    foreach ($variants as $name => $f) {
        $times[$name][] = timeIt($seconds / ROUNDS, $f);
    }
}
foreach ($times as $name => $t) {
    \sort($t);
    $rows[$name] = $t[\intdiv(\count($t), 2)];
}
$rpc->close();
\fclose($raw);

// 4. The parts that do no I/O, measured alone.
$rows['  stream_select on the idle connection (Connection::peerClosed)'] = timeIt($seconds, function () use ($conn) {
    if ($conn->peerClosed()) {
        throw new RuntimeException('closed');
    }
});
$rows['  json_encode + Frame::encode (pack, crc32)'] = timeIt($seconds, function () use ($method, $args, $flags) {
    Frame::encode(Frame::CODEC_JSON, 7, $method, \json_encode($args, $flags));
});
$reply = Frame::encode(Frame::CODEC_JSON, 7, $method, 'true');
$rows['  Frame::decode (unpack, crc32, substr) + json_decode'] = timeIt($seconds, function () use ($reply) {
    \json_decode(Frame::decode($reply)['body'], true, 512, \JSON_THROW_ON_ERROR);
});
$conn->close();

$width = \max(\array_map('strlen', \array_keys($rows)));
\printf("%-{$width}s  %8s  %9s\n", "PHP {$addr} {$method}", 'µs/call', 'calls/s');
foreach ($rows as $name => $us) {
    \printf("%-{$width}s  %8.1f  %9s\n", $name, $us, \str_starts_with($name, '  ') ? '' : \number_format(1e6 / $us, 0, '.', ''));
}
