<?php

declare(strict_types=1);

namespace WsBridge\Tests\Support;

/**
 * A running wsbridge process, started from the real binary on free loopback
 * ports (or the given RPC address), with JSON logs in a temporary file.
 */
final class Bridge
{
    /** @var resource */
    private $process;
    private string $log;
    public readonly string $wsUrl;
    public readonly string $rpcAddr;
    public readonly string $adminUrl;

    /** The admin API's token: fds() lists the connections through it. */
    private const ADMIN_TOKEN = 'php-client-tests-admin-token-0123456789';

    /**
     * @param list<string> $args extra flags
     */
    public function __construct(array $args = [], string $rpcAddr = 'tcp://127.0.0.1:0')
    {
        $this->log = \tempnam(\sys_get_temp_dir(), 'wsbridge-log-');
        $cmd = \array_merge([Build::bridge(), '-ws-addr', '127.0.0.1:0', '-rpc-addr', $rpcAddr, '-admin-addr', '127.0.0.1:0', '-admin-token', self::ADMIN_TOKEN, '-log-format', 'json'], $args);
        $process = \proc_open($cmd, [0 => ['file', '/dev/null', 'r'], 1 => ['file', '/dev/null', 'w'], 2 => ['file', $this->log, 'w']], $pipes);
        if ($process === false) {
            throw new \RuntimeException('cannot start ' . Build::bridge());
        }
        $this->process = $process;
        $ws = $this->waitForLog('websocket listening');
        $rpc = $this->waitForLog('rpc listening');
        $this->wsUrl = 'ws://' . $ws['addr'];
        $this->rpcAddr = $rpc['addr'];
        $this->adminUrl = 'http://' . $this->waitForLog('admin listening')['addr'];
    }

    /**
     * The fds of the open connections, in order, from the admin API (fds
     * are large and never reused, so a test cannot guess them).
     *
     * @return list<int>
     */
    public function fds(): array
    {
        $ctx = \stream_context_create(['http' => ['header' => 'Authorization: Bearer ' . self::ADMIN_TOKEN, 'timeout' => 5]]);
        $fds = [];
        $after = 0;
        do {
            $body = \file_get_contents("{$this->adminUrl}/v1/connections?limit=1000&after={$after}", false, $ctx);
            if ($body === false) {
                throw new \RuntimeException('GET /v1/connections failed');
            }
            $list = \json_decode($body, true, 16, \JSON_THROW_ON_ERROR);
            foreach ($list['connections'] as $c) {
                $fds[] = $c['fd'];
            }
            $after = $list['next_after'];
        } while ($after !== null);
        return $fds;
    }

    /**
     * Waits until a connection is open and returns the fd of the newest one.
     */
    public function waitForFd(float $timeout = 10.0): int
    {
        $deadline = \microtime(true) + $timeout;
        do {
            $fds = $this->fds();
            if ($fds !== []) {
                return \end($fds);
            }
            \usleep(2000);
        } while (\microtime(true) < $deadline);
        throw new \RuntimeException('no connection opened');
    }

    /**
     * Sends SIGTERM and returns the exit code (fails after $timeout seconds).
     */
    public function stop(float $timeout = 10.0): int
    {
        $status = \proc_get_status($this->process);
        if (!$status['running']) {
            return $status['exitcode'];
        }
        \proc_terminate($this->process, 15);
        $deadline = \microtime(true) + $timeout;
        while (\microtime(true) < $deadline) {
            $status = \proc_get_status($this->process);
            if (!$status['running']) {
                return $status['exitcode'];
            }
            \usleep(10000);
        }
        \proc_terminate($this->process, 9);
        throw new \RuntimeException("wsbridge did not exit within {$timeout}s of SIGTERM");
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

    /**
     * @return array<string, mixed> the first JSON log record with this message
     */
    private function waitForLog(string $msg, float $timeout = 20.0): array
    {
        $deadline = \microtime(true) + $timeout;
        while (\microtime(true) < $deadline) {
            foreach (\explode("\n", $this->log()) as $line) {
                $rec = \json_decode($line, true);
                if (\is_array($rec) && ($rec['msg'] ?? '') === $msg) {
                    return $rec;
                }
            }
            if (!\proc_get_status($this->process)['running']) {
                break;
            }
            \usleep(10000);
        }
        throw new \RuntimeException("wsbridge never logged \"{$msg}\":\n" . $this->log());
    }
}
