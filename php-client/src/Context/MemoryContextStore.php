<?php

declare(strict_types=1);

namespace WsBridge\Context;

/**
 * Connection context in this process's memory: per worker, as Hyperf's own
 * WebSocketServer\Context. Right when every event of a connection reaches the
 * same process; otherwise use RedisContextStore.
 */
final class MemoryContextStore implements ContextStore
{
    /** @var array<int, array<string, mixed>> */
    private array $values = [];

    public function get(int $fd, string $key): mixed
    {
        return $this->values[$fd][$key] ?? null;
    }

    public function has(int $fd, string $key): bool
    {
        return isset($this->values[$fd][$key]);
    }

    public function set(int $fd, string $key, mixed $value): void
    {
        $this->values[$fd][$key] = $value;
    }

    public function delete(int $fd, string $key): void
    {
        unset($this->values[$fd][$key]);
    }

    public function all(int $fd): array
    {
        return $this->values[$fd] ?? [];
    }

    public function release(int $fd): void
    {
        unset($this->values[$fd]);
    }

    /**
     * How many connections have values here.
     */
    public function count(): int
    {
        return \count($this->values);
    }
}
