<?php

declare(strict_types=1);

namespace WsBridge\Hyperf;

use WsBridge\Exception\InvalidArgumentException;
use WsBridge\Goridge\RPC;
use WsBridge\Goridge\RPCInterface;

/**
 * goridge RPC for coroutine servers (Hyperf on Swoole or Swow): one RPC
 * connection must never carry two calls at once, and coroutines of one
 * worker interleave, so each coroutine that calls the bridge borrows a
 * connection of its own, for as long as it runs, from a pool of idle ones.
 * Outside a coroutine every call goes through one shared connection.
 *
 * The pool is a plain array: a worker runs one coroutine at a time and
 * borrowing or returning does no I/O, so nothing can switch in between.
 */
final class CoroutineRPC implements RPCInterface
{
    /** @var list<RPCInterface> */
    private array $idle = [];
    /** @var array<int, RPCInterface> coroutine id => its connection */
    private array $borrowed = [];
    /** @var array<int, true> coroutines inside a call */
    private array $inCall = [];
    private ?RPCInterface $shared = null;
    private int $opened = 0;

    /**
     * @param \Closure(): RPCInterface   $factory     opens a connection
     * @param \Closure(): int            $coroutineId the current coroutine's id, < 1 outside one
     * @param \Closure(callable): void   $defer       runs a callable when the current coroutine ends
     * @param int                        $maxIdle     idle connections kept for later coroutines
     */
    public function __construct(
        private readonly \Closure $factory,
        private readonly \Closure $coroutineId,
        private readonly \Closure $defer,
        private readonly int $maxIdle = 16,
    ) {
        if ($maxIdle < 0) {
            throw new InvalidArgumentException('maxIdle must not be negative');
        }
    }

    /**
     * Over RPC::create($address, $options), with the coroutine runtime found
     * here: Hyperf's engine (Hyperf\Engine\Coroutine), else Swoole's, else
     * none (every call shares one connection).
     *
     * @param array{connect_timeout?: float, read_timeout?: float, retries?: int, retry_delay?: float, max_frame_size?: int} $options
     */
    public static function create(string $address, array $options = [], int $maxIdle = 16): self
    {
        $factory = static fn (): RPCInterface => RPC::create($address, $options);
        $engine = 'Hyperf\Engine\Coroutine';
        if (\class_exists($engine)) {
            return new self($factory, static fn (): int => $engine::id(), static function (callable $c) use ($engine): void {
                $engine::defer($c);
            }, $maxIdle);
        }
        $swoole = 'Swoole\Coroutine';
        if (\class_exists($swoole)) {
            return new self($factory, static fn (): int => $swoole::getCid(), static function (callable $c) use ($swoole): void {
                $swoole::defer($c);
            }, $maxIdle);
        }
        return new self($factory, static fn (): int => -1, static function (callable $c): void {
        }, $maxIdle);
    }

    public function call(string $method, mixed $args): mixed
    {
        $id = ($this->coroutineId)();
        $rpc = $this->connection($id);
        $this->inCall[$id] = true;
        try {
            return $rpc->call($method, $args);
        } finally {
            unset($this->inCall[$id]);
        }
    }

    /**
     * Connections opened so far, idle ones, and ones borrowed by running
     * coroutines.
     *
     * @return array{opened: int, idle: int, borrowed: int}
     */
    public function stats(): array
    {
        return ['opened' => $this->opened, 'idle' => \count($this->idle), 'borrowed' => \count($this->borrowed)];
    }

    private function connection(int $id): RPCInterface
    {
        if ($id < 1) {
            return $this->shared ??= $this->open();
        }
        if (isset($this->borrowed[$id])) {
            return $this->borrowed[$id];
        }
        $rpc = \array_pop($this->idle) ?? $this->open();
        $this->borrowed[$id] = $rpc;
        ($this->defer)(function () use ($id): void {
            $this->release($id);
        });
        return $rpc;
    }

    private function release(int $id): void
    {
        $rpc = $this->borrowed[$id] ?? null;
        $interrupted = isset($this->inCall[$id]);
        unset($this->borrowed[$id], $this->inCall[$id]);
        if ($rpc === null) {
            return;
        }
        // A coroutine that ended inside a call (killed, or cancelled) may
        // leave a reply on its connection: that one is not reused.
        if (!$interrupted && \count($this->idle) < $this->maxIdle) {
            $this->idle[] = $rpc;
        } elseif ($rpc instanceof RPC) {
            $rpc->close();
        }
    }

    private function open(): RPCInterface
    {
        $this->opened++;
        return ($this->factory)();
    }
}
