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
 * Counting, lookups and listing go through the RPC Sender (Sender.Stats,
 * Check, Info, Connections): they speak of the node this client talks to.
 * Another lister may be given (AdminConnections, over the admin API).
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
        if ($this->nextAfter === null) {
            return;
        }
        if ($this->listFds !== null) {
            [$fds, $next] = ($this->listFds)($this->nextAfter, $this->pageSize);
        } else {
            $page = $this->sender->connections($this->nextAfter, \min($this->pageSize, 1000));
            [$fds, $next] = [\array_map(static fn (array $c): int => (int) $c['fd'], $page['connections']), $page['next_after']];
        }
        $this->page = \array_values($fds);
        $this->index = 0;
        $this->nextAfter = $this->page === [] ? null : $next;
    }
}
