<?php

declare(strict_types=1);

namespace WsBridge\Hyperf;

use WsBridge\Coroutine\Channel;
use WsBridge\Coroutine\NoRuntime;
use WsBridge\Coroutine\Runtime;
use WsBridge\Coroutine\Runtimes;
use WsBridge\Exception\InvalidArgumentException;
use WsBridge\Exception\PoolExhaustedException;
use WsBridge\Goridge\RPC;
use WsBridge\Goridge\RPCInterface;

/**
 * goridge RPC for coroutine servers (Hyperf on Swoole): one RPC connection
 * must never carry two calls at once, and coroutines of one worker
 * interleave, so each call borrows a connection from a bounded pool, as
 * hyperf/pool does:
 *
 * - at most $maxActive connections are open at once (in use or idle), so a
 *   burst of coroutines never passes the bridge's rpc-max-connections;
 * - a call that finds none free waits up to $waitTimeout seconds for one,
 *   then throws PoolExhaustedException;
 * - at most $maxIdle connections are kept open between calls.
 *
 * A call returns its connection as soon as it is answered. A call that
 * failed on the wire (ConnectionException, ProtocolException) leaves a
 * connection that RPC already closed; it reconnects on its next use.
 */
final class CoroutineRPC implements RPCInterface
{
    private readonly Channel $idle;
    private int $active = 0;
    private int $opened = 0;
    private int $borrowed = 0;
    private int $maxBorrowed = 0;

    /**
     * @param \Closure(): RPCInterface $factory opens a connection
     */
    public function __construct(
        private readonly \Closure $factory,
        private readonly Runtime $runtime = new NoRuntime(),
        private readonly int $maxActive = 32,
        private readonly int $maxIdle = 16,
        private readonly float $waitTimeout = 3.0,
    ) {
        if ($maxActive < 1 || $maxIdle < 0 || $waitTimeout < 0) {
            throw new InvalidArgumentException('pool: max_active must be at least 1, max_idle and wait_timeout not negative');
        }
        $this->idle = $runtime->channel($maxActive);
    }

    /**
     * Over RPC::create($address, $options), with the coroutine runtime found
     * here (Runtimes::detect()).
     *
     * @param array<string, mixed> $options RPC::create's options
     * @param array{max_active?: int, max_idle?: int, wait_timeout?: float} $pool
     */
    public static function create(string $address, array $options = [], array $pool = [], ?Runtime $runtime = null): self
    {
        return new self(
            static fn (): RPCInterface => RPC::create($address, $options),
            $runtime ?? Runtimes::detect(),
            (int) ($pool['max_active'] ?? 32),
            (int) ($pool['max_idle'] ?? 16),
            (float) ($pool['wait_timeout'] ?? 3.0),
        );
    }

    public function call(string $method, mixed $args): mixed
    {
        $rpc = $this->borrow();
        try {
            return $rpc->call($method, $args);
        } finally {
            $this->giveBack($rpc);
        }
    }

    /**
     * Connections opened so far, open now, idle, borrowed now, and the most
     * borrowed at once.
     *
     * @return array{opened: int, active: int, idle: int, borrowed: int, max_borrowed: int}
     */
    public function stats(): array
    {
        return [
            'opened' => $this->opened,
            'active' => $this->active,
            'idle' => $this->idle->length(),
            'borrowed' => $this->borrowed,
            'max_borrowed' => $this->maxBorrowed,
        ];
    }

    private function borrow(): RPCInterface
    {
        if ($this->idle->length() > 0) {
            $rpc = $this->idle->pop(0);
        } elseif ($this->active < $this->maxActive) {
            $this->active++;
            try {
                $this->opened++;
                $rpc = ($this->factory)();
            } catch (\Throwable $e) {
                $this->active--;
                throw $e;
            }
        } else {
            $rpc = $this->idle->pop($this->waitTimeout);
            if (!$rpc instanceof RPCInterface) {
                throw new PoolExhaustedException(
                    "all {$this->maxActive} RPC connections to the bridge stayed busy for {$this->waitTimeout}s "
                    . '(wsbridge.rpc.pool: max_active, wait_timeout)'
                );
            }
        }
        $this->borrowed++;
        $this->maxBorrowed = \max($this->maxBorrowed, $this->borrowed);
        return $rpc;
    }

    private function giveBack(RPCInterface $rpc): void
    {
        $this->borrowed--;
        // A waiting coroutine takes it at once; otherwise keep up to maxIdle.
        if ($this->idle->waiting() > 0 || $this->idle->length() < $this->maxIdle) {
            if ($this->idle->push($rpc, 0)) {
                return;
            }
        }
        $this->active--;
        if ($rpc instanceof RPC) {
            $rpc->close();
        }
    }
}
