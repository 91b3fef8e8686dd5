<?php

declare(strict_types=1);

namespace WsBridge\Events;

use WsBridge\Exception\InvalidArgumentException;

/**
 * SeqStore in this process's memory, for long-running workers (Hyperf,
 * RoadRunner): it catches a batch redelivered to the same process, and
 * never drops a new event. Events of one fd may reach different processes,
 * so across processes it is best effort; share a store for more.
 *
 * fd numbers start again when a bridge restarts: an open event whose time
 * differs from the remembered one is a new connection and starts afresh.
 * At most $capacity fds are remembered; the least recently seen go first.
 */
final class MemorySeqStore implements SeqStore
{
    /** @var array<string, array{int, int}> "node:fd" => [open time, last seq] */
    private array $last = [];

    public function __construct(private readonly int $capacity = 100_000)
    {
        if ($capacity < 1) {
            throw new InvalidArgumentException('capacity must be at least 1');
        }
    }

    public function isDuplicate(Event $event): bool
    {
        $entry = $this->last[self::key($event)] ?? null;
        if ($entry === null) {
            return false;
        }
        if ($event->type === Event::OPEN) {
            return $entry[0] === $event->time && $event->seq <= $entry[1];
        }
        return $event->seq <= $entry[1];
    }

    public function remember(Event $event): void
    {
        $key = self::key($event);
        $entry = $this->last[$key] ?? [0, 0];
        unset($this->last[$key]);
        if ($event->type === Event::OPEN) {
            $entry = [$event->time, $event->seq];
        } else {
            $entry[1] = \max($entry[1], $event->seq);
        }
        $this->last[$key] = $entry;
        if (\count($this->last) > $this->capacity) {
            unset($this->last[\array_key_first($this->last)]);
        }
    }

    public function count(): int
    {
        return \count($this->last);
    }

    private static function key(Event $event): string
    {
        return $event->node . ':' . $event->fd;
    }
}
