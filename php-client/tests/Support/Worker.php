<?php

declare(strict_types=1);

namespace WsBridge\Tests\Support;

/**
 * Runs tests/Support/worker.php (a long-running events receiver) on a free
 * loopback port, with its output in a temporary file.
 */
final class Worker
{
    /** @var resource */
    private $process;
    private string $log;
    public readonly string $url;
    public readonly string $addr;

    /**
     * A free address, for the bridge's -events-url before the worker starts.
     */
    public static function freeAddr(): string
    {
        $probe = \stream_socket_server('tcp://127.0.0.1:0');
        $addr = (string) \stream_socket_get_name($probe, false);
        \fclose($probe);
        return $addr;
    }

    /**
     * @param list<string> $args after the address: RPC address, controller class, ...
     * @param array<string, string> $env
     */
    public function __construct(string $addr, array $args, array $env = [])
    {
        $this->addr = $addr;
        $this->url = "http://{$addr}/";
        $this->log = (string) \tempnam(\sys_get_temp_dir(), 'wsbridge-worker-');
        $cmd = \array_merge([\PHP_BINARY, '-d', 'display_errors=stderr', __DIR__ . '/worker.php', $addr], $args);
        $process = \proc_open($cmd, [0 => ['file', '/dev/null', 'r'], 1 => ['file', $this->log, 'a'], 2 => ['file', $this->log, 'a']], $pipes, null, $env + ['PATH' => (string) \getenv('PATH')]);
        if ($process === false) {
            throw new \RuntimeException('cannot start the worker');
        }
        $this->process = $process;
        $deadline = \microtime(true) + 10;
        while (!\str_contains($this->log(), 'worker listening')) {
            if (\microtime(true) > $deadline || !\proc_get_status($this->process)['running']) {
                throw new \RuntimeException('the worker did not start: ' . $this->log());
            }
            \usleep(10000);
        }
    }

    public function log(): string
    {
        return (string) \file_get_contents($this->log);
    }

    public function __destruct()
    {
        if (\proc_get_status($this->process)['running']) {
            \proc_terminate($this->process, 9);
        }
        \proc_close($this->process);
        @\unlink($this->log);
    }
}
