<?php

declare(strict_types=1);

namespace WsBridge\Events;

/**
 * Remembers which events were dispatched, so that a redelivered batch
 * (delivery is at least once) does not dispatch them twice. Keyed by node
 * and fd; an event is a repeat when its seq is not above the last one
 * dispatched for its fd. Implement it over Redis (or any store shared by
 * the processes that receive events) for exact deduplication; MemorySeqStore
 * covers one long-running process.
 */
interface SeqStore
{
    /**
     * Whether $event was dispatched before.
     */
    public function isDuplicate(Event $event): bool;

    /**
     * Records that $event was dispatched (its handler returned or threw).
     */
    public function remember(Event $event): void;
}
