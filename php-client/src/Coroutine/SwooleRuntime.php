<?php

declare(strict_types=1);

namespace WsBridge\Coroutine;

/**
 * Swoole's coroutines (Hyperf on Swoole): Swoole\Coroutine,
 * Swoole\Coroutine\Channel and Swoole\Coroutine\WaitGroup, named as strings
 * so that this class loads without the extension.
 *
 * Not covered by the test suite: Swoole is not installed where it runs
 * (the pool and the handler are tested over a Fiber runtime with the same
 * contract, tests/Support/FiberRuntime.php).
 */
final class SwooleRuntime implements Runtime
{
    private const COROUTINE = 'Swoole\Coroutine';
    private const CHANNEL = 'Swoole\Coroutine\Channel';
    private const WAIT_GROUP = 'Swoole\Coroutine\WaitGroup';

    public function id(): int
    {
        return (int) (self::COROUTINE)::getCid();
    }

    public function parallel(array $tasks): void
    {
        if ($this->id() < 1) {
            // Outside a coroutine (a command, a test): one after the other.
            (new NoRuntime())->parallel($tasks);
            return;
        }
        $class = self::WAIT_GROUP;
        $wg = new $class();
        foreach ($tasks as $task) {
            $wg->add();
            (self::COROUTINE)::create(static function () use ($task, $wg): void {
                try {
                    $task();
                } finally {
                    $wg->done();
                }
            });
        }
        $wg->wait();
    }

    public function channel(int $capacity): Channel
    {
        $class = self::CHANNEL;
        return new class (new $class($capacity)) implements Channel {
            public function __construct(private readonly object $channel)
            {
            }

            public function push(mixed $value, float $timeout = -1): bool
            {
                return $this->channel->push($value, $timeout);
            }

            public function pop(float $timeout = -1): mixed
            {
                return $this->channel->pop($timeout);
            }

            public function length(): int
            {
                return $this->channel->length();
            }

            public function waiting(): int
            {
                return (int) ($this->channel->stats()['consumer_num'] ?? 0);
            }
        };
    }
}
