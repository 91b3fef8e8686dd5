<?php

declare(strict_types=1);

namespace WsBridge\Tests\Support;

use PHPUnit\Framework\Assert;

/**
 * A real redis-server (Debian's redis-server package) on a free loopback
 * port, without persistence, for the Redis-backed stores. Missing, it skips
 * the test, except under CI=true, where a missing tool fails it.
 */
final class RedisServer
{
    /** @var resource */
    private $process;
    public readonly string $url;

    public function __construct()
    {
        $bin = \trim((string) \shell_exec('command -v redis-server'));
        if ($bin === '') {
            if (\getenv('CI') === 'true') {
                Assert::fail('redis-server is missing (Debian: apt-get install redis-server); CI runs every test');
            }
            Assert::markTestSkipped('redis-server is not installed (Debian: apt-get install redis-server)');
        }
        $addr = Worker::freeAddr();
        $port = (int) \substr($addr, \strrpos($addr, ':') + 1);
        $cmd = [$bin, '--bind', '127.0.0.1', '--port', (string) $port, '--save', '', '--appendonly', 'no', '--daemonize', 'no'];
        $process = \proc_open($cmd, [0 => ['file', '/dev/null', 'r'], 1 => ['file', '/dev/null', 'w'], 2 => ['file', '/dev/null', 'w']], $pipes);
        if ($process === false) {
            throw new \RuntimeException('cannot start redis-server');
        }
        $this->process = $process;
        $this->url = "redis://127.0.0.1:{$port}";
        $deadline = \microtime(true) + 10;
        while (@\stream_socket_client("tcp://127.0.0.1:{$port}", $errno, $errstr, 0.2) === false) {
            if (\microtime(true) > $deadline) {
                throw new \RuntimeException('redis-server did not start');
            }
            \usleep(20000);
        }
    }

    public function __destruct()
    {
        \proc_terminate($this->process, 9);
        \proc_close($this->process);
    }
}
