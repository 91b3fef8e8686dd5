<?php

declare(strict_types=1);

namespace WsBridge\Coroutine;

/**
 * A bounded channel between coroutines (Swoole\Coroutine\Channel's subset).
 */
interface Channel
{
    /**
     * Adds $value; false when the channel stays full for $timeout seconds.
     */
    public function push(mixed $value, float $timeout = -1): bool;

    /**
     * Takes the oldest value, waiting up to $timeout seconds (-1: forever);
     * false when none came.
     */
    public function pop(float $timeout = -1): mixed;

    public function length(): int;

    /**
     * How many coroutines wait in pop().
     */
    public function waiting(): int;
}
