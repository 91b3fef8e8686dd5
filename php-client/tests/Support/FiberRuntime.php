<?php

declare(strict_types=1);

namespace WsBridge\Tests\Support;

use WsBridge\Coroutine\Channel;
use WsBridge\Coroutine\Runtime;

/**
 * A coroutine runtime over PHP's Fibers, with the contract of Swoole's
 * (Swoole is not installed here): coroutines switch only where they wait,
 * on a channel or in yield(), which a test calls where a Swoole coroutine
 * would wait for I/O. run() schedules until every coroutine has ended.
 */
final class FiberRuntime implements Runtime
{
    /** @var list<\Fiber> */
    private array $ready = [];
    /** @var array<int, int> spl_object_id(fiber) => coroutine id */
    private array $ids = [];
    private int $next = 0;
    /** @var array<int, object{fiber: \Fiber, deadline: float, got: bool, value: mixed, channel: object}> */
    public array $waiting = [];

    public function id(): int
    {
        $fiber = \Fiber::getCurrent();
        return $fiber === null ? -1 : ($this->ids[\spl_object_id($fiber)] ?? -1);
    }

    public function go(callable $task): \Fiber
    {
        $fiber = new \Fiber(static function () use ($task): void {
            $task();
        });
        $this->ids[\spl_object_id($fiber)] = ++$this->next;
        $this->ready[] = $fiber;
        return $fiber;
    }

    /**
     * Lets the other coroutines run (where Swoole would wait for I/O).
     */
    public function yield(): void
    {
        $fiber = \Fiber::getCurrent();
        if ($fiber === null) {
            return;
        }
        $this->ready[] = $fiber;
        \Fiber::suspend();
    }

    public function run(float $timeout = 30.0): void
    {
        $deadline = \microtime(true) + $timeout;
        while ($this->ready !== [] || $this->waiting !== []) {
            if (\microtime(true) > $deadline) {
                throw new \RuntimeException('FiberRuntime: coroutines still running after ' . $timeout . 's');
            }
            $this->wakeExpired();
            if ($this->ready === []) {
                \usleep(1000);
                continue;
            }
            $fiber = \array_shift($this->ready);
            $fiber->isStarted() ? $fiber->resume() : $fiber->start();
        }
    }

    public function parallel(array $tasks): void
    {
        $fibers = [];
        foreach ($tasks as $task) {
            $fibers[] = $this->go($task);
        }
        if (\Fiber::getCurrent() === null) {
            $this->run();
            return;
        }
        while (\array_filter($fibers, static fn (\Fiber $f): bool => !$f->isTerminated()) !== []) {
            $this->yield();
        }
    }

    public function channel(int $capacity): Channel
    {
        $runtime = $this;
        return new class ($capacity, $runtime) implements Channel {
            /** @var list<mixed> */
            private array $values = [];
            /** @var list<object> */
            public array $waiters = [];

            public function __construct(private readonly int $capacity, private readonly FiberRuntime $runtime)
            {
            }

            public function push(mixed $value, float $timeout = -1): bool
            {
                if ($this->waiters !== []) {
                    $w = \array_shift($this->waiters);
                    $w->got = true;
                    $w->value = $value;
                    $this->runtime->wake($w);
                    return true;
                }
                if (\count($this->values) >= $this->capacity) {
                    return false;
                }
                $this->values[] = $value;
                return true;
            }

            public function pop(float $timeout = -1): mixed
            {
                if ($this->values !== []) {
                    return \array_shift($this->values);
                }
                $fiber = \Fiber::getCurrent();
                if ($fiber === null || $timeout === 0.0 || $timeout === 0) {
                    return false;
                }
                $w = (object) ['fiber' => $fiber, 'deadline' => $timeout < 0 ? \INF : \microtime(true) + $timeout,
                    'got' => false, 'value' => null, 'channel' => $this];
                $this->waiters[] = $w;
                $this->runtime->waiting[\spl_object_id($w)] = $w;
                \Fiber::suspend();
                return $w->got ? $w->value : false;
            }

            public function length(): int
            {
                return \count($this->values);
            }

            public function waiting(): int
            {
                return \count($this->waiters);
            }
        };
    }

    /**
     * @internal the channel's: makes a waiter's coroutine ready again
     */
    public function wake(object $w): void
    {
        unset($this->waiting[\spl_object_id($w)]);
        $w->channel->waiters = \array_values(\array_filter($w->channel->waiters, static fn (object $x): bool => $x !== $w));
        $this->ready[] = $w->fiber;
    }

    private function wakeExpired(): void
    {
        $now = \microtime(true);
        foreach ($this->waiting as $w) {
            if ($w->deadline <= $now) {
                $this->wake($w);
            }
        }
    }
}
