<?php

declare(strict_types=1);

namespace WsBridge\Coroutine;

/**
 * Plain PHP: no coroutines, one thing at a time. parallel() runs the tasks
 * one after the other; a channel's pop() never waits (nothing else could
 * push meanwhile).
 */
final class NoRuntime implements Runtime
{
    public function id(): int
    {
        return -1;
    }

    public function parallel(array $tasks): void
    {
        foreach ($tasks as $task) {
            $task();
        }
    }

    public function channel(int $capacity): Channel
    {
        return new class ($capacity) implements Channel {
            /** @var list<mixed> */
            private array $values = [];

            public function __construct(private readonly int $capacity)
            {
            }

            public function push(mixed $value, float $timeout = -1): bool
            {
                if (\count($this->values) >= $this->capacity) {
                    return false;
                }
                $this->values[] = $value;
                return true;
            }

            public function pop(float $timeout = -1): mixed
            {
                return $this->values === [] ? false : \array_shift($this->values);
            }

            public function length(): int
            {
                return \count($this->values);
            }

            public function waiting(): int
            {
                return 0;
            }
        };
    }
}
