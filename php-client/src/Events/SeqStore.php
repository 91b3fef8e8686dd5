<?php

declare(strict_types=1);

namespace WsBridge\Events;

/**
 * De-duplication before dispatch. Delivery is at least once: the bridge
 * sends a batch again when it got no 2xx in time, possibly while the first
 * delivery is still inside the controller, and possibly to another worker.
 * Before calling the controller the handler claims each event:
 *
 * - DISPATCH: new; this caller runs it, then calls complete();
 * - SKIP: dispatched (completed) before: not run again;
 * - BUSY: another caller is running an event of the same fd right now:
 *   the handler stops that fd's events here and answers 503, so the bridge
 *   sends the batch again later, when the running event is complete (and
 *   the order of the fd's events is kept).
 *
 * A claim holds the fd for $lease seconds: if its holder dies, the fd is
 * free again after that, and the event is dispatched again (at least once).
 * Keyed by node and fd; an open event with a new time starts afresh, since
 * fd numbers start over when a bridge restarts. MemorySeqStore is one
 * process's; RedisSeqStore is shared by every worker.
 */
interface SeqStore
{
    public const DISPATCH = 0;
    public const SKIP = 1;
    public const BUSY = 2;

    /**
     * @return self::DISPATCH|self::SKIP|self::BUSY
     */
    public function claim(Event $event, float $lease): int;

    /**
     * Records that $event was dispatched (its handler returned or threw)
     * and frees its fd.
     */
    public function complete(Event $event): void;
}
