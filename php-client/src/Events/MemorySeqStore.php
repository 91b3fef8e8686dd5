<?php

declare(strict_types=1);

namespace WsBridge\Events;

use WsBridge\Exception\InvalidArgumentException;

/**
 * SeqStore in this process's memory, for long-running workers (Hyperf,
 * RoadRunner): it catches a batch redelivered to the same process, also
 * while the first delivery still runs in another coroutine. Events of one
 * fd may reach different processes: share a store (RedisSeqStore) for that.
 *
 * At most $capacity fds are remembered; the least recently seen go first.
 */
final class MemorySeqStore implements SeqStore
{
    /** @var array<string, array{int, int, float}> "node:fd" => [open time, last seq done, busy until] */
    private array $last = [];
    /** @var \Closure(): float */
    private \Closure $clock;

    public function __construct(private readonly int $capacity = 100_000, ?\Closure $clock = null)
    {
        if ($capacity < 1) {
            throw new InvalidArgumentException('capacity must be at least 1');
        }
        $this->clock = $clock ?? static fn (): float => \microtime(true);
    }

    public function claim(Event $event, float $lease): int
    {
        $key = self::key($event);
        $entry = $this->last[$key] ?? [0, 0, 0.0];
        if ($event->type === Event::OPEN && $entry[0] !== $event->time) {
            $entry = [$event->time, 0, 0.0]; // a new connection under a number seen before
        }
        if ($event->seq <= $entry[1]) {
            return self::SKIP;
        }
        $now = ($this->clock)();
        if ($entry[2] > $now) {
            return self::BUSY;
        }
        $entry[2] = $now + $lease;
        $this->put($key, $entry);
        return self::DISPATCH;
    }

    public function complete(Event $event): void
    {
        $key = self::key($event);
        $entry = $this->last[$key] ?? [$event->type === Event::OPEN ? $event->time : 0, 0, 0.0];
        $this->put($key, [$entry[0], \max($entry[1], $event->seq), 0.0]);
    }

    public function count(): int
    {
        return \count($this->last);
    }

    /**
     * @param array{int, int, float} $entry
     */
    private function put(string $key, array $entry): void
    {
        unset($this->last[$key]);
        $this->last[$key] = $entry;
        if (\count($this->last) > $this->capacity) {
            unset($this->last[\array_key_first($this->last)]);
        }
    }

    private static function key(Event $event): string
    {
        return $event->node . ':' . $event->fd;
    }
}
