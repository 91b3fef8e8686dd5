<?php

declare(strict_types=1);

namespace WsBridge\Context;

/**
 * Per-connection context with the API of Hyperf's WebSocketServer\Context
 * (set in onOpen, read in onMessage), over a ContextStore that may be
 * shared between workers (RedisContextStore) or not (MemoryContextStore).
 * The events handler says which connection an event belongs to before it
 * calls the controller, and releases the connection's values after its
 * close event.
 *
 * The current fd is Hyperf's coroutine context value "ws.fd" when
 * hyperf/context is installed (so coroutines running events of different
 * fds at once each see their own), else the fd of the event being
 * dispatched.
 */
final class ConnectionContext
{
    public const FD = 'ws.fd';
    private const CO_CONTEXT = 'Hyperf\Context\Context';

    private int $fd = 0;

    public function __construct(private readonly ContextStore $store = new MemoryContextStore())
    {
    }

    public function store(): ContextStore
    {
        return $this->store;
    }

    /**
     * Makes $fd the current connection (the events handler calls it).
     */
    public function enter(int $fd): void
    {
        $this->fd = $fd;
        if (\class_exists(self::CO_CONTEXT)) {
            (self::CO_CONTEXT)::set(self::FD, $fd);
        }
    }

    public function fd(): int
    {
        if (\class_exists(self::CO_CONTEXT)) {
            return (int) (self::CO_CONTEXT)::get(self::FD, $this->fd);
        }
        return $this->fd;
    }

    public function set(string $id, mixed $value): mixed
    {
        $this->store->set($this->fd(), $id, $value);
        return $value;
    }

    public function get(string $id, mixed $default = null, ?int $fd = null): mixed
    {
        return $this->store->get($fd ?? $this->fd(), $id) ?? $default;
    }

    public function has(string $id, ?int $fd = null): bool
    {
        return $this->store->has($fd ?? $this->fd(), $id);
    }

    public function destroy(string $id): void
    {
        $this->store->delete($this->fd(), $id);
    }

    /**
     * @return array<string, mixed>
     */
    public function all(?int $fd = null): array
    {
        return $this->store->all($fd ?? $this->fd());
    }

    public function release(?int $fd = null): void
    {
        $this->store->release($fd ?? $this->fd());
    }

    public function getOrSet(string $id, mixed $value): mixed
    {
        if (!$this->has($id)) {
            return $this->set($id, $value instanceof \Closure ? $value() : $value);
        }
        return $this->get($id);
    }
}
