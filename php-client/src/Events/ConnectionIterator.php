<?php

declare(strict_types=1);

namespace WsBridge\Events;

use WsBridge\Exception\UnsupportedException;
use WsBridge\Sender;

/**
 * $server->connections behind the bridge, as Swoole's
 * Swoole\Connection\Iterator is used: count($server->connections),
 * isset($server->connections[$fd]), $server->connections[$fd] (its info) and
 * foreach over the open fds, in ascending order.
 *
 * Counting and lookups go through the RPC Sender. The goridge RPC has no
 * method that lists fds, so iterating needs a lister: AdminConnections, over
 * the bridge's admin API (GET /v1/connections, with the admin token).
 *
 * @implements \Iterator<int, int>
 * @implements \ArrayAccess<int, array<string, mixed>>
 */
final class ConnectionIterator implements \Iterator, \Countable, \ArrayAccess
{
    /** @var list<int> */
    private array $page = [];
    private int $index = 0;
    private ?int $nextAfter = 0;
    private int $key = 0;

    /**
     * @param (\Closure(int $after, int $limit): array{list<int>, ?int})|null $listFds
     */
    public function __construct(
        private readonly Sender $sender,
        private readonly ?\Closure $listFds = null,
        private readonly int $pageSize = 500,
    ) {
    }

    public function count(): int
    {
        return (int) ($this->sender->stats()['connections'] ?? 0);
    }

    public function offsetExists(mixed $offset): bool
    {
        return $this->sender->check($offset);
    }

    /**
     * @return array<string, mixed>|null
     */
    public function offsetGet(mixed $offset): mixed
    {
        return $this->sender->info((int) $offset);
    }

    public function offsetSet(mixed $offset, mixed $value): void
    {
        throw new UnsupportedException('the connections of the bridge are read only');
    }

    public function offsetUnset(mixed $offset): void
    {
        throw new UnsupportedException('the connections of the bridge are read only (disconnect closes one)');
    }

    public function rewind(): void
    {
        if ($this->listFds === null) {
            throw new UnsupportedException(
                'listing the bridge\'s fds needs its admin API: set wsbridge.admin.url and wsbridge.admin.token '
                . '(WSBRIDGE_ADMIN_ADDR, WSBRIDGE_ADMIN_TOKEN), or use groups (sender()->groupMembers())'
            );
        }
        $this->page = [];
        $this->index = 0;
        $this->key = 0;
        $this->nextAfter = 0;
        $this->fetch();
    }

    public function valid(): bool
    {
        return isset($this->page[$this->index]);
    }

    public function current(): int
    {
        return $this->page[$this->index];
    }

    public function key(): int
    {
        return $this->key;
    }

    public function next(): void
    {
        $this->index++;
        $this->key++;
        if (!isset($this->page[$this->index]) && $this->nextAfter !== null) {
            $this->fetch();
        }
    }

    private function fetch(): void
    {
        if ($this->listFds === null || $this->nextAfter === null) {
            return;
        }
        [$fds, $next] = ($this->listFds)($this->nextAfter, $this->pageSize);
        $this->page = \array_values($fds);
        $this->index = 0;
        $this->nextAfter = $this->page === [] ? null : $next;
    }
}
