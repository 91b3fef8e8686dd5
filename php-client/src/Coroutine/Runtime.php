<?php

declare(strict_types=1);

namespace WsBridge\Coroutine;

/**
 * The coroutine runtime the client runs under, as far as it needs one: the
 * connection pool (CoroutineRPC) waits on a Channel, and the events handler
 * runs the events of different connections at once. Runtimes::detect()
 * gives SwooleRuntime under Swoole (Hyperf), else NoRuntime (plain PHP:
 * one thing at a time).
 */
interface Runtime
{
    /**
     * The current coroutine's id; below 1 outside a coroutine.
     */
    public function id(): int;

    /**
     * Runs each callable in a coroutine of its own and returns when every
     * one has returned or thrown (exceptions are the callables' to catch).
     *
     * @param list<callable(): void> $tasks
     */
    public function parallel(array $tasks): void;

    /**
     * A channel of up to $capacity values.
     */
    public function channel(int $capacity): Channel;
}
