<?php

declare(strict_types=1);

/*
 * A long-running PHP worker that receives the bridge's events over HTTP, one
 * request at a time, as one Hyperf worker process does (its memory, and so
 * Hyperf's per-worker WebSocketServer\Context, lives across requests): the
 * stand-in for `php bin/hyperf.php start` in the end-to-end tests.
 *
 *   php worker.php ADDR RPC_ADDR CONTROLLER_CLASS [SEQ_STORE_REDIS_URL]
 *
 * With WSBRIDGE_TEST_WORKERS=N it forks N processes that accept on the same
 * socket, as Hyperf's workers do; with a Redis URL they share a RedisSeqStore
 * and a RedisContextStore. WSBRIDGE_TEST_SERVER_STYLE=coroutine gives the
 * controller Hyperf's coroutine-server $server (the connection's response).
 *
 * Hyperf's fixtures are loaded (Hyperf's Context, the engine Response).
 * Each event's dispatch is logged to WSBRIDGE_TEST_LOG as a JSON line.
 */

require \dirname(__DIR__, 2) . '/vendor/autoload.php';
require \dirname(__DIR__) . '/fixtures/hyperf/load.php';

use WsBridge\Context\ConnectionContext;
use WsBridge\Context\RedisContextStore;
use WsBridge\Events\EventHandler;
use WsBridge\Events\RedisSeqStore;
use WsBridge\Sender;

[, $addr, $rpcAddr, $class] = $argv;
$handler = (new EventHandler(new $class(), Sender::create($rpcAddr)))
    ->withErrorHandler(static function (\Throwable $e): void {
        \fwrite(\STDERR, 'controller: ' . \get_class($e) . ': ' . $e->getMessage() . "\n");
    });
if (\getenv('WSBRIDGE_TEST_SERVER_STYLE') !== false) {
    $handler = $handler->withServerStyle((string) \getenv('WSBRIDGE_TEST_SERVER_STYLE'));
}
if (isset($argv[4])) {
    $prefix = 'wsbridge-test-' . \getmypid();
    $handler = $handler->withSeqStore(new RedisSeqStore($argv[4], $prefix), 30.0)
        ->withContext(new ConnectionContext(new RedisContextStore($argv[4], $prefix)));
}
$server = \stream_socket_server("tcp://{$addr}", $errno, $errstr);
if ($server === false) {
    \fwrite(\STDERR, "cannot listen on {$addr}: {$errstr}\n");
    exit(1);
}
$parent = \getmypid();
for ($i = 1; $i < (int) (\getenv('WSBRIDGE_TEST_WORKERS') ?: 1); $i++) {
    if (\pcntl_fork() === 0) {
        break; // a child: serve
    }
}
\fwrite(\STDERR, "worker listening on {$addr}\n");
while (true) {
    $conn = @\stream_socket_accept($server, 1);
    if ($conn === false) {
        if (\getmypid() !== $parent && \posix_getppid() !== $parent) {
            exit(0); // the first worker is gone: so is this one
        }
        continue;
    }
    \stream_set_timeout($conn, 10);
    $head = '';
    while (!\str_contains($head, "\r\n\r\n") && ($line = \fgets($conn)) !== false) {
        $head .= $line;
    }
    $headers = [];
    foreach (\array_slice(\explode("\r\n", \trim($head)), 1) as $line) {
        [$name, $value] = \array_map('trim', \explode(':', $line, 2)) + [1 => ''];
        $headers[\strtolower($name)] = $value;
    }
    $body = '';
    $length = (int) ($headers['content-length'] ?? 0);
    while (\strlen($body) < $length && ($chunk = \fread($conn, $length - \strlen($body))) !== false && $chunk !== '') {
        $body .= $chunk;
    }
    $response = $handler->handle($body, $headers);
    \fwrite(\STDERR, 'worker ' . \getmypid() . " answered {$response->status}\n");
    $out = "HTTP/1.1 {$response->status} X\r\nConnection: close\r\nContent-Length: " . \strlen($response->body) . "\r\n";
    foreach ($response->headers as $name => $value) {
        $out .= "{$name}: {$value}\r\n";
    }
    \fwrite($conn, $out . "\r\n" . $response->body);
    \fclose($conn);
}
