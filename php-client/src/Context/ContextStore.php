<?php

declare(strict_types=1);

namespace WsBridge\Context;

/**
 * Where ConnectionContext keeps each connection's values. MemoryContextStore
 * is this process's memory (like Hyperf's WebSocketServer\Context: per
 * worker); RedisContextStore is shared by every worker and server that
 * receives the bridge's events. Values must survive json_encode (scalars,
 * arrays) to be shared.
 */
interface ContextStore
{
    public function get(int $fd, string $key): mixed;

    public function has(int $fd, string $key): bool;

    public function set(int $fd, string $key, mixed $value): void;

    public function delete(int $fd, string $key): void;

    /**
     * @return array<string, mixed> every value of $fd
     */
    public function all(int $fd): array;

    /**
     * Forgets everything of $fd (after its close event).
     */
    public function release(int $fd): void;
}
